"""The JSON Schemas in ``contract/``, loaded for the tests.

``contract/tasks.json`` names, for each task, its queue, its parameter order,
its argument schema and the result shapes it may answer with. Schemas refer to
each other by ``$id``; they are served from one ``referencing`` registry, so
nothing is fetched from the network.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

CONTRACT_DIR = Path(__file__).resolve().parents[1] / "contract"
TASKS: dict[str, dict[str, Any]] = json.loads((CONTRACT_DIR / "tasks.json").read_text())


class ContractViolation(AssertionError):
    """A value that the contract does not allow (an answer, arguments or progress)."""


def schema(relative_path: str) -> dict[str, Any]:
    """One schema file of the contract, parsed."""
    return json.loads((CONTRACT_DIR / relative_path).read_text())


def schema_files() -> list[Path]:
    return sorted(CONTRACT_DIR.rglob("*.schema.json"))


@functools.cache
def registry() -> Registry:
    """Every schema of the contract under its ``$id``."""
    resources = []
    for path in schema_files():
        document = json.loads(path.read_text())
        resources.append((document["$id"], Resource.from_contents(document)))
    return Registry().with_resources(resources)


def _validator(relative_paths: tuple[str, ...]) -> Draft202012Validator:
    refs = [{"$ref": schema(path)["$id"]} for path in relative_paths]
    root = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return Draft202012Validator(root, registry=registry())


@functools.cache
def result_validator(task: str) -> Draft202012Validator:
    """Accepts exactly the answers ``task`` may give: one of its result shapes or a rejection."""
    return _validator(tuple(TASKS[task]["results"]))


@functools.cache
def arguments_validator(task: str) -> Draft202012Validator:
    """Accepts the keyword arguments the contract allows for ``task``."""
    return _validator((TASKS[task]["arguments"],))


@functools.cache
def common_validator(definition: str) -> Draft202012Validator:
    """A validator for one of the shared definitions in ``common.schema.json`` (``id``, ``token``, ...)."""
    return Draft202012Validator({"$ref": f"{schema('common.schema.json')['$id']}#/$defs/{definition}"},
                                registry=registry())


def check(validator: Draft202012Validator, value: Any, what: str) -> None:
    """Raise ``ContractViolation`` naming the most relevant error when ``value`` does not fit."""
    error = best_match(validator.iter_errors(value))
    if error is not None:
        place = "/".join(map(str, error.absolute_path)) or "(top)"
        raise ContractViolation(f"{what} breaks the contract at {place}: {error.message}; value: {value!r:.500}")


def check_result(task: str, result: Any) -> None:
    """``result`` is an answer ``task`` may give according to ``contract/``."""
    if task not in TASKS:
        raise ContractViolation(f"{task} is not in contract/tasks.json")
    check(result_validator(task), result, f"the answer of {task}")


def check_progress(meta: Any) -> None:
    """``meta`` is what a batch job's PROGRESS state may carry."""
    check(_validator(("results/progress.schema.json",)), meta, "PROGRESS meta")
