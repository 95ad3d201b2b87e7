"""Ready to shard the students by ``call_session_id``: the indexes and the "Get Next" path's operations.

On a sharded collection MongoDB enforces a unique index only if it starts
with the shard key, and an operation reaches one shard only if its filter
names the shard key. The shard key that keeps every claim on one shard is
``call_session_id``. This checks both from what the store really does: the
index definitions ``ensure_indexes`` creates, and every command the "Get
Next" path sends (recorded by a pymongo command listener), against a real
mongod.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Iterator

import pytest
from pymongo import ASCENDING, MongoClient, monitoring
from pymongo.database import Database

from devstack.servers import MongoServer
from callqueue.workers.exceptions import NotHolder, RequestConflict
from callqueue.workers.hours import WEEKDAYS
from callqueue.workers.models import Callback, RetryRule
from callqueue.workers.store import STUDENTS, AssignmentStore, NewStudent, ensure_indexes, plan_for, utcnow
from callqueue.workers.store.documents import REQUEST_INDEX, RETIRED_REQUEST_INDEX, SESSIONS
from callqueue.workers.validation import require_calling_hours

SHARD_KEY = "call_session_id"
ALWAYS_OPEN = require_calling_hours({"days": {day: ["00:00-24:00"] for day in WEEKDAYS}, "default_zone": "UTC",
                                     "callbacks_outside_hours": True}, 8, 500)


class Recorder(monitoring.CommandListener):
    """Every command sent to the students collection, as sent."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command.get(event.command_name) == STUDENTS:
            self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture()
def recorded(mongo_server: MongoServer) -> Iterator[tuple[AssignmentStore, Recorder, Database]]:
    """A store on a fresh database whose every students command is recorded."""
    recorder = Recorder()
    name = f"shard_{uuid.uuid4().hex[:12]}"
    with MongoClient(mongo_server.url, tz_aware=True, event_listeners=[recorder]) as client:
        ensure_indexes(client[name])
        try:
            yield AssignmentStore(client[name]), recorder, client[name]
        finally:
            client.drop_database(name)


def filters(command_name: str, command: dict[str, Any]) -> list[dict[str, Any]]:
    """The filter(s) a command selects documents with (an insert's documents carry the key themselves)."""
    if command_name in ("find", "count", "distinct"):
        return [command.get("filter", command.get("query", {}))]
    if command_name == "findAndModify":
        return [command["query"]]
    if command_name == "update":
        return [update["q"] for update in command["updates"]]
    if command_name == "delete":
        return [delete["q"] for delete in command["deletes"]]
    if command_name == "aggregate":
        return [command["pipeline"][0].get("$match", {})]
    if command_name == "insert":
        return list(command["documents"])
    raise AssertionError(f"unexpected command {command_name}: {command}")


def the_get_next_path(store: AssignmentStore) -> None:
    """Every kind of operation an assistant's loop makes: presses (new, repeated, refused, already held,
    exhausted), completions (final, retry, callback, repeated, refused), release, heartbeat, in a session
    that closes while someone still holds a student."""
    session = store.open_session("s")
    first = store.assign_next(session, "alice", "r1")
    assert store.assign_next(session, "alice", "r1") == first  # the same press again
    assert store.assign_next(session, "alice", "r2").already_held  # a second press while holding
    with pytest.raises(RequestConflict):
        store.assign_next(session, "bob", "r1")
    store.heartbeat(session, first.student_id, "alice", first.assignment_token)
    store.complete("s", first.student_id, "alice", first.assignment_token,
                   plan_for(store.require_session("s"), "no_answer", None, 600), "c1")
    store.complete("s", first.student_id, "alice", first.assignment_token,  # a repeat of that completion
                   plan_for(store.require_session("s"), "no_answer", None, 600), "c1")
    second = store.assign_next(session, "alice", "r3")
    with pytest.raises(NotHolder):
        store.release("s", second.student_id, "bob", second.assignment_token, "rel0")
    store.release("s", second.student_id, "alice", second.assignment_token, "rel1")
    third = store.assign_next(session, "bob", "r4")
    callback = Callback(utcnow() + timedelta(hours=1), "bob")
    store.complete("s", third.student_id, "bob", third.assignment_token,
                   plan_for(store.require_session("s"), "call_me", callback, 600), "c2")
    fourth = store.assign_next(session, "carol", "r5")
    assert store.assign_next(session, "dave", "r6") is None
    store.why_exhausted(session, "dave", ("es",))
    store.close_session("s", "session_closed", False, "close-1")
    store.complete("s", fourth.student_id, "carol", fourth.assignment_token,  # settles in the closed session
                   plan_for(store.require_session("s"), "no_answer", None, 600), "c3")


def test_every_unique_index_of_the_students_starts_with_the_shard_key(store: AssignmentStore) -> None:
    indexes = store.students.index_information()
    unique = {name: [key for key, _ in index["key"]] for name, index in indexes.items()
              if index.get("unique") and name != "_id_"}
    assert unique and REQUEST_INDEX in unique, unique
    assert {name: keys[0] for name, keys in unique.items()} == {name: SHARD_KEY for name in unique}, unique
    # _id is exempt from the rule (MongoDB keeps it unique per shard only); a student's _id is
    # "<session>:<row id>", so it is unique across shards because the session is part of it.
    # The sessions collection has no unique index but _id: it stays unsharded (or is sharded on _id).
    assert [name for name, index in store.sessions.index_information().items() if index.get("unique")] == []


def test_every_operation_of_the_get_next_path_names_its_session(
        recorded: tuple[AssignmentStore, Recorder, Database]) -> None:
    store, recorder, _ = recorded
    store.import_students("s", None, [NewStudent({"n": n}, key=f"k{n}") for n in range(3)])
    store.set_campaign("s", (RetryRule("no_answer", 60, 3),), None)
    store.set_calling_hours("s", ALWAYS_OPEN)  # so a callback's completion reads the student's zone too
    recorder.commands.clear()

    the_get_next_path(store)

    kinds = {name for name, _ in recorder.commands}
    assert {"findAndModify", "find", "aggregate", "update"} <= kinds, kinds
    assert any(command.get("projection") == {"zone": 1} for _, command in recorder.commands)  # the callback's
    unscoped = [(name, selector) for name, command in recorder.commands for selector in filters(name, command)
                if not isinstance(selector.get(SHARD_KEY), str)]
    assert unscoped == [], unscoped


def test_a_press_finds_its_student_in_one_operation_and_an_exhausted_one_adds_one_indexed_read(
        recorded: tuple[AssignmentStore, Recorder, Database]) -> None:
    store, recorder, _ = recorded
    store.import_students("s", None, [NewStudent({"n": 0}, key="k0")])
    session = store.open_session("s")
    recorder.commands.clear()
    store.assign_next(session, "alice", "r1")
    assert [name for name, _ in recorder.commands] == ["findAndModify"]  # the common path: the claim alone
    recorder.commands.clear()
    store.why_exhausted(session, "bob")
    assert [(name, command.get("hint")) for name, command in recorder.commands] == [
        ("aggregate", "claim_order_by_lane")]


def test_an_old_database_gets_the_session_scoped_request_index(engine_database: Database) -> None:
    students = engine_database[STUDENTS]
    students.drop_index(REQUEST_INDEX)
    students.create_index([("claim_request_ids", ASCENDING)], name=RETIRED_REQUEST_INDEX, unique=True,
                          partialFilterExpression={"claim_request_ids": {"$exists": True}})
    students.insert_one({"_id": "s:a", SHARD_KEY: "s", "claim_request_ids": ["r1"]})

    ensure_indexes(engine_database)
    ensure_indexes(engine_database)  # and again: nothing left to do

    indexes = students.index_information()
    assert RETIRED_REQUEST_INDEX not in indexes
    assert indexes[REQUEST_INDEX]["key"] == [(SHARD_KEY, 1), ("claim_request_ids", 1)]
    assert indexes[REQUEST_INDEX]["unique"]
    assert SESSIONS in engine_database.list_collection_names()


def test_a_request_id_is_one_press_within_its_session_and_new_in_another(store: AssignmentStore) -> None:
    for session_id in ("a", "b"):
        store.import_students(session_id, None, [NewStudent({"n": n}, key=f"k{n}") for n in range(2)])
    in_a = store.assign_next(store.open_session("a"), "alice", "press-1")
    assert store.assign_next(store.open_session("a"), "alice", "press-1") == in_a  # the same press
    with pytest.raises(RequestConflict):
        store.assign_next(store.open_session("a"), "bob", "press-1")  # another assistant, same session
    in_b = store.assign_next(store.open_session("b"), "bob", "press-1")  # another session: a new press
    assert in_b is not None and in_b.call_session_id == "b" and not in_b.already_held
    assert store.assign_next(store.open_session("b"), "bob", "press-1") == in_b
