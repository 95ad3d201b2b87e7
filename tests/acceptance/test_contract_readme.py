"""The README's task table and the rejection codes in docs/contract.md say what ``contract/`` says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.contract import TASKS, schema

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONTRACT_DOC = (ROOT / "docs" / "contract.md").read_text()
REJECTED = "results/rejected.schema.json"


def table_rows() -> dict[str, tuple[str, str, str]]:
    """Task name -> (arguments, queue, answer) as the README's task table has them."""
    rows = re.findall(r"^\| `(callqueue\.\w+)` \| `([^`]*)` \| `(\w+)` \| (.*) \|$", README, re.MULTILINE)
    return {name: (arguments, queue, answer) for name, arguments, queue, answer in rows}


def shapes(task: str) -> list[dict[str, Any]]:
    """The task's result shapes other than the rejection every task may answer with."""
    return [schema(path) for path in TASKS[task]["results"] if path != REJECTED]


def rendered_parameters(task: str) -> str:
    """The parameter list as the table writes it: ``name`` or ``name=default`` (Python literals)."""
    properties = schema(TASKS[task]["arguments"])["properties"]
    return ", ".join(name + (f"={properties[name]['default']!r}" if "default" in properties[name] else "")
                     for name in TASKS[task]["parameters"])


def test_the_task_table_lists_exactly_the_tasks_of_the_contract() -> None:
    assert set(table_rows()) == set(TASKS)


def test_each_row_has_the_contract_parameters_defaults_and_queue() -> None:
    for task, (arguments, queue, _) in table_rows().items():
        assert arguments == rendered_parameters(task), task
        assert queue == TASKS[task]["queue"], task


def test_each_row_names_the_statuses_and_only_fields_of_the_contract_result_shapes() -> None:
    for task, (_, _, answer) in table_rows().items():
        statuses = re.findall(r'"status": "(\w+)"', answer)
        assert sorted(statuses) == sorted(shape["properties"]["status"]["const"] for shape in shapes(task)), task
        fields = set(re.findall(r'"(\w+)"', answer)) - {"status", *statuses}
        known = set().union(*(shape["properties"] for shape in shapes(task)))
        assert fields <= known, (task, fields - known)
        assert ("PROGRESS" in answer) == (TASKS[task]["progress"] is not None), task


def test_the_rejection_codes_listed_are_the_codes_of_the_contract() -> None:
    listed = re.search(r"\*\*Rejection codes\*\*: (.*?)\. ", CONTRACT_DOC, re.DOTALL)
    assert listed, "docs/contract.md lists the rejection codes"
    codes = re.findall(r"`(\w+)`", listed.group(1))
    assert codes == schema(REJECTED)["properties"]["error"]["properties"]["code"]["enum"]


def test_the_readme_points_callers_at_contract() -> None:
    assert "`contract/`" in README and "`contract/tasks.json`" in README
