"""The README's task table and configuration table match the code."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path

from config.settings import ENV_PREFIX_FREE, Settings
from workers import tasks  # noqa: F401 - registers the tasks on the app
from workers.app import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


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
        assert re.search(rf"^\| `{variable}` \| `{re.escape(str(field.default))}` \|", README, re.MULTILINE), variable
