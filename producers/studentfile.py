"""Reading students from CSV or JSON files for ``python -m producers import``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from workers.exceptions import InvalidArgument

INTEGER_COLUMNS = ("priority", "position")


def read_students(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.csv`` (header line) or ``.json`` file (a list of objects, or ``{"students": [...]}``)."""
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if path.suffix.lower() == ".json":
        return _read_json(path)
    raise InvalidArgument(f"{path}: use a .csv or .json file")


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [_typed_row(path, number, row) for number, row in enumerate(csv.DictReader(handle), start=2)]


def _typed_row(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    """Drop empty cells and turn the integer columns into integers."""
    typed = {key.strip(): value for key, value in row.items() if key and value not in (None, "")}
    for column in INTEGER_COLUMNS:
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
    rows = data.get("students") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise InvalidArgument(f"{path}: expected a list of students or {{\"students\": [...]}}")
    return rows
