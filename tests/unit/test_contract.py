"""``contract/`` agrees with the code: tasks, queues, parameters, limits, rejection codes and result shapes."""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st
from jsonschema import Draft202012Validator

from callqueue.config import Settings
from tests.contract import (
    CONTRACT_DIR, TASKS, ContractViolation, arguments_validator, check_progress, check_result, common_validator,
    schema, schema_files,
)
from callqueue.workers import tasks  # noqa: F401 - registers the tasks on the app
from callqueue.workers.app import app
from callqueue.workers.exceptions import REJECTIONS, InvalidArgument, Rejected, SessionClosed
from callqueue.workers.figures import AssistantFigures, Hold, start_of_day
from callqueue.workers.models import (
    Assignment, CallSession, Completion, Exhausted, ImportSummary, RetryRule, SessionStats, StudentState,
)
from callqueue.workers.store.suppressions import SuppressionSummary
from callqueue.workers.validation import (
    require_calling_hours, require_document, require_id, require_moment, require_text, require_token,
)

NOW = datetime(2026, 11, 28, 8, 30, tzinfo=timezone.utc)
DEFAULTS = Settings()
HOURS = require_calling_hours({"days": {"mon": ["09:00-20:00"], "sat": ["10:00-16:00:30"]}, "holidays": ["2026-12-25"],
                               "default_zone": "America/New_York"}, 8, 500)


def registered() -> dict[str, Any]:
    return {name: task for name, task in app.tasks.items() if name.startswith("callqueue.")}


def parameters(task_name: str) -> list[inspect.Parameter]:
    return list(inspect.signature(inspect.unwrap(registered()[task_name].run)).parameters.values())


def accepted(check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except Rejected:
        return False
    return True


def test_every_schema_is_draft_2020_12_and_its_id_names_its_file() -> None:
    files = schema_files()
    assert len(files) == 1 + 20 + 23
    for path in files:
        document = json.loads(path.read_text())
        Draft202012Validator.check_schema(document)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["$id"].endswith("/contract/" + path.relative_to(CONTRACT_DIR).as_posix())


def test_every_registered_task_is_in_the_contract_with_its_queue_and_parameter_order() -> None:
    assert set(TASKS) == set(registered())
    for name, entry in TASKS.items():
        assert entry["queue"] == app.amqp.router.route({}, name)["queue"].name, name
        assert entry["parameters"] == [parameter.name for parameter in parameters(name)], name
        for path in (entry["arguments"], *entry["results"], *filter(None, [entry["progress"]])):
            assert (CONTRACT_DIR / path).is_file(), path


def test_argument_schemas_name_exactly_the_task_parameters_and_their_defaults() -> None:
    for name, entry in TASKS.items():
        arguments = schema(entry["arguments"])
        declared = parameters(name)
        assert list(arguments["properties"]) == [parameter.name for parameter in declared], name
        assert arguments["required"] == [p.name for p in declared if p.default is inspect.Parameter.empty], name
        assert arguments["additionalProperties"] is False
        for parameter in declared:
            if parameter.default is not inspect.Parameter.empty:
                assert arguments["properties"][parameter.name]["default"] == parameter.default, (name, parameter)


def test_argument_limits_are_those_of_the_default_settings() -> None:
    common = schema("common.schema.json")["$defs"]
    assert common["id"]["maxLength"] == common["text"]["maxLength"] == DEFAULTS.max_id_length
    assert common["student_id"]["maxLength"] == 3 * DEFAULTS.max_id_length + 1
    assert schema("arguments/import_students.schema.json")["properties"]["students"]["maxItems"] \
        == DEFAULTS.max_import_students
    assert schema("arguments/complete_batch.schema.json")["properties"]["items"]["maxItems"] == DEFAULTS.max_batch_items
    lease = schema("arguments/set_lease.schema.json")["properties"]["lease_seconds"]["oneOf"][0]
    assert lease["maximum"] == DEFAULTS.max_lease_seconds
    assert str(DEFAULTS.max_student_bytes) in common["import_row"]["description"]
    assert common["skills"]["maxItems"] == DEFAULTS.max_skills
    assert common["retry_rules"]["maxProperties"] == DEFAULTS.max_retry_rules
    rule = common["retry_rule"]["properties"]
    assert rule["delay_seconds"]["maximum"] == DEFAULTS.max_schedule_ahead_seconds
    assert rule["max_attempts"]["maximum"] == DEFAULTS.max_attempts_limit
    grace = schema("arguments/set_campaign.schema.json")["properties"]["callback_grace_seconds"]["oneOf"][0]
    assert grace["maximum"] == DEFAULTS.max_schedule_ahead_seconds
    assert str(DEFAULTS.callback_grace_seconds) in schema("arguments/set_campaign.schema.json")[
        "properties"]["callback_grace_seconds"]["description"]
    outcomes = schema("arguments/set_campaign.schema.json")["properties"]["allowed_outcomes"]["oneOf"][0]
    assert outcomes["maxItems"] == DEFAULTS.max_outcomes
    hours = common["calling_hours"]["properties"]
    assert hours["days"]["properties"]["mon"]["maxItems"] == DEFAULTS.max_ranges_per_day
    assert hours["holidays"]["maxItems"] == DEFAULTS.max_holidays
    for task in ("suppress", "unsuppress"):
        for name in ("numbers", "student_ids"):
            entries = schema(f"arguments/{task}.schema.json")["properties"][name]["oneOf"][0]
            assert entries["maxItems"] == DEFAULTS.max_suppression_entries
    assert schema("arguments/list_suppressed.schema.json")["properties"]["limit"]["maximum"] \
        == DEFAULTS.max_suppression_page


def test_rejection_codes_are_exactly_the_codes_the_workers_raise() -> None:
    enum = schema("results/rejected.schema.json")["properties"]["error"]["properties"]["code"]["enum"]
    raised = {code for code, cls in REJECTIONS.items() if cls is not Rejected}
    assert sorted(enum) == sorted(raised)
    assert len(enum) == len(set(enum))


@hypothesis_settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=140), st.text(alphabet=" \t\n$\x00\x7f\u00a0\u2028ab.", max_size=6),
                 st.integers(), st.none(), st.booleans()))
def test_id_schema_accepts_exactly_the_ids_the_workers_accept(value: Any) -> None:
    limit = DEFAULTS.max_id_length
    assert common_validator("id").is_valid(value) == accepted(require_id, "id", value, limit)
    assert common_validator("text").is_valid(value) == accepted(require_text, "text", value, limit)


@hypothesis_settings(deadline=None)
@given(st.one_of(st.integers(min_value=-3, max_value=2**63), st.booleans(), st.text(max_size=3), st.none()))
def test_token_schema_accepts_exactly_the_tokens_the_workers_accept(value: Any) -> None:
    assert common_validator("token").is_valid(value) == accepted(require_token, "token", value)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(alphabet="$.\x00ab c", max_size=4).filter(
    lambda key: key not in ("student_id", "priority", "position")), st.just("x"), max_size=3))
def test_import_row_keys_the_schema_accepts_are_the_keys_the_workers_accept(row: dict[str, str]) -> None:
    assert common_validator("import_row").is_valid(row) == accepted(require_document, "row", row, 16384)


def example_results() -> list[tuple[str, dict[str, Any]]]:
    """Answers built by the workers' own models, one per model and state."""
    held = StudentState("s1:a", "s1", "", "alice", 3, lease_expires_at=NOW)
    done = StudentState("s1:a", "s1", "reached", None, 3, completed_at=NOW, completed_by="alice")
    later = NOW + timedelta(hours=2)
    campaign = CallSession("s1", "s1", "open", NOW, retry_rules=(RetryRule("no_answer", 7200, 3),))
    return [
        ("callqueue.assign_next_student", Assignment("s1:a", "s1", {"name": "Ann"}, "alice", 3, NOW).to_result()),
        ("callqueue.assign_next_student", Assignment("s1:a", "s1", {}, "alice", 3, None, True).to_result()),
        ("callqueue.complete_student", Completion("s1:a", "s1", 3, "reached", NOW, "alice", 1, "final").to_result()),
        ("callqueue.complete_student", Completion("s1:a", "s1", 3, "no_answer", NOW, "alice", 2, "retry",
                                                  later).to_result()),
        ("callqueue.complete_student", Completion("s1:a", "s1", 3, "call_me", NOW, "alice", 1, "callback",
                                                  later, "alice").to_result()),
        ("callqueue.release_student", StudentState("s1:a", "s1", "", None, 3).to_result("released")),
        ("callqueue.release_student", done.to_result("released")),
        ("callqueue.heartbeat", held.to_result("renewed")),
        ("callqueue.import_students", ImportSummary("s1", True, 3, 2, 1).to_result()),
        ("callqueue.session_stats", SessionStats("s1", "open", 1, 1, {"reached": 2}, ("alice",)).to_result()),
        ("callqueue.session_stats", SessionStats("s1", "open", 1, 0, {}, (), 2, 3, 9).to_result()),
        ("callqueue.set_campaign", campaign.campaign_result(DEFAULTS.callback_grace_seconds)),
        ("callqueue.set_campaign", CallSession("s1", "s1", "open", NOW, callback_grace_seconds=0).campaign_result(900)),
        ("callqueue.promote_due", {"status": "ok", "promoted": 4}),
        ("callqueue.assistant_stats", assistant_stats_answer((
            AssistantFigures("alice", Hold("s1:a", {"name": "Ann"}, "alice", 3, NOW), 4, 9, {"reached": 7, "no_answer": 2},
                             83.25, NOW),
            AssistantFigures("bob")))),
        ("callqueue.assistant_stats", assistant_stats_answer(())),
        ("callqueue.import_students", ImportSummary("s1", False, 5, 2, 1, 2).to_result()),
        ("callqueue.session_stats",
         SessionStats("s1", "open", 1, 0, {"do_not_call": 2}, (), 0, 0, 3, 4, 2).to_result()),
        ("callqueue.set_calling_hours", CallSession("s1", "s1", "open", NOW, calling_hours=HOURS).hours_result()),
        ("callqueue.set_calling_hours", CallSession("s1", "s1", "open", NOW).hours_result()),
        ("callqueue.suppress", SuppressionSummary("s1", added=2, students_marked=2, do_not_call=1, still_held=1)
         .to_result("suppressed")),
        ("callqueue.suppress", SuppressionSummary("*", added=1).to_result("suppressed")),
        ("callqueue.unsuppress", SuppressionSummary("*", removed=1).to_result("unsuppressed")),
        ("callqueue.list_suppressed", {"status": "ok", "call_session_id": None, "next": "number:+12125550100",
                                       "entries": [{"kind": "number", "value": "+12125550100",
                                                    "added_at": NOW.isoformat()}]}),
        ("callqueue.assign_next_student", {"status": "rejected", "error": InvalidArgument("no", argument="x").to_error()}),
        ("callqueue.assign_next_student", Exhausted("s1", "scheduled", later, 3, 1).to_result()),
        ("callqueue.assign_next_student", Exhausted("s1", "none_left").to_result()),
        ("callqueue.complete_and_next", pair_answer(
            Completion("s1:a", "s1", 3, "reached", NOW, "alice", 1, "final").to_result(),
            Assignment("s1:b", "s1", {"name": "Bo"}, "alice", 1, NOW).to_result())),
        ("callqueue.complete_and_next", pair_answer(
            Completion("s1:a", "s1", 3, "no_answer", NOW, "alice", 1, "retry", later).to_result(),
            Exhausted("s1", "scheduled", later, 1).to_result())),
        ("callqueue.complete_and_next", pair_answer(
            Completion("s1:a", "s1", 3, "reached", NOW, "alice", 1, "final").to_result(),
            {"status": "rejected", "error": SessionClosed("closed", call_session_id="s1").to_error()})),
    ]


def pair_answer(completion: dict[str, Any], following: dict[str, Any]) -> dict[str, Any]:
    """The answer of complete_and_next as the task shapes it."""
    return {"status": "completed_and_next", "call_session_id": "s1", "completion": completion, "next": following}


def assistant_stats_answer(assistants: tuple[AssistantFigures, ...]) -> dict[str, Any]:
    """The answer of assistant_stats as the task shapes it."""
    return {"status": "ok", "call_session_id": "s1", "as_of": NOW.isoformat(),
            "day_started_at": start_of_day(NOW, "Europe/Paris").isoformat(), "time_zone": "Europe/Paris",
            "assistants": [figures.to_result() for figures in assistants]}


@pytest.mark.parametrize("task, result", example_results())
def test_answers_built_by_the_workers_models_fit_the_contract(task: str, result: dict[str, Any]) -> None:
    check_result(task, result)


@pytest.mark.parametrize("task, result", example_results())
def test_an_answer_with_a_field_the_contract_does_not_know_is_refused(task: str, result: dict[str, Any]) -> None:
    with pytest.raises(ContractViolation):
        check_result(task, {**result, "surprise": 1})


@pytest.mark.parametrize("task, result", [
    ("callqueue.assign_next_student", {"status": "completed", "call_session_id": "s1"}),
    ("callqueue.session_stats", {"status": "ok", "reclaimed": 1}),
    ("callqueue.complete_student", {"status": "rejected", "error": {"code": "teapot", "message": "?"}}),
    ("callqueue.assign_next_student", {"status": "exhausted"}),
    ("callqueue.assign_next_student", {**Exhausted("s1", "scheduled").to_result(), "reason": "later"}),
    ("callqueue.complete_and_next", {"status": "completed_and_next", "call_session_id": "s1",
                                     "completion": {"status": "completed"}, "next": {"status": "exhausted"}}),
    ("callqueue.complete_and_next", Completion("s1:a", "s1", 3, "reached", NOW, "alice", 1, "final").to_result()),
    ("callqueue.promote_due", {"status": "ok", "reclaimed": 1}),
    ("callqueue.assistant_stats", {**assistant_stats_answer(()), "assistants": [
        {**AssistantFigures("bob").to_result(), "calls_today": -1}]}),
    ("callqueue.assistant_stats", {**assistant_stats_answer(()), "assistants": [
        {**AssistantFigures("bob").to_result(), "holding": {"student_id": "s1:a"}}]}),
    ("callqueue.complete_student", {**Completion("s1:a", "s1", 3, "reached", NOW, "alice", 1, "final").to_result(),
                                    "final": False}),
    ("callqueue.complete_student", Completion("s1:a", "s1", 3, "no_answer", NOW, "alice", 2, "retry").to_result()),
    ("callqueue.set_campaign", {"status": "ok", "call_session_id": "s1", "callback_grace_seconds": 900,
                                "retry_rules": {"no_answer": {"delay_seconds": 60}}}),
])
def test_an_answer_of_another_task_or_with_an_unknown_code_is_refused(task: str, result: dict[str, Any]) -> None:
    with pytest.raises(ContractViolation):
        check_result(task, result)


def test_progress_is_done_and_total() -> None:
    check_progress({"done": 1, "total": 2})
    with pytest.raises(ContractViolation):
        check_progress({"done": 1})


def test_arguments_of_a_typical_get_next_press_fit_and_an_operator_does_not() -> None:
    press = {"call_session_id": "evening-1", "assistant_id": "assistant-7", "request_id": "press-1"}
    assert arguments_validator("callqueue.assign_next_student").is_valid(press)
    assert not arguments_validator("callqueue.assign_next_student").is_valid({**press, "assistant_id": {"$ne": None}})
    assert not arguments_validator("callqueue.assign_next_student").is_valid({**press, "self": "x"})


def test_arguments_of_campaign_calls_fit_and_malformed_ones_do_not() -> None:
    press = {"call_session_id": "evening-1", "assistant_id": "assistant-7", "skills": ["es", "fr"]}
    assert arguments_validator("callqueue.assign_next_student").is_valid(press)
    assert not arguments_validator("callqueue.assign_next_student").is_valid({**press, "skills": ["$es"]})
    assert not arguments_validator("callqueue.assign_next_student").is_valid(
        {**press, "skills": [f"s{n}" for n in range(DEFAULTS.max_skills + 1)]})
    completion = {"call_session_id": "evening-1", "student_id": "evening-1:a", "assistant_id": "assistant-7",
                  "outcome": "call_me", "assignment_token": 1, "callback_at": "2026-11-28T17:00:00+01:00",
                  "callback_assistant": "assistant-7"}
    complete = arguments_validator("callqueue.complete_student")
    assert complete.is_valid(completion)
    assert not complete.is_valid({**completion, "callback_at": "2026-11-28T17:00:00"})
    assert not complete.is_valid({**completion, "callback_at": None})
    campaign = arguments_validator("callqueue.set_campaign")
    assert campaign.is_valid({"call_session_id": "s", "retry_rules": {"no_answer": {"delay_seconds": 0,
                                                                                   "max_attempts": 3}}})
    assert campaign.is_valid({"call_session_id": "s", "retry_rules": {}, "callback_grace_seconds": None})
    assert not campaign.is_valid({"call_session_id": "s", "retry_rules": {"no_answer": {"max_attempts": 3}}})
    assert not campaign.is_valid({"call_session_id": "s", "retry_rules": {"$x": {"delay_seconds": 0,
                                                                                "max_attempts": 1}}})
    assert not campaign.is_valid({"call_session_id": "s", "callback_grace_seconds": -1})
    imports = arguments_validator("callqueue.import_students")
    assert imports.is_valid({"call_session_id": "s", "students": [{"language": "es"}], "route_by": "language"})
    assert not imports.is_valid({"call_session_id": "s", "students": [{"language": "es"}], "route_by": "priority"})
    item = {"call_session_id": "s", "student_id": "s:a", "outcome": "call_me", "callback_assistant": "alice"}
    assert not common_validator("batch_item").is_valid(item)
    assert common_validator("batch_item").is_valid({**item, "callback_at": "2026-11-28T16:00:00Z"})


ZONES = st.sampled_from([None, timezone.utc, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))])


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=ZONES),
       st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds"]), st.booleans())
def test_callback_time_schema_accepts_exactly_the_times_the_workers_accept(moment: datetime, timespec: str,
                                                                           zulu: bool) -> None:
    """Times with a zone (Z or an offset) fit both; times without one fit neither."""
    text = moment.isoformat(timespec=timespec)
    if zulu and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    assert common_validator("moment").is_valid(text) == accepted(require_moment, "callback_at", text), text
    assert common_validator("moment").is_valid(text) == (moment.tzinfo is not None)
