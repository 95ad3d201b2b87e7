"""Shared helpers for tests that go through real workers."""

from __future__ import annotations

import hashlib
from typing import Any

import bson
from pymongo.database import Database

from producers.client import AssignmentClient


def students(count: int, prefix: str = "s") -> list[dict[str, Any]]:
    """``count`` import rows with ids ``<prefix>00000``..."""
    return [{"student_id": f"{prefix}{n:05d}", "name": f"Student {n}", "phone": f"+1555{n:07d}"}
            for n in range(count)]


def seed(client: AssignmentClient, session_id: str, count: int) -> None:
    for start in range(0, count, 1000):
        client.import_students(session_id, students(count)[start:start + 1000], "test session")


def fingerprint(database: Database) -> str:
    """A digest of every document in every collection, byte for byte (BSON)."""
    digest = hashlib.sha256()
    for name in sorted(database.list_collection_names()):
        digest.update(name.encode())
        for document in database[name].find(sort=[("_id", 1)]):
            digest.update(bson.encode(document))
    return digest.hexdigest()
