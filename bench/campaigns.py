"""Campaigns: what routing tags cost a claim, and how soon a due callback can be claimed.

Part A, ``routing_part``: claims/s from a session whose students are spread
over five routing tags (and untagged), each assistant pressing with a random
2-5 of those skills, against a session of the same size with no tags at all,
where presses carry no skills. A press is ``AssignmentStore.assign_next``
(with the assistant's skills) then the completion, the session read once per
measurement, as in the engine parts. Every round seeds both sessions fresh
and lets them take turns A-B-B-A; the target uses the median of the
per-round ratios. Each claim names more lanes with tags (its personal lane,
untagged, one per skill), and MongoDB merges one index range per lane, so
the keys a claim examines (``explain``) are reported next to the rates.

Part B, ``callback_part``: the time from a personal callback's due moment to
its first successful claim, through real Celery: a worker on the assignments
queue and ``celery beat`` sending ``callqueue.promote_due`` every
``promote_interval_seconds``. Each assistant claims one student and
completes it with a callback for themselves at a staggered time (spread over
a few promotion intervals, so the due moments fall at every phase of beat's
schedule); from shortly before that moment the assistant presses "Get Next"
every ``poll_seconds`` until the student comes back to them. The session
holds only these students, so a press before the promotion finds nobody.

``python -m bench --campaigns`` runs both alone with their own servers;
``make bench`` runs them as its last part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from pymongo import MongoClient
from pymongo.database import Database

from bench import integrity
from bench.cpu import CpuMeter
from bench.data import IMPORT_CHUNK, seed_session, settle, student_rows
from bench.integrity import IntegrityReport
from bench.pool import BenchError, DeskPool
from bench.servers import BenchServers, WorkerOptions
from bench.sessions import (
    COMPLETED, OUTCOME, Press, PressIntegrity, PressJob, PressResult, PressRun, _scratch_database, _split,
    check_presses,
    combine_presses, cpu_per_claim, measure_presses, merge_presses,
)
from bench.stats import median, percentile, ratio
from bench.targets import Target
from devstack.processes import wait_until
from devstack.servers import CeleryBeat
from producers.client import AssignmentClient
from workers.models import Assignment, CallSession
from workers.store import CLAIM_INDEX, STUDENTS, AssignmentStore, ensure_indexes
from workers.store.documents import CLAIM_ORDER, claim_filter, claim_lanes

ROUTING_DB = "bench_routing"
UNTAGGED = "untagged"
TAGGED = "tagged"
PROMOTE_ENV = "CALLQUEUE_PROMOTE_INTERVAL_SECONDS"
PROMOTE_TASK = "callqueue.promote_due"
BEAT_START_SECONDS = 60.0
CALLBACK_SESSION = "bench-callbacks"
CALLBACK_OUTCOME = "call_back"
Say = Callable[[str], None]
Scheduled = tuple[str, str, datetime]  # a callback: student, assistant, due moment


@dataclass(frozen=True)
class CampaignsConfig:
    """Sizes and timings of both parts (``quick`` shrinks part A for a smoke run).

    Part A: two sessions of ``students`` each, ``clients`` desks of
    ``assistants_per_desk`` assistants, ``turn_claims`` claims per turn,
    ``rounds`` rounds; the tagged session spreads its students over ``tags``
    routing tags and untagged, each assistant pressing with ``min_skills`` to
    ``max_skills`` of them. Part B: ``callbacks`` callbacks, the first due
    ``lead_seconds`` after scheduling, spread over ``spread_intervals``
    promotion intervals of ``promote_interval_seconds``; pressing starts
    ``early_seconds`` before each due moment and repeats every ``poll_seconds``
    until the student is claimed or ``give_up_seconds`` after it was due.
    """

    students: int = 20_000
    clients: int = 8
    assistants_per_desk: int = 5
    tags: int = 5
    min_skills: int = 2
    max_skills: int = 5
    turn_claims: int = 1_000
    rounds: int = 5
    callbacks: int = 20
    promote_interval_seconds: float = 2.0
    poll_seconds: float = 0.075
    lead_seconds: float = 3.0
    spread_intervals: float = 2.5
    early_seconds: float = 0.3
    give_up_seconds: float = 10.0

    @property
    def routes(self) -> tuple[str, ...]:
        """The routing tags, untagged ("") first: the tagged session's students take them in turn."""
        return ("", *(f"tag-{index + 1}" for index in range(self.tags)))

    @classmethod
    def quick(cls, **overrides: Any) -> "CampaignsConfig":
        """A smoke run: two rounds of part A, part B as it is (it takes about 15 s)."""
        return cls(**{"rounds": 2, **overrides})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- part A: claims/s with routing tags against none -------------------------------

class SkilledStore:
    """The store as one desk presses it, each assistant with its own skills (everything else passed on)."""

    def __init__(self, store: AssignmentStore, skills: dict[str, tuple[str, ...]]) -> None:
        self._store = store
        self._skills = skills

    def assign_next(self, session: CallSession, assistant_id: str, request_id: str) -> Assignment | None:
        return self._store.assign_next(session, assistant_id, request_id, skills=self._skills[assistant_id])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass(frozen=True)
class SkilledPressJob(PressJob):
    """``bench.sessions.PressJob`` with skills: ``skills[i]`` are the skills of ``assistants[i]``."""

    skills: tuple[tuple[str, ...], ...] = ()

    def _loop(self, store: AssignmentStore, sessions: Any) -> PressRun:
        by_assistant = {assistant: skills for (_session, assistant), skills in zip(self.assistants, self.skills)}
        return super()._loop(SkilledStore(store, by_assistant), sessions)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Desks:
    """Who presses in one session: per desk, its assistants and their skills."""

    session_id: str
    assistants: tuple[tuple[tuple[str, str], ...], ...]
    skills: tuple[tuple[tuple[str, ...], ...], ...]

    def jobs(self, mongo_url: str, database: str, quota: int, label: str) -> list[SkilledPressJob]:
        """One job per desk sharing ``quota`` claims, the session read once before the go."""
        shares = _split(quota, len(self.assistants))
        return [SkilledPressJob(mongo_url, database, layout, f"{label}-d{desk}", share, None, skills=skills)
                for desk, (layout, skills, share) in enumerate(zip(self.assistants, self.skills, shares))]

    def pressing(self) -> list[tuple[str, tuple[str, ...]]]:
        """Every assistant with their skills."""
        return [(assistant, skills) for layout, skills in zip(self.assistants, self.skills)
                for (_session, assistant), skills in zip(layout, skills)]


def make_desks(config: CampaignsConfig, kind: str, session_id: str, rng: random.Random) -> Desks:
    """Desks for ``kind``: no skills when untagged; else 2-5 tags each, every tag held by someone."""
    tags, per_desk, desks = config.routes[1:], config.assistants_per_desk, range(config.clients)
    layouts = tuple(tuple((session_id, f"{kind}-d{desk}-a{index}") for index in range(per_desk)) for desk in desks)
    skills = tuple(tuple(() if kind == UNTAGGED else _skills(rng, tags, config, desk * per_desk + index)
                         for index in range(per_desk)) for desk in desks)
    return Desks(session_id, layouts, skills)


def _skills(rng: random.Random, tags: tuple[str, ...], config: CampaignsConfig, number: int) -> tuple[str, ...]:
    """A random 2-5 of the tags, always with tag ``number % len(tags)`` (so no tag is left to nobody)."""
    own = tags[number % len(tags)]
    count = rng.randint(config.min_skills, config.max_skills)
    return tuple(sorted({own, *rng.sample([tag for tag in tags if tag != own], count - 1)}))


def seed_routed(database: Database, session_id: str, count: int, routes: tuple[str, ...]) -> None:
    """``bench.data``'s students, the ``n``-th with routing tag ``routes[n % len(routes)]``."""
    rows = [dataclasses.replace(row, route=routes[index % len(routes)])
            for index, row in enumerate(student_rows(count))]
    AssignmentStore(database).import_students(session_id, session_id, rows, IMPORT_CHUNK)


def keys_examined(database: Database, desks: Desks) -> float:
    """Index keys the claim's plan examines (``explain``, nothing claimed), averaged over the assistants."""
    counts = []
    for assistant, skills in desks.pressing():
        lanes = claim_lanes(assistant, skills, personal=False)
        cursor = database[STUDENTS].find(claim_filter(desks.session_id, lanes, "bench-explain"),
                                         {"_id": 1}, sort=CLAIM_ORDER, hint=CLAIM_INDEX, limit=1)
        counts.append(cursor.explain()["executionStats"]["totalKeysExamined"])
    return sum(counts) / len(counts)


@dataclass(frozen=True)
class RoutingRound:
    """One round: each kind's claims (two turns merged) and the keys its claim examines after the round."""

    results: dict[str, PressResult]
    keys: dict[str, float]

    @property
    def ratio(self) -> float:
        return ratio(self.results[TAGGED].claims_per_second, self.results[UNTAGGED].claims_per_second)

    def to_json(self) -> dict[str, Any]:
        return {"kinds": {kind: {**result.to_json(), "keys_examined_per_claim": round(self.keys[kind], 2)}
                          for kind, result in self.results.items()},
                "ratio": round(self.ratio, 3)}


def routing_part(pool: DeskPool, mongo_url: str, mongo: MongoClient, config: CampaignsConfig, meter: CpuMeter | None,
                 say: Say) -> tuple[list[RoutingRound], list[IntegrityReport]]:
    """Claims/s of the tagged session against the untagged one, A-B-B-A each round on fresh sessions."""
    desks_used = min(config.clients, pool.size)
    config = dataclasses.replace(config, clients=desks_used)
    say(f"\n[campaigns A] {config.students:,} students untagged vs spread over {config.tags} routing tags + "
        f"untagged; {desks_used} desks x {config.assistants_per_desk} assistants (tagged: {config.min_skills}-"
        f"{config.max_skills} skills each); a press = assign_next + complete; {config.turn_claims} claims per "
        f"turn, {config.rounds} rounds A-B-B-A on fresh sessions")
    rounds: list[RoutingRound] = []
    checks: dict[str, list[PressIntegrity]] = {UNTAGGED: [], TAGGED: []}
    with _scratch_database(mongo, ROUTING_DB) as database:
        for number in range(config.rounds):
            desks = _fresh_round(database, config, number)
            order = [UNTAGGED, TAGGED] if number % 2 == 0 else [TAGGED, UNTAGGED]
            turns: dict[str, list[PressResult]] = {kind: [] for kind in order}
            for turn, kind in enumerate(order + order[::-1]):
                jobs = desks[kind].jobs(mongo_url, database.name, config.turn_claims, f"route-r{number}-t{turn}")
                turns[kind].append(measure_presses(pool, jobs, f"{kind}-r{number}-t{turn}", database, meter))
            merged = {kind: merge_presses(f"{kind}-r{number}", parts) for kind, parts in turns.items()}
            for kind, result in merged.items():
                checks[kind].append(check_presses(kind, database, [desks[kind].session_id], result.presses))
            rounds.append(RoutingRound(merged, {kind: keys_examined(database, desks[kind]) for kind in merged}))
            say(_routing_line(number, rounds[-1]))
    reports = [combine_presses(f"routing, {kind} ({len(reports)} rounds)", reports) for kind, reports in checks.items()]
    return rounds, reports


def _fresh_round(database: Database, config: CampaignsConfig, number: int) -> dict[str, Desks]:
    """Both sessions seeded afresh (same students, with and without tags), indexed, flushed; their desks."""
    database.client.drop_database(database.name)
    sessions = {UNTAGGED: f"untagged-{number}", TAGGED: f"tagged-{number}"}
    seed_routed(database, sessions[UNTAGGED], config.students, ("",))
    seed_routed(database, sessions[TAGGED], config.students, config.routes)
    ensure_indexes(database)
    settle(database)
    rng = random.Random(number)
    return {kind: make_desks(config, kind, session_id, rng) for kind, session_id in sessions.items()}


def _routing_line(number: int, result: RoutingRound) -> str:
    """One round's rates, CPU and keys per claim of both kinds, and its ratio."""
    parts = [f"{kind} {run.claims_per_second:6.1f} claims/s ({cpu_per_claim(run):.2f} ms CPU, "
             f"{result.keys[kind]:.1f} keys examined, {ratio(run.skipped_entries, run.claims):.0f} skipped)"
             for kind, run in sorted(result.results.items(), reverse=True)]
    return f"  round {number}: {'; '.join(parts)}; ratio {result.ratio:.2f}"


# -- part B: a callback's due moment to its claim, through Celery and beat -----------

@dataclass(frozen=True)
class CallbackClaim:
    """One callback: when it was due, when its assistant claimed it (None: not within the wait), and presses."""

    student_id: str
    assistant_id: str
    due: datetime
    claimed_at: datetime | None
    presses: int
    press: Press | None

    @property
    def delay_seconds(self) -> float:
        """Due moment to claim (infinite when never claimed; negative would be a claim before it was due)."""
        return float("inf") if self.claimed_at is None else (self.claimed_at - self.due).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {"student_id": self.student_id, "assistant_id": self.assistant_id, "due": self.due.isoformat(),
                "claimed_at": None if self.claimed_at is None else self.claimed_at.isoformat(),
                "delay_seconds": None if self.claimed_at is None else round(self.delay_seconds, 3),
                "presses": self.presses}


def callback_part(servers: BenchServers, mongo: MongoClient, config: CampaignsConfig, workers: WorkerOptions,
                  say: Say) -> tuple[list[CallbackClaim], IntegrityReport]:
    """Schedule the callbacks through Celery, let beat promote them, and time each one's first claim."""
    interval = config.promote_interval_seconds
    say(f"\n[campaigns B] {config.callbacks} personal callbacks due {config.lead_seconds:g}s on, spread over "
        f"{config.spread_intervals:g} promotion intervals; worker + beat (promote_due every {interval:g}s); "
        f"each assistant presses every {config.poll_seconds * 1000:.0f} ms from {config.early_seconds:g}s "
        f"before its due moment")
    extra = {PROMOTE_ENV: f"{interval:g}"}
    database = mongo[servers.settings().mongo_db]
    database.client.drop_database(database.name)
    seed_session(database, CALLBACK_SESSION, config.callbacks)
    ensure_indexes(database)
    with contextlib.ExitStack() as stack:
        stack.enter_context(servers.workers(workers, extra_env=extra))
        beat = CeleryBeat(servers.workdir, servers.environ(extra))
        stack.callback(beat.stop)
        _start_beat(beat)
        clients = [stack.enter_context(AssignmentClient(servers.settings(), timeout_seconds=30.0, retries=0))
                   for _ in range(config.callbacks)]
        first, scheduled = _schedule(clients, config)
        claims = _poll_all(clients, scheduled, config)
    presses = first + [claim.press for claim in claims if claim.press is not None]
    check = integrity.combine(f"callbacks ({config.callbacks}, claimed twice each)",
                              [check_presses("", database, [CALLBACK_SESSION], presses)])
    return claims, check


def _start_beat(beat: CeleryBeat) -> None:
    """Start beat and wait until it has sent its first ``promote_due``, so no callback waits for beat to start."""
    log = beat.process.log_path
    offset = log.stat().st_size if log.exists() else 0
    beat.start()
    wait_until(lambda: PROMOTE_TASK.encode() in log.read_bytes()[offset:], BEAT_START_SECONDS,
               f"beat's first {PROMOTE_TASK} (log: {log})", beat.process.alive)


def _schedule(clients: list[AssignmentClient], config: CampaignsConfig) -> tuple[list[Press], list[Scheduled]]:
    """Each assistant claims a student, then completes it with a callback for themselves; (student, assistant, due).

    Everyone claims first; the due moments are fixed after that, the first ``lead_seconds`` away.
    """
    assistants = [f"callback-a{index}" for index in range(len(clients))]
    held = [_press(client, assistant, f"{assistant}-first") for client, assistant in zip(clients, assistants)]
    if any(answer["status"] == "exhausted" for answer in held):
        raise BenchError("a callback assistant found nobody to call")
    start = datetime.now(timezone.utc) + timedelta(seconds=config.lead_seconds)
    spacing = config.spread_intervals * config.promote_interval_seconds / config.callbacks
    presses, scheduled = [], []
    for index, (client, assistant, answer) in enumerate(zip(clients, assistants, held)):
        due = _to_ms(start + timedelta(seconds=index * spacing))
        presses.append(_complete(client, answer, assistant, CALLBACK_OUTCOME, 0.0,
                                 callback_at=due.isoformat(timespec="milliseconds"), callback_assistant=assistant))
        if datetime.now(timezone.utc) >= due:
            raise BenchError(f"scheduling the callbacks took longer than lead_seconds ({config.lead_seconds:g}s)")
        scheduled.append((answer["student_id"], assistant, due))
    return presses, scheduled


def _poll_all(clients: list[AssignmentClient], scheduled: list[Scheduled],
              config: CampaignsConfig) -> list[CallbackClaim]:
    """One thread per callback, pressing around its due moment; their claims in schedule order."""
    claims: list[CallbackClaim | None] = [None] * len(scheduled)
    errors: dict[int, str] = {}

    def poll(index: int) -> None:
        try:
            claims[index] = _poll(clients[index], *scheduled[index], config)
        except Exception as exc:  # noqa: BLE001 - reported below, with the poller it stopped
            errors[index] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=poll, args=(index,), name=f"callback-poller-{index}", daemon=True)
               for index in range(len(scheduled))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError("; ".join(f"callback poller {index}: {message}" for index, message in sorted(errors.items())))
    return [claim for claim in claims if claim is not None]


def _poll(client: AssignmentClient, student_id: str, assistant: str, due: datetime,
          config: CampaignsConfig) -> CallbackClaim:
    """Press from ``early_seconds`` before ``due`` until claimed; then complete the call (final)."""
    _sleep_until(due - timedelta(seconds=config.early_seconds))
    give_up = due + timedelta(seconds=config.give_up_seconds)
    presses = 0
    while datetime.now(timezone.utc) < give_up:
        began = time.monotonic()
        answer = _press(client, assistant, f"{assistant}-p{presses}")
        latency_ms = (time.monotonic() - began) * 1000
        presses += 1
        if answer["status"] != "exhausted":
            press = _complete(client, answer, assistant, OUTCOME, latency_ms)
            return CallbackClaim(answer["student_id"], assistant, due, datetime.fromisoformat(answer["assigned_at"]),
                                 presses, press)
        time.sleep(max(0.0, config.poll_seconds - (time.monotonic() - began)))
    return CallbackClaim(student_id, assistant, due, None, presses, None)


def _press(client: AssignmentClient, assistant: str, request_id: str) -> dict[str, Any]:
    """"Get Next" through Celery: the task's answer (``assigned`` or ``exhausted``)."""
    return client.call("callqueue.assign_next_student", call_session_id=CALLBACK_SESSION, assistant_id=assistant,
                       request_id=request_id)


def _complete(client: AssignmentClient, held: dict[str, Any], assistant: str, outcome: str, latency_ms: float,
              **callback: str) -> Press:
    """End the hold of a press's answer with ``outcome`` (and a callback, if given) through Celery."""
    token = int(held["assignment_token"])
    client.call("callqueue.complete_student", call_session_id=CALLBACK_SESSION, student_id=held["student_id"],
                assistant_id=assistant, outcome=outcome, assignment_token=token, **callback)
    return Press(held["student_id"], assistant, token, COMPLETED, time.monotonic(), latency_ms)


def _to_ms(moment: datetime) -> datetime:
    """``moment`` at MongoDB's (and ``callback_at``'s) millisecond precision."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(timezone.utc)).total_seconds()))


# -- both parts: results, targets, the part in ``make bench`` and alone ----------------

@dataclass
class CampaignsResults:
    """Part A's rounds and part B's callbacks, with their checks."""

    config: CampaignsConfig
    rounds: list[RoutingRound] = field(default_factory=list)
    callbacks: list[CallbackClaim] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def routing_ratio(self) -> float:
        """Median of the per-round ratios, tagged over untagged claims/s."""
        return median([result.ratio for result in self.rounds])

    def median_rate(self, kind: str) -> float:
        return median([result.results[kind].claims_per_second for result in self.rounds])

    def median_keys(self, kind: str) -> float:
        return median([result.keys[kind] for result in self.rounds])

    def delays(self) -> list[float]:
        """Due moment to claim of every callback, in seconds (infinite: never claimed)."""
        return [claim.delay_seconds for claim in self.callbacks]

    def early(self) -> int:
        """Callbacks claimed before they were due (must be none)."""
        return sum(1 for delay in self.delays() if delay < 0)

    def longest_delay(self) -> float:
        """The longest delay, infinite when a callback was claimed early or not at all (it fails the target)."""
        delays = self.delays()
        return float("inf") if not delays or self.early() else max(delays)

    def targets(self) -> list[Target]:
        """Tagged at >= 0.8x untagged claims/s; every callback claimable within one promotion interval + 1 s."""
        config = self.config
        interval = config.promote_interval_seconds
        return [
            Target(f"{config.tags} routing tags (presses with {config.min_skills}-{config.max_skills} skills) vs "
                   f"no tags, {config.students:,} students, claims/s (median of per-round ratios)",
                   self.routing_ratio(), 0.8),
            Target(f"callback due -> claimed through Celery, longest of {len(self.callbacks)} "
                   f"(promote_due every {interval:g}s)", self.longest_delay(), interval + 1.0, at_least=False,
                   unit="s"),
        ]

    def observations(self) -> list[tuple[str, float]]:
        """Keys examined per claim and CPU per claim, tagged over untagged (medians of the rounds)."""
        if not self.rounds:
            return []
        cpu = [ratio(cpu_per_claim(result.results[TAGGED]), cpu_per_claim(result.results[UNTAGGED]))
               for result in self.rounds]
        return [("routing tags: keys examined per claim, tagged / untagged",
                 ratio(self.median_keys(TAGGED), self.median_keys(UNTAGGED))),
                ("routing tags: CPU per claim, tagged / untagged (median of per-round ratios)", median(cpu))]

    def integrity(self) -> list[IntegrityReport]:
        return list(self.checks)

    def lines(self) -> list[str]:
        """The headline numbers of both parts."""
        delays = [delay for delay in self.delays() if delay != float("inf")]
        return [
            f"  median claims/s: untagged {self.median_rate(UNTAGGED):.1f}, tagged {self.median_rate(TAGGED):.1f}; "
            f"per-round ratio tagged / untagged: median {self.routing_ratio():.2f} "
            f"({', '.join(f'{result.ratio:.2f}' for result in self.rounds)}); keys examined per claim "
            f"{self.median_keys(UNTAGGED):.1f} vs {self.median_keys(TAGGED):.1f}",
            f"  callback due -> claimed: p50 {percentile(delays, 0.5):.2f}s, max {max(delays, default=0.0):.2f}s "
            f"(min {min(delays, default=0.0):.2f}s); {len(delays)} of {len(self.callbacks)} claimed, "
            f"{self.early()} before due, {sum(claim.presses for claim in self.callbacks)} presses",
        ]

    def to_json(self) -> dict[str, Any]:
        delays = [delay for delay in self.delays() if delay != float("inf")]
        return {"config": self.config.to_json(),
                "routing_rounds": [result.to_json() for result in self.rounds],
                "routing_round_ratios": [round(result.ratio, 3) for result in self.rounds],
                "routing_median_claims_per_second": {kind: round(self.median_rate(kind), 1)
                                                     for kind in (UNTAGGED, TAGGED)} if self.rounds else None,
                "keys_examined_per_claim": {kind: self.median_keys(kind) for kind in (UNTAGGED, TAGGED)}
                if self.rounds else None,
                "callbacks": [claim.to_json() for claim in self.callbacks],
                "callback_delay_seconds": {"p50": round(percentile(delays, 0.5), 3),
                                           "max": round(max(delays, default=0.0), 3),
                                           "claimed": len(delays), "early": self.early()},
                "targets": [goal.to_json() for goal in self.targets()],
                "observations": {name: round(value, 3) for name, value in self.observations()},
                "integrity": [report.to_json() for report in self.integrity()],
                "part_seconds": {name: round(value, 1) for name, value in self.timings.items()}}


def campaigns_part(pool: DeskPool, servers: BenchServers, mongo: MongoClient, config: CampaignsConfig,
                   workers: WorkerOptions, say: Say) -> CampaignsResults:
    """Part A on the bench's desks, then part B through a worker and beat of its own."""
    results = CampaignsResults(config)
    meter = CpuMeter({"mongod": lambda: [servers.mongo.process.pid], "clients": pool.pids})
    began = time.monotonic()
    results.rounds, checks = routing_part(pool, servers.mongo.url, mongo, config, meter, say)
    results.checks.extend(checks)
    results.timings["routing"] = time.monotonic() - began
    began = time.monotonic()
    results.callbacks, check = callback_part(servers, mongo, config, workers, say)
    results.checks.append(check)
    results.timings["callbacks"] = time.monotonic() - began
    for line in results.lines():
        say(line)
    return results


def run_campaigns_benchmark(config: CampaignsConfig, say: Say, mode: str) -> CampaignsResults:
    """Both parts alone, with servers and desks of their own (all stopped by PID, also on errors)."""
    with BenchServers() as servers, MongoClient(servers.mongo.url, tz_aware=True) as mongo, \
            DeskPool(config.clients, mode) as pool:
        say(f"mongod on {servers.mongo.url}, redis-server on port {servers.redis.port} (both started for this run)")
        return campaigns_part(pool, servers, mongo, config, WorkerOptions(), say)


def write_results(results: CampaignsResults, directory: Path | None = None) -> Path:
    """bench/results/campaigns-<time>.json with both parts, their targets and the commit measured."""
    from bench.report import RESULTS_DIR, _git_state  # bench.report imports bench.run, which imports this
    directory = directory or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"campaigns-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {"git": _git_state(), "load_average": list(os.getloadavg()), "cores": os.cpu_count(),
                **results.to_json()}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
