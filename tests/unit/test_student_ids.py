"""Students named as the user wrote them: the import's id or the id handed out, against a real mongod."""

from __future__ import annotations

import pytest

from callqueue.workers.exceptions import StaleToken, UnknownStudent
from callqueue.workers.models import BatchItem
from callqueue.workers.store import AssignmentStore, CompletionPlan, NewStudent
from callqueue.workers.student_ids import id_forms, import_id_of


def claim(store: AssignmentStore, session_id: str, assistant: str, request: str):  # type: ignore[no-untyped-def]
    return store.assign_next(store.open_session(session_id), assistant, request)


def test_forms_escape_the_session_and_put_the_handed_out_form_first() -> None:
    assert id_forms("eve-1", "s2") == ("eve-1:s2",)
    assert id_forms("eve-1", "eve-1:s2") == ("eve-1:s2", "eve-1:eve-1:s2")
    assert id_forms("a:b", "s2") == ("a\\:b:s2",)
    assert id_forms("a:b", "a:b:s2") == ("a\\:b:a:b:s2",)  # not the escaped prefix: only an import's id
    assert import_id_of("a:b", "a\\:b:s2") == "s2"


def test_complete_release_and_heartbeat_accept_the_import_id(store: AssignmentStore) -> None:
    store.import_students("eve-1", None, [NewStudent({"n": 1}, key="s1"), NewStudent({"n": 2}, key="s2")])
    held = claim(store, "eve-1", "alice", "r1")
    assert (held.student_id, held.to_result()["import_id"]) == ("eve-1:s1", "s1")
    assert store.heartbeat(store.open_session("eve-1"), "s1", "alice", held.assignment_token).student_id == "eve-1:s1"
    released = store.release("eve-1", "s1", "alice", held.assignment_token, "t1")
    assert released.to_result("released")["import_id"] == "s1" and released.assigned_to is None

    again = claim(store, "eve-1", "bob", "r2")
    done = store.complete("eve-1", "s1", "bob", again.assignment_token, CompletionPlan("reached"), "t2")
    repeat = store.complete("eve-1", "s1", "bob", again.assignment_token, CompletionPlan("reached"), "t3")
    assert done == repeat and done.to_result()["student_id"] == "eve-1:s1" and done.to_result()["import_id"] == "s1"


def test_an_unknown_id_names_every_form_tried(store: AssignmentStore) -> None:
    store.import_students("eve-1", None, [NewStudent({"n": 1}, key="s1")])
    with pytest.raises(UnknownStudent) as plain:
        store.complete("eve-1", "s9", "alice", 1, CompletionPlan("reached"), "t1")
    assert "'eve-1:s9'" in plain.value.message and plain.value.details == {"tried": ["eve-1:s9"]}
    with pytest.raises(UnknownStudent) as prefixed:
        store.release("eve-1", "eve-1:s9", "alice", 1, "t2")
    assert prefixed.value.details == {"tried": ["eve-1:s9", "eve-1:eve-1:s9"]}
    assert "as the id handed out ('eve-1:s9')" in prefixed.value.message
    assert "as the import's id ('eve-1:eve-1:s9')" in prefixed.value.message


def test_an_id_that_is_both_forms_names_the_handed_out_student_first(store: AssignmentStore) -> None:
    """Imported "s2" is stored "eve:s2"; imported "eve:s2" is stored "eve:eve:s2"; "eve:s2" names the first."""
    store.import_students("eve", None, [NewStudent({"n": "colon"}, key="eve:s2", priority=1),
                                        NewStudent({"n": "plain"}, key="s2")])
    held = claim(store, "eve", "alice", "r1")
    assert held.student == {"n": "colon"} and held.student_id == "eve:eve:s2"
    with pytest.raises(StaleToken):  # "eve:s2" is the student imported as "s2", never handed out (token 0)
        store.complete("eve", "eve:s2", "alice", held.assignment_token, CompletionPlan("reached"), "t1")
    done = store.complete("eve", "eve:eve:s2", "alice", held.assignment_token, CompletionPlan("reached"), "t2")
    assert done.to_result()["import_id"] == "eve:s2"


def test_a_batch_completes_by_either_form_and_answers_both(store: AssignmentStore) -> None:
    store.import_students("eve-1", None, [NewStudent({"n": n}, key=f"s{n}") for n in range(3)])
    items = [BatchItem(0, "eve-1", "s0", "loaded"), BatchItem(1, "eve-1", "eve-1:s1", "loaded"),
             BatchItem(2, "eve-1", "s7", "loaded")]
    results = store.complete_batch(items, "job-1")
    assert results[:2] == [
        {"index": 0, "student_id": "eve-1:s0", "import_id": "s0", "status": "completed", "unchanged": False},
        {"index": 1, "student_id": "eve-1:s1", "import_id": "s1", "status": "completed", "unchanged": False}]
    assert results[2]["student_id"] == "s7" and results[2]["error"]["details"] == {"tried": ["eve-1:s7"]}
    assert store.stats(store.open_session("eve-1")).completed == {"loaded": 2}
