"""The benchmark's claims and its integrity check, against a real mongod: nothing wrong goes uncounted.

``bench.harness.integrity.check`` compares what clients were told with the
students' history (``devstack.audit``); ``bench.harness.claims.measure`` and
the drain refuse a claim path that hands out nobody while students wait.
"""

from __future__ import annotations

import pytest
from pymongo.database import Database

from bench.harness.claims import ClaimJob, measure, seed_session, seed_style_claim
from bench.harness.desks import THREADS, BenchError, DeskPool
from bench.harness.integrity import DRAINED, ENDED, HOLDING, Answer, check
from bench.parts.drain import SESSION, DrainConfig, _tenth
from callqueue.workers.hours import CallingHours
from callqueue.workers.store import AssignmentStore, CompletionPlan


def claim(store: AssignmentStore, session: str, assistant: str) -> Answer:
    assignment = store.assign_next(store.open_session(session), assistant, f"r-{assistant}")
    assert assignment is not None
    return Answer(session, assignment.student_id, assistant, assignment.assignment_token)


@pytest.fixture()
def held(engine_database: Database, store: AssignmentStore) -> list[Answer]:
    """Two of four students claimed, and still held."""
    seed_session(engine_database, "s", 4)
    return [claim(store, "s", "a1"), claim(store, "s", "a2")]


def test_answers_that_match_the_history_are_clean(engine_database: Database, held: list[Answer]) -> None:
    report = check("held", engine_database, held, HOLDING)
    assert report.ok and report.answers == 2


def test_one_claim_told_to_two_assistants_is_handed_twice(engine_database: Database, held: list[Answer]) -> None:
    report = check("twice", engine_database, [*held, held[0]._replace(assistant_id="a3")], HOLDING)
    assert report.students_in_two_answers == 1 and report.holder_mismatches == 1 and not report.ok


def test_a_claim_nobody_was_told_of_is_counted(engine_database: Database, held: list[Answer]) -> None:
    report = check("lost answer", engine_database, held[:1], HOLDING)
    assert report.claimed_without_answer == 1 and not report.ok


def test_claims_that_should_have_ended_but_are_held_are_not_completed(engine_database: Database,
                                                                       held: list[Answer]) -> None:
    assert check("ended?", engine_database, held, ENDED).not_completed_once == 2


def test_completed_claims_are_clean_when_ended_and_wrong_when_expected_held(
        engine_database: Database, store: AssignmentStore, held: list[Answer]) -> None:
    for answer in held:
        store.complete("s", answer.student_id, answer.assistant_id, answer.token, CompletionPlan("reached"), "c")
    done = [answer._replace(ended="completed") for answer in held]
    assert check("ended", engine_database, done, ENDED).ok
    assert check("held?", engine_database, done, HOLDING).holder_mismatches == 2
    drained = check("drained?", engine_database, done, DRAINED)
    assert drained.not_completed_once == 2  # the two students nobody claimed


def test_a_refused_completion_is_a_holder_mismatch(engine_database: Database, held: list[Answer]) -> None:
    report = check("refused", engine_database, [held[0]._replace(ended="refused:not_held"), held[1]], HOLDING)
    assert report.holder_mismatches == 1 and not report.ok


def test_the_seed_style_claim_is_audited_too(engine_database: Database) -> None:
    seed_session(engine_database, "seed", 3)
    document = seed_style_claim(engine_database, "seed", "a1")
    assert check("seed", engine_database, [Answer("seed", document["_id"], "a1", None)], HOLDING).ok


def test_a_claim_finding_nobody_while_students_wait_stops_the_measurement(
        engine_database: Database, mongo_server: object) -> None:
    seed_session(engine_database, "tagged", 5, routes=("tag-1",))  # nobody without that skill may take them
    jobs = [ClaimJob(mongo_server.url, engine_database.name, (("tagged", "a", ()),), "j", max_claims=5)]
    with DeskPool(1, THREADS) as pool:
        with pytest.raises(BenchError, match="found nobody after 0 claims"):
            measure(pool, jobs, "tagged", engine_database)
        assert measure(pool, jobs, "tagged", engine_database, may_run_out=True).claims == 0


def test_a_drain_whose_claims_find_nobody_stops_instead_of_waiting_forever(
        engine_database: Database, mongo_server: object) -> None:
    seed_session(engine_database, SESSION, 5, routes=("tag-1",))
    with DeskPool(1, THREADS) as pool, pytest.raises(BenchError, match="no claim succeeded while 5 students"):
        _tenth(pool, mongo_server.url, engine_database, [(SESSION, "d0-a0", ())], None, 0,
               DrainConfig(clients=1, cache_seconds=1.0), None)


def test_a_drain_tenth_claims_completes_and_releases(engine_database: Database, mongo_server: object) -> None:
    seed_session(engine_database, SESSION, 12)
    with DeskPool(2, THREADS) as pool:
        result = _tenth(pool, mongo_server.url, engine_database, [(SESSION, "d0-a0", ()), (SESSION, "d1-a0", ())],
                        None, 0, DrainConfig(clients=2, release_every=4, cache_seconds=1.0), None)
    assert result.releases >= 2 and result.claims == 12 + result.releases
    assert check("drain", engine_database, result.answers, DRAINED, [SESSION]).ok


def test_a_claim_outside_its_students_calling_hours_fails_the_audit(engine_database: Database,
                                                                   store: AssignmentStore) -> None:
    seed_session(engine_database, "zoned", 2, zones=("Etc/GMT-3",))
    given = [claim(store, "zoned", "a1")]
    assert check("hours", engine_database, given, HOLDING).ok
    store.set_calling_hours("zoned", CallingHours.from_document({"days": {}, "default_zone": "Etc/GMT"}))
    report = check("hours", engine_database, given, HOLDING)  # the claim's time is now outside the hours
    assert report.claims_outside_hours == 1 and not report.ok
    assert "1 claimed outside calling hours" in report.line()
