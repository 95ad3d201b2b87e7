"""Argument checks: every value that reaches a query is a plain, bounded string or integer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callqueue.workers.exceptions import InvalidArgument, TooLarge
from callqueue.workers.models import Callback, RetryRule
from callqueue.workers.validation import (
    optional_callback, require_document, require_id, require_list, require_retry_rules, require_token,
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@pytest.mark.parametrize("value", [{"$ne": None}, {"$gt": ""}, ["a"], 7, None, True, 1.5])
def test_ids_that_are_not_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        require_id("assistant_id", value, 128)


@pytest.mark.parametrize("value", ["", "   ", "$where", "a\nb", "x\x00"])
def test_empty_operator_like_or_control_character_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidArgument):
        require_id("assistant_id", value, 128)


def test_overlong_ids_are_too_large() -> None:
    with pytest.raises(TooLarge):
        require_id("assistant_id", "a" * 129, 128)
    assert require_id("assistant_id", "a" * 128, 128) == "a" * 128


def test_ids_with_dots_or_inner_dollars_are_plain_values() -> None:
    assert require_id("assistant_id", "ann.lee@example.org", 128) == "ann.lee@example.org"
    assert require_id("student_id", "s$1", 128) == "s$1"


@pytest.mark.parametrize("value", [True, 0, -3, "1", 1.0, None, 2**62])
def test_tokens_must_be_positive_integers(value: object) -> None:
    with pytest.raises(InvalidArgument):
        require_token("assignment_token", value)


@pytest.mark.parametrize("value", [{"$set": 1}, {"a.b": 1}, {"": 1}, {"a": {"$gt": 1}}])
def test_documents_with_operator_or_dotted_keys_are_refused(value: dict) -> None:
    with pytest.raises(InvalidArgument, match="unusable key"):
        require_document("student", value, 10_000)


def test_deeply_nested_and_oversized_documents_are_refused() -> None:
    nested: dict = {}
    inner = nested
    for _ in range(20):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(InvalidArgument, match="nested"):
        require_document("student", nested, 10_000)
    with pytest.raises(TooLarge):
        require_document("student", {"note": "x" * 2000}, 1000)


def test_lists_are_bounded() -> None:
    with pytest.raises(TooLarge):
        require_list("students", [{}] * 11, 10)
    with pytest.raises(InvalidArgument):
        require_list("students", [], 10)


@given(JSON)
def test_any_json_value_is_accepted_as_an_id_only_if_it_is_a_usable_string(value: object) -> None:
    try:
        accepted = require_id("call_session_id", value, 128)
    except InvalidArgument:
        return
    assert isinstance(accepted, str) and accepted.strip() and not accepted.startswith("$")


def test_retry_rules_become_rules_and_every_fault_names_the_argument() -> None:
    rules = require_retry_rules({"no_answer": {"delay_seconds": 60, "max_attempts": 3}}, 128, 50, 3600, 10)
    assert rules == (RetryRule("no_answer", 60, 3),)
    assert require_retry_rules({}, 128, 50, 3600, 10) == ()
    for bad in ([], {"$ne": {"delay_seconds": 1, "max_attempts": 1}}, {"busy": {"delay_seconds": 1}},
                {"busy": {"delay_seconds": -1, "max_attempts": 1}}, {"busy": {"delay_seconds": 1, "max_attempts": 0}},
                {"busy": {"delay_seconds": 3601, "max_attempts": 1}}, {"busy": {"delay_seconds": 1, "max_attempts": 11}},
                {"busy": {"delay_seconds": True, "max_attempts": 1}}, {"busy": "60:3"}):
        with pytest.raises(InvalidArgument) as refused:
            require_retry_rules(bad, 128, 50, 3600, 10)
        assert refused.value.details == {"argument": "retry_rules"}, bad
    with pytest.raises(TooLarge):
        require_retry_rules({f"o{n}": {"delay_seconds": 1, "max_attempts": 1} for n in range(3)}, 128, 2, 3600, 10)


def test_a_callback_needs_a_zoned_time_not_too_far_ahead() -> None:
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    callback = optional_callback("", soon.isoformat(), "alice", 128, 86_400)
    assert callback == Callback(soon.replace(microsecond=soon.microsecond // 1000 * 1000), "alice")
    assert optional_callback("", None, None, 128, 86_400) is None
    assert optional_callback("", "2020-01-01T00:00:00Z", None, 128, 86_400).at.year == 2020  # due at once
    refusals = [(None, "alice", "callback_assistant"), ("2026-11-28T17:00:00", None, "callback_at"),
                ("5 pm", None, "callback_at"), ((soon + timedelta(days=2)).isoformat(), None, "callback_at"),
                ("0001-01-01T00:00:00+05:00", None, "callback_at"), (soon.isoformat(), "$ne", "callback_assistant")]
    for at, assistant, argument in refusals:
        with pytest.raises(InvalidArgument) as refused:
            optional_callback("items[2].", at, assistant, 128, 86_400)
        assert refused.value.details == {"argument": f"items[2].{argument}"}, (at, assistant)
