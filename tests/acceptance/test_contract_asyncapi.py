"""``contract/asyncapi.json`` is valid AsyncAPI 3.0 and describes the queues and messages of ``contract/tasks.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.contract import CONTRACT_DIR, TASKS, registry, schema
from tests.node import NODE_DIR, run_node

ASYNCAPI: dict[str, Any] = json.loads((CONTRACT_DIR / "asyncapi.json").read_text())
EMBED: dict[str, Any] = {}


def message(key: str) -> dict[str, Any]:
    return ASYNCAPI["components"]["messages"][key]


def message_validator(key: str, part: str) -> Draft202012Validator:
    """The schema of a message's headers or payload, its relative $refs resolved within contract/."""
    base = schema("common.schema.json")["$id"].rsplit("/", 1)[0]
    return Draft202012Validator({**message(key)[part]["schema"], "$id": f"{base}/asyncapi-{key}-{part}.json"},
                                registry=registry())


def test_every_task_is_one_operation_sent_on_its_queue_with_an_answer() -> None:
    operations = ASYNCAPI["operations"]
    assert set(operations) == {name.split(".", 1)[1] for name in TASKS}
    for name, entry in TASKS.items():
        key = name.split(".", 1)[1]
        operation = operations[key]
        assert operation["action"] == "send"
        assert operation["channel"] == {"$ref": f"#/channels/{entry['queue']}"}
        assert ASYNCAPI["channels"][entry["queue"]]["address"] == entry["queue"]
        assert message(key)["name"] == name
        assert message(key)["headers"]["schema"]["properties"]["task"] == {"const": name}
        assert message(key)["payload"]["schema"]["prefixItems"][1] == {"$ref": entry["arguments"]}
        answer = message(f"{key}_answer")["payload"]["schema"]
        assert answer["then"]["properties"]["result"]["oneOf"] == [{"$ref": path} for path in entry["results"]]
        progress = answer.get("else", {}).get("then", {}).get("properties", {}).get("result")
        assert progress == ({"$ref": entry["progress"]} if entry["progress"] else None), name


def test_a_get_next_message_as_a_client_sends_it_fits_and_a_malformed_one_does_not() -> None:
    headers = {"lang": "js", "task": "callqueue.assign_next_student", "id": "6f1c", "expires": "2026-11-28T08:30:10.000Z"}
    body = [[], {"call_session_id": "evening-1", "assistant_id": "assistant-7", "request_id": "press-1"}, EMBED]
    assert message_validator("assign_next_student", "headers").is_valid(headers)
    assert message_validator("assign_next_student", "payload").is_valid(body)
    assert not message_validator("assign_next_student", "headers").is_valid({**headers, "expires": 30})
    assert not message_validator("assign_next_student", "payload").is_valid(["evening-1", {}, EMBED])
    assert not message_validator("assign_next_student", "payload").is_valid(
        [[], {"call_session_id": {"$ne": None}, "assistant_id": "a"}, EMBED])


def test_a_stored_answer_fits_its_answer_message() -> None:
    answer = {"status": "SUCCESS", "task_id": "6f1c", "traceback": None, "children": [],
              "result": {"status": "exhausted", "call_session_id": "evening-1", "reason": "none_left",
                         "next_due_at": None, "scheduled": 0, "held_by_others": 0}}
    validator = message_validator("assign_next_student_answer", "payload")
    assert validator.is_valid(answer)
    assert not validator.is_valid({**answer, "result": {"status": "exhausted"}})


@pytest.mark.node
def test_the_document_is_valid_asyncapi_with_every_reference_resolved(tmp_path: Path) -> None:
    status, output = run_node([str(NODE_DIR / "validate-asyncapi.js"), str(CONTRACT_DIR / "asyncapi.json")],
                              None, tmp_path / "validate.log", 60)
    assert (status, output.strip()) == (0, "ok")


@pytest.mark.node
@pytest.mark.parametrize("breakage, expected", [
    (lambda doc: doc["operations"]["heartbeat"].update(action="call"), "/operations/heartbeat"),
    (lambda doc: doc["channels"]["batch"]["messages"].update(x={"$ref": "#/components/messages/none"}),
     "unresolved $ref #/components/messages/none"),
    (lambda doc: doc["components"]["messages"]["heartbeat"]["payload"]["schema"]["prefixItems"].__setitem__(
        1, {"$ref": "arguments/missing.schema.json"}), "unresolved $ref arguments/missing.schema.json"),
], ids=["not-asyncapi", "dangling-ref", "missing-schema-file"])
def test_the_validator_reports_a_broken_document(tmp_path: Path, breakage: Any, expected: str) -> None:
    copy = tmp_path / "contract"
    shutil.copytree(CONTRACT_DIR, copy)
    document = json.loads((copy / "asyncapi.json").read_text())
    breakage(document)
    (copy / "asyncapi.json").write_text(json.dumps(document))
    status, output = run_node([str(NODE_DIR / "validate-asyncapi.js"), str(copy / "asyncapi.json")],
                              None, tmp_path / "validate.log", 60)
    assert status == 1 and expected in output, output
