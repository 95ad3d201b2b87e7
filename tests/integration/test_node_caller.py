"""A Node.js caller (examples/node, celery-node) against the real workers.

``make test`` runs ``npm ci`` in examples/node first. Each Node.js process is
started by PID in its own process group, waited for with a deadline, and
stopped (group and all) however the test ends.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.node
from pymongo.database import Database

from devstack.stack import Stack
from tests.contract import check_result
from tests.node import NODE_DIR, run_node

CONTRACT_DOC = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
DRAIN_TIMEOUT_SECONDS = 240.0


def node_env(stack: Stack) -> dict[str, str]:
    return {**stack.env, "CELERY_BROKER_URL": stack.settings.broker_url,
            "CELERY_RESULT_BACKEND": stack.settings.result_backend}


@pytest.fixture()
def node_log(tmp_path: Path) -> Path:
    return tmp_path / "node.log"


def summary_line(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, f"no summary printed:\n{output[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.slow
def test_twenty_node_assistants_drain_three_hundred_students_none_twice(
        stack: Stack, app_database: Database, node_log: Path) -> None:
    session = f"node-{uuid.uuid4().hex[:12]}"
    status, output = run_node([str(NODE_DIR / "drain.js"), "--session", session, "--students", "300",
                               "--assistants", "20"], node_env(stack), node_log, DRAIN_TIMEOUT_SECONDS)
    summary = summary_line(output)
    print(f"Node.js drain: {summary}")

    assert status == 0, output[-3000:]
    assert summary["inserted"] == 300
    assert summary["handed_out"] == 300 and summary["handed_out_twice"] == 0
    assert summary["completed"] == 300 and summary["exhausted_answers"] == 20
    assert summary["hostile"] == {"status": "rejected", "code": "invalid_argument"}
    # One press per assistant, then one request per call (complete_and_next); no answer left in Redis.
    assert summary["requests"] < 2 * 300 and summary["answers_left"] == 0
    # What MongoDB holds, independently of what Node.js counted.
    students = list(app_database.call_session_students.find({"call_session_id": session}))
    assert len(students) == 300
    assert all(s["filter_status"] == "reached" and s["assigned_to"] is None for s in students)
    claims = [[event for event in s["history"] if event["event"] == "claimed"] for s in students]
    assert all(len(events) == 1 for events in claims), "a student was claimed more than once"
    assert {s["completed_by"] for s in students} <= {f"node-assistant-{n}" for n in range(20)}
    assert len({s["completed_by"] for s in students}) > 1, "the assistants did not work at the same time"


def readme_node_snippet() -> str:
    section = re.split(r"\n##+ ", CONTRACT_DOC.split("## From Node.js\n", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```js\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the From Node.js section has one JavaScript block"
    return blocks[0]


def test_the_documented_node_snippet_is_examples_node_get_next_js() -> None:
    assert readme_node_snippet() == (NODE_DIR / "get-next.js").read_text()


def test_the_documented_node_snippet_gets_a_student_then_exhausted_then_rejected(
        stack: Stack, client: Any, session_id: str, tmp_path: Path) -> None:
    client.import_students(session_id, [{"student_id": "only", "name": "Ann"}])
    answers = []
    for number, (session, assistant) in enumerate([(session_id, "alice"), (session_id, "bob"), ("$where", "bob")]):
        status, output = run_node([str(NODE_DIR / "get-next.js"), session, assistant], node_env(stack),
                                  tmp_path / f"get-next-{number}.log", 60)
        assert status == 0, output
        answers.append(json.loads(output.strip().splitlines()[-1]))
    for answer in answers:
        check_result("callqueue.assign_next_student", answer)
    assert answers[0]["status"] == "assigned" and answers[0]["assigned_to"] == "alice"
    assert answers[0]["student_id"].endswith("only")
    assert answers[1] == {"status": "exhausted", "call_session_id": session_id, "reason": "held",
                          "next_due_at": None, "scheduled": 0, "held_by_others": 1}
    assert answers[2]["status"] == "rejected" and answers[2]["error"]["code"] == "invalid_argument"
