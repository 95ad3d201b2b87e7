"""Calling hours: what keeping half of a session's students out of reach costs a claim.

Two sessions of the same 20,000 students, the ``n``-th in fixed-offset zone
``n % 20`` (no daylight saving), seeded fresh every round: one with calling
hours 06:00-18:00 every day, one without. The zones are chosen at the
database's moment so that 10 are open (each for at least another
``margin_seconds``) and 10 closed (none opening within it); open and closed
alternate, so every other student waits for its window. Claims/s (the
store's ``assign_next``, then the completion) A-B-B-A on fresh sessions as
the routing part, with the keys and documents a claim examines (``explain``
of the claim's own filter, guard included).

Every PASS is earned: a session that is not half closed when seeded, a
claim that finds nobody, or any claim of a closed zone's student stops the
part; the audit checks every claim against its student's window at the
claim's time (by the history) and that nobody was handed to two assistants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from pymongo.database import Database

from bench.harness.claims import Rounds, Seat, abba, claim_jobs, explain_claim, seed_session, settle
from bench.harness.core import Harness, Part
from bench.harness.desks import BenchError
from bench.harness.integrity import ENDED, IntegrityReport, check, combine
from bench.harness.targets import Target, median, ratio
from callqueue.workers.hours import WEEKDAYS, CallingHours, placement
from callqueue.workers.store import STUDENTS, AssignmentStore, ensure_indexes
from callqueue.workers.store.documents import WINDOW

HOURS_DB = "bench_hours"
PLAIN, HOURS = "no hours", "hours"
# Every fixed-offset zone, UTC+14 to UTC-12 (the sign of an Etc/GMT name is the other way round).
ZONES = tuple("Etc/GMT" if east == 0 else f"Etc/GMT{-east:+d}" for east in range(14, -13, -1))
HOURS_DOCUMENT = {"days": {day: ["06:00-18:00"] for day in WEEKDAYS}, "default_zone": "Etc/GMT"}


@dataclass(frozen=True)
class HoursConfig:
    """``zones`` zones, half open and half closed for at least ``margin_seconds`` after the part starts."""

    students: int = 20_000
    zones: int = 20
    clients: int = 8
    assistants_per_desk: int = 5
    turn_claims: int = 1_000
    rounds: int = 5
    margin_seconds: float = 3_600.0


@dataclass
class HoursResults(Rounds):
    config: HoursConfig = field(default_factory=HoursConfig)
    moment: datetime | None = None  # the database's clock when the zones were chosen
    opened: tuple[str, ...] = ()
    closed: tuple[str, ...] = ()
    explains: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # per round, per kind
    checks: list[IntegrityReport] = field(default_factory=list)

    def median_examined(self, kind: str, what: str = "keys_examined") -> float:
        return median([explains[kind][what] for explains in self.explains])

    def to_json(self) -> dict[str, Any]:
        return {"rounds": super().to_json(), "zones_chosen_at": self.moment, "open_zones": list(self.opened),
                "closed_zones": list(self.closed), "explain_by_round": self.explains,
                "round_ratios": [round(value, 3) for value in self.ratios(HOURS, PLAIN)],
                "median_claims_per_second": {kind: round(self.rate(kind), 1) for kind in (PLAIN, HOURS)},
                "keys_examined_per_claim": {kind: self.median_examined(kind) for kind in (PLAIN, HOURS)},
                "docs_examined_per_claim": {kind: self.median_examined(kind, "docs_examined")
                                            for kind in (PLAIN, HOURS)}}


class CallingHoursPart(Part):
    name = "calling-hours"
    description = "claims/s with half of 20 zones outside their calling hours vs no calling hours"
    sizes, quick = HoursConfig, {"rounds": 2}

    def run(self, config: HoursConfig, harness: Harness) -> HoursResults:
        database = harness.mongo[HOURS_DB]
        hours = CallingHours.from_document(HOURS_DOCUMENT)
        results = HoursResults(config=config, moment=AssignmentStore(database).server_now())
        results.opened, results.closed = choose_zones(hours, results.moment, config.zones // 2,
                                                      config.margin_seconds)
        zones = tuple(zone for pair in zip(results.opened, results.closed) for zone in pair)
        harness.say(f"  {config.students:,} students in {len(zones)} zones, hours 06:00-18:00 every day; at "
                    f"{results.moment:%H:%M} UTC open: {', '.join(results.opened)}; closed: "
                    f"{', '.join(results.closed)}\n  {config.clients} desks x {config.assistants_per_desk} "
                    f"assistants, {config.turn_claims} claims per turn, {config.rounds} rounds A-B-B-A")
        checks: dict[str, list[IntegrityReport]] = {PLAIN: [], HOURS: []}
        with harness.desks(config.clients) as pool:
            meter = harness.servers.cpu_meter(None, pool.pids)
            for number in range(config.rounds):
                sessions = {PLAIN: f"plain-{number}", HOURS: f"hours-{number}"}
                harness.mongo.drop_database(HOURS_DB)
                _seed(database, sessions[PLAIN], config.students, zones, None)
                _seed(database, sessions[HOURS], config.students, zones, hours)
                ensure_indexes(database)
                settle(database)
                require_waiting(database, sessions, expected=expected_closed(config.students, zones, results.closed))
                seats = {kind: _seats(config, kind, session_id) for kind, session_id in sessions.items()}
                results.rounds.append(abba(pool, database, meter, (PLAIN, HOURS), number, lambda kind, label:
                                           claim_jobs(harness.servers.mongo.url, HOURS_DB, seats[kind],
                                                      config.clients, label, config.turn_claims, ends=True)))
                require_no_closed_claims(database, sessions[HOURS], results.closed)
                for kind, result in results.rounds[-1].items():
                    checks[kind].append(check(kind, database, result.answers, ENDED))
                results.explains.append({kind: explain_claim(database, session_id)
                                         for kind, session_id in sessions.items()})
                harness.say(f"  round {number}: " + "; ".join(
                    f"{kind} {run.claims_per_second:6.1f} claims/s ({run.cpu_per_claim():.2f} ms CPU, "
                    f"{results.explains[-1][kind]['keys_examined']} keys / "
                    f"{results.explains[-1][kind]['docs_examined']} docs examined)"
                    for kind, run in results.rounds[-1].items()) + f"; ratio {results.ratios(HOURS, PLAIN)[-1]:.2f}")
        harness.mongo.drop_database(HOURS_DB)
        results.checks += [combine(f"calling hours, {kind} ({len(reports)} rounds)", reports)
                           for kind, reports in checks.items()]
        harness.say(f"  median claims/s: no hours {results.rate(PLAIN):.1f}, hours {results.rate(HOURS):.1f}; "
                    f"per-round ratio: median {results.ratio(HOURS, PLAIN):.2f}; keys examined per claim "
                    f"{results.median_examined(PLAIN):.1f} vs {results.median_examined(HOURS):.1f}\n  audit: "
                    f"{sum(report.claims_outside_hours for report in results.checks)} claims outside their student's "
                    f"window; no student of the {len(results.closed)} closed zones claimed in any round")
        return results

    def targets(self, results: HoursResults) -> list[Target]:
        """With half the zones closed, at >= 0.8x the claims/s of the same session without calling hours."""
        config = results.config
        return [Target(f"calling hours ({len(results.closed)} of {config.zones} zones closed) vs none, "
                       f"{config.students:,} students, claims/s (median of per-round ratios)",
                       results.ratio(HOURS, PLAIN), 0.8, samples=len(results.rounds))]

    def observations(self, results: HoursResults) -> list[tuple[str, float]]:
        return [("calling hours: keys examined per claim, hours / none",
                 ratio(results.median_examined(HOURS), results.median_examined(PLAIN))),
                ("calling hours: CPU per claim, hours / none (median of per-round ratios)",
                 results.cpu_ratio(HOURS, PLAIN))]


def choose_zones(hours: CallingHours, moment: datetime, count: int,
                 margin_seconds: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``count`` zones whose window stays open longest after ``moment`` (each open for more than
    ``margin_seconds``) and the ``count`` whose window opens last (none within ``margin_seconds``)."""
    margin = moment + timedelta(seconds=margin_seconds)
    placed = {zone: placement(hours, zone, moment) for zone in ZONES}
    opened = sorted((zone for zone, found in placed.items() if found.open and found.closes_at and
                     found.closes_at > margin), key=lambda zone: placed[zone].closes_at, reverse=True)
    closed = sorted((zone for zone, found in placed.items() if not found.open and found.opens_at and
                     found.opens_at > margin), key=lambda zone: placed[zone].opens_at, reverse=True)
    if len(opened) < count or len(closed) < count:
        raise BenchError(f"at {moment.isoformat()} only {len(opened)} zones stay open and {len(closed)} stay "
                         f"closed for {margin_seconds:g}s; the part needs {count} of each")
    return tuple(opened[:count]), tuple(closed[:count])


def expected_closed(students: int, zones: Sequence[str], closed: Sequence[str]) -> int:
    """How many of ``students`` (the ``n``-th in ``zones[n % len(zones)]``) are in a closed zone."""
    return sum(1 for number in range(students) if zones[number % len(zones)] in closed)


def require_waiting(database: Database, sessions: dict[str, str], expected: int) -> None:
    """Stop the part unless the hours session has ``expected`` students waiting for their window, the other none."""
    waiting = {kind: database[STUDENTS].count_documents({"call_session_id": session_id, "waiting_for": WINDOW})
               for kind, session_id in sessions.items()}
    if waiting != {PLAIN: 0, HOURS: expected}:
        raise BenchError(f"students waiting for their window after the import: {waiting}, expected "
                         f"{{{PLAIN!r}: 0, {HOURS!r}: {expected}}}: the sessions are not what is to be measured")


def require_no_closed_claims(database: Database, session_id: str, closed: Sequence[str]) -> None:
    """Stop the part if any student of a closed zone was ever claimed in ``session_id``."""
    found = database[STUDENTS].count_documents({"call_session_id": session_id, "zone": {"$in": list(closed)},
                                                "history.event": "claimed"})
    if found:
        raise BenchError(f"{found} students of zones outside their calling hours were handed out in {session_id}")


def _seed(database: Database, session_id: str, count: int, zones: tuple[str, ...],
          hours: CallingHours | None) -> None:
    """The session (with its calling hours, if any, before the import places its students), then its students."""
    store = AssignmentStore(database)
    store.create_session(session_id, session_id)
    if hours is not None:
        store.set_calling_hours(session_id, hours)
    seed_session(database, session_id, count, zones=zones)


def _seats(config: HoursConfig, kind: str, session_id: str) -> list[Seat]:
    return [(session_id, f"{kind.replace(' ', '-')}-a{index}", ())
            for index in range(config.clients * config.assistants_per_desk)]


PART = CallingHoursPart()
