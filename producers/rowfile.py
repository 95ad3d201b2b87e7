"""Reading rows (students to import, items to complete) from CSV or JSON files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from callqueue.workers.exceptions import InvalidArgument

STUDENT_INTEGERS = ("priority", "position")
ITEM_INTEGERS = ("assignment_token",)
LIST_KEYS = ("students", "items")


def read_rows(path: Path, integer_columns: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows of a ``.csv`` file (header line; empty cells dropped, integer columns converted)
    or a ``.json`` file (a list of objects, or ``{"students": [...]}`` / ``{"items": [...]}``)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, tuple(integer_columns))
    if suffix == ".json":
        return _read_json(path)
    raise InvalidArgument(f"{path}: use a .csv or .json file")


def _read_csv(path: Path, integer_columns: tuple[str, ...]) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [_typed_row(path, line, row, integer_columns)
                for line, row in enumerate(csv.DictReader(handle), start=2)]


def _typed_row(path: Path, line: int, row: dict[str, Any], integer_columns: tuple[str, ...]) -> dict[str, Any]:
    typed = {key.strip(): value for key, value in row.items() if key and value not in (None, "")}
    for column in integer_columns:
        if column in typed:
            try:
                typed[column] = int(typed[column])
            except ValueError as exc:
                raise InvalidArgument(f"{path}:{line}: {column} must be an integer") from exc
    return typed


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(data, dict):
        data = next((data[key] for key in LIST_KEYS if key in data), None)
    if not isinstance(data, list):
        raise InvalidArgument(f"{path}: expected a list, or an object with a \"students\" or \"items\" list")
    return data
