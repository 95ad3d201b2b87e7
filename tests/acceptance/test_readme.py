"""The README's task table and the configuration table of docs/configuration.md match the code."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

from callqueue.config.settings import ENV_PREFIX_FREE, Settings
from callqueue.workers import tasks  # noqa: F401 - registers the tasks on the app
from callqueue.workers.app import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def documented_tasks() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| `(callqueue\.\w+)` \| `([^`]*)` \| `(\w+)` \|", README, re.MULTILINE)
    return {name: (arguments, queue) for name, arguments, queue in rows}


def test_every_registered_task_is_in_the_readme_with_its_arguments_and_queue() -> None:
    registered = {name: task for name, task in app.tasks.items() if name.startswith("callqueue.")}
    documented = documented_tasks()
    assert set(documented) == set(registered)
    for name, task in registered.items():
        signature = inspect.signature(inspect.unwrap(task.run))
        arguments = ", ".join(str(parameter).replace(" = ", "=") for parameter in signature.parameters.values())
        arguments = re.sub(r": [^,=]+", "", arguments)
        queue = app.amqp.router.route({}, name)["queue"].name
        assert documented[name] == (arguments, queue), name


def test_every_setting_is_documented_with_its_default() -> None:
    for field in fields(Settings):
        variable = ENV_PREFIX_FREE.get(field.name, f"CALLQUEUE_{field.name.upper()}")
        assert re.search(rf"^\| `{variable}` \| `{re.escape(str(field.default))}` \|", CONFIGURATION, re.MULTILINE), variable


def first_examples() -> list[str]:
    """The Python blocks of the README's "A first example", in order."""
    section = README.split("## A first example\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_first_examples_run_against_a_stack_and_hand_out_both_students(stack: Any) -> None:
    """The client example claims and completes a student; the send_task example, by name only, gets the other."""
    examples = first_examples()
    assert len(examples) == 2
    session = f"readme-{uuid.uuid4().hex[:8]}"
    env = {**stack.env, "PYTHONPATH": str(ROOT)}
    outputs = []
    for example in examples:
        run = subprocess.run([sys.executable, "-c", example.replace("evening-1", session)], env=env,
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs.append(run.stdout.strip().splitlines()[-1])
    assert outputs[0].startswith(f"{session}:ann ") and "'name': 'Ann'" in outputs[0]
    answer = ast.literal_eval(outputs[1])
    assert answer["status"] == "assigned" and answer["assigned_to"] == "assistant-8"
    assert answer["student_id"] == f"{session}:bob"
