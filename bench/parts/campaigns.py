"""Campaigns: what routing tags cost a claim, and how soon a due callback can be claimed.

Routing: claims/s (``assign_next`` with the assistant's 2-5 skills, then the
completion) from students spread over five tags and untagged, against the
same students untagged pressed without skills; fresh every round, with the
keys a claim examines (``explain``).

Callbacks: through a real worker and ``celery beat`` (``promote_due`` every
``promote_interval_seconds``), each assistant completes its student with a
callback for itself, due at staggered moments across beat's schedule, then
presses "Get Next" until its own student comes back; the session holds
nobody else, and any other answer fails the part.
"""

from __future__ import annotations

import contextlib
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bench.harness.callers import ASSIGN_TASK
from bench.harness.claims import Rounds, Seat, abba, claim_jobs, explain_claim, fresh, seed_session, settle
from bench.harness.core import Harness, Part
from bench.harness.desks import BenchError
from bench.harness.integrity import ENDED, Answer, IntegrityReport, check, combine
from bench.harness.targets import Target, median, percentile, ratio
from devstack.processes import wait_until
from devstack.servers import CeleryBeat
from callqueue.producers.client import AssignmentClient
from callqueue.workers.store import ensure_indexes

ROUTING_DB = "bench_routing"
UNTAGGED, TAGGED = "untagged", "tagged"
PROMOTE_ENV = "CALLQUEUE_PROMOTE_INTERVAL_SECONDS"
PROMOTE_TASK = "callqueue.promote_due"
BEAT_START_SECONDS = 60.0
CALLBACK_SESSION = "bench-callbacks"


@dataclass(frozen=True)
class CampaignsConfig:
    """Callbacks: the first due ``lead_seconds`` on, spread over ``spread_intervals`` promotion intervals,
    pressed every ``poll_seconds`` from ``early_seconds`` before due until ``give_up_seconds`` after."""

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
        """Untagged ("") and the routing tags: the tagged session's students take them in turn."""
        return ("", *(f"tag-{index + 1}" for index in range(self.tags)))


@dataclass(frozen=True)
class CallbackClaim:
    """One callback: when it was due, when its assistant claimed it (None: not within the wait), and presses."""

    student_id: str
    assistant_id: str
    due: datetime
    claimed_at: datetime | None
    presses: int

    @property
    def delay_seconds(self) -> float:
        """Due moment to claim (infinite when never claimed; negative would be a claim before it was due)."""
        return float("inf") if self.claimed_at is None else (self.claimed_at - self.due).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "delay_seconds": round(self.delay_seconds, 3)}


@dataclass
class CampaignsResults(Rounds):
    config: CampaignsConfig = field(default_factory=CampaignsConfig)
    keys: list[dict[str, float]] = field(default_factory=list)  # per round: keys a claim examines, by kind
    callbacks: list[CallbackClaim] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)

    def median_keys(self, kind: str) -> float:
        return median([keys[kind] for keys in self.keys])

    def delays(self) -> list[float]:
        return [claim.delay_seconds for claim in self.callbacks]

    def early(self) -> int:
        return sum(1 for delay in self.delays() if delay < 0)

    def to_json(self) -> dict[str, Any]:
        delays = [delay for delay in self.delays() if delay != float("inf")]
        return {"routing_rounds": super().to_json(), "keys_examined_per_claim_by_round": self.keys,
                "routing_round_ratios": [round(value, 3) for value in self.ratios(TAGGED, UNTAGGED)],
                "routing_median_claims_per_second": {kind: round(self.rate(kind), 1) for kind in (UNTAGGED, TAGGED)},
                "keys_examined_per_claim": {kind: self.median_keys(kind) for kind in (UNTAGGED, TAGGED)},
                "callbacks": [claim.to_json() for claim in self.callbacks],
                "callback_delay_seconds": {"p50": round(percentile(delays, 0.5), 3),
                                           "max": round(max(delays, default=float("nan")), 3),
                                           "claimed": len(delays), "early": self.early()}}


class CampaignsPart(Part):
    name = "campaigns"
    description = "claims/s with 5 routing tags vs none; a personal callback's due moment to its claim"
    sizes, quick = CampaignsConfig, {"rounds": 2}

    def run(self, config: CampaignsConfig, harness: Harness) -> CampaignsResults:
        results = CampaignsResults(config=config)
        _routing(harness, config, results)
        _callbacks(harness, config, results)
        delays = [delay for delay in results.delays() if delay != float("inf")]
        harness.say(f"  median claims/s: untagged {results.rate(UNTAGGED):.1f}, tagged {results.rate(TAGGED):.1f}; "
                    f"per-round ratio tagged / untagged: median {results.ratio(TAGGED, UNTAGGED):.2f}; keys examined "
                    f"per claim {results.median_keys(UNTAGGED):.1f} vs {results.median_keys(TAGGED):.1f}\n  callback "
                    f"due -> claimed: p50 {percentile(delays, 0.5):.2f}s, "
                    f"max {max(delays, default=float('nan')):.2f}s; {len(delays)} of {len(results.callbacks)} claimed, "
                    f"{results.early()} before due, {sum(claim.presses for claim in results.callbacks)} presses")
        return results

    def targets(self, results: CampaignsResults) -> list[Target]:
        """Tagged at >= 0.8x untagged claims/s; every callback claimable within one promotion interval + 1 s."""
        config, delays = results.config, results.delays()
        unclaimed = sum(1 for delay in delays if delay == float("inf"))
        problem = "; ".join(([f"{results.early()} claimed before they were due"] if results.early() else [])
                            + ([f"{unclaimed} never claimed"] if unclaimed else [])) or None
        return [Target(f"{config.tags} routing tags (presses with {config.min_skills}-{config.max_skills} skills) vs "
                       f"no tags, {config.students:,} students, claims/s (median of per-round ratios)",
                       results.ratio(TAGGED, UNTAGGED), 0.8, samples=len(results.rounds)),
                Target(f"callback due -> claimed through Celery, longest of {len(results.callbacks)} (promote_due "
                       f"every {config.promote_interval_seconds:g}s)", max(delays, default=float("nan")),
                       config.promote_interval_seconds + 1.0, at_least=False, unit="s", samples=len(delays),
                       problem=problem)]

    def observations(self, results: CampaignsResults) -> list[tuple[str, float]]:
        return [("routing tags: keys examined per claim, tagged / untagged",
                 ratio(results.median_keys(TAGGED), results.median_keys(UNTAGGED))),
                ("routing tags: CPU per claim, tagged / untagged (median of per-round ratios)",
                 results.cpu_ratio(TAGGED, UNTAGGED))]


# -- routing tags -------------------------------------------------------------------

def _routing(harness: Harness, config: CampaignsConfig, results: CampaignsResults) -> None:
    """Claims/s of the tagged session against the untagged one, A-B-B-A each round on fresh sessions."""
    harness.say(f"  routing: {config.students:,} students untagged vs spread over {config.tags} tags + untagged; "
                f"{config.clients} desks x {config.assistants_per_desk} assistants (tagged: {config.min_skills}-"
                f"{config.max_skills} skills each); {config.turn_claims} claims per turn, {config.rounds} rounds")
    database, checks = harness.mongo[ROUTING_DB], {UNTAGGED: [], TAGGED: []}
    with harness.desks(config.clients) as pool:
        meter = harness.servers.cpu_meter(None, pool.pids)
        for number in range(config.rounds):
            sessions = {UNTAGGED: f"untagged-{number}", TAGGED: f"tagged-{number}"}
            harness.mongo.drop_database(ROUTING_DB)
            seed_session(database, sessions[UNTAGGED], config.students)
            seed_session(database, sessions[TAGGED], config.students, config.routes)
            ensure_indexes(database)
            settle(database)
            rng = random.Random(number)
            seats = {kind: _seats(config, kind, session_id, rng) for kind, session_id in sessions.items()}
            results.rounds.append(abba(pool, database, meter, (UNTAGGED, TAGGED), number, lambda kind, label:
                                       claim_jobs(harness.servers.mongo.url, ROUTING_DB, seats[kind], config.clients,
                                                  label, config.turn_claims, ends=True)))
            for kind, result in results.rounds[-1].items():
                checks[kind].append(check(kind, database, result.answers, ENDED))
            results.keys.append({kind: sum(explain_claim(database, sessions[kind], skills)["keys_examined"]
                                           for _session, _assistant, skills in seats[kind]) / len(seats[kind])
                                 for kind in sessions})
            harness.say(f"  round {number}: " + "; ".join(
                f"{kind} {run.claims_per_second:6.1f} claims/s ({run.cpu_per_claim():.2f} ms CPU, "
                f"{results.keys[-1][kind]:.1f} keys examined, {run.per_claim(run.skipped_entries):.0f} skipped)"
                for kind, run in sorted(results.rounds[-1].items(), reverse=True))
                + f"; ratio {results.ratios(TAGGED, UNTAGGED)[-1]:.2f}")
    harness.mongo.drop_database(ROUTING_DB)
    results.checks += [combine(f"routing, {kind} ({len(reports)} rounds)", reports) for kind, reports in checks.items()]


def _seats(config: CampaignsConfig, kind: str, session_id: str, rng: random.Random) -> list[Seat]:
    """Desk ``d`` (seats ``d, d + clients, ...``) has assistants ``d-a0...``; tagged ones hold 2-5 tags each,
    always tag ``number % tags`` among them so that no tag is left to nobody."""
    tags, per_desk = config.routes[1:], config.assistants_per_desk
    by_desk = [[(session_id, f"{kind}-d{desk}-a{index}", () if kind == UNTAGGED else
                 _skills(rng, tags, config, desk * per_desk + index)) for index in range(per_desk)]
               for desk in range(config.clients)]
    return [by_desk[desk][index] for index in range(per_desk) for desk in range(config.clients)]


def _skills(rng: random.Random, tags: tuple[str, ...], config: CampaignsConfig, number: int) -> tuple[str, ...]:
    own = tags[number % len(tags)]
    count = rng.randint(config.min_skills, config.max_skills)
    return tuple(sorted({own, *rng.sample([tag for tag in tags if tag != own], count - 1)}))


# -- callbacks ------------------------------------------------------------------------

def _callbacks(harness: Harness, config: CampaignsConfig, results: CampaignsResults) -> None:
    """Schedule the callbacks through Celery, let beat promote them, and time each one's first claim."""
    servers, interval = harness.servers, config.promote_interval_seconds
    harness.say(f"  callbacks: {config.callbacks} personal callbacks due {config.lead_seconds:g}s on, spread over "
                f"{config.spread_intervals:g} promotion intervals; worker + beat (promote_due every {interval:g}s); "
                f"presses every {config.poll_seconds * 1000:.0f} ms from {config.early_seconds:g}s before due")
    extra = {PROMOTE_ENV: f"{interval:g}"}
    database = harness.mongo[servers.settings.mongo_db]
    fresh(database, {CALLBACK_SESSION: config.callbacks})
    with contextlib.ExitStack() as stack:
        stack.enter_context(servers.worker(harness.options.workers, extra_env=extra))
        beat = CeleryBeat(servers.workdir, servers.env_with(extra))
        stack.callback(beat.stop)
        offset = beat.process.log_path.stat().st_size if beat.process.log_path.exists() else 0
        beat.start()
        wait_until(lambda: PROMOTE_TASK.encode() in beat.process.log_path.read_bytes()[offset:], BEAT_START_SECONDS,
                   f"beat's first {PROMOTE_TASK} (log: {beat.process.log_path})", beat.process.alive)
        clients = [stack.enter_context(AssignmentClient(servers.settings, timeout_seconds=30.0, retries=0))
                   for _ in range(config.callbacks)]
        answers, scheduled = _schedule(clients, config)
        polled = _poll_all(clients, scheduled, config)
    results.callbacks = [claim for claim, _answer in polled]
    answers += [answer for _claim, answer in polled if answer is not None]
    results.checks.append(check(f"callbacks ({config.callbacks}, claimed twice each)", database, answers, ENDED))


def _schedule(clients: list[AssignmentClient], config: CampaignsConfig) -> tuple[list[Answer], list[tuple[Any, ...]]]:
    """Each assistant claims a student, then completes it with a callback for themselves; (student, assistant, due)."""
    assistants = [f"callback-a{index}" for index in range(len(clients))]
    held = [_press(client, assistant, f"{assistant}-first") for client, assistant in zip(clients, assistants)]
    if any(answer["status"] != "assigned" for answer in held):
        raise BenchError(f"a callback assistant was handed nobody: {[answer['status'] for answer in held]}")
    start = datetime.now(timezone.utc) + timedelta(seconds=config.lead_seconds)
    spacing = config.spread_intervals * config.promote_interval_seconds / config.callbacks
    answers, scheduled = [], []
    for index, (client, assistant, answer) in enumerate(zip(clients, assistants, held)):
        due = start + timedelta(seconds=index * spacing)
        due = due.replace(microsecond=due.microsecond // 1000 * 1000)  # MongoDB's millisecond precision
        answers.append(_complete(client, answer, assistant, "call_back", callback_at=due.isoformat(
            timespec="milliseconds"), callback_assistant=assistant))
        if datetime.now(timezone.utc) >= due:
            raise BenchError(f"scheduling the callbacks took longer than lead_seconds ({config.lead_seconds:g}s)")
        scheduled.append((answer["student_id"], assistant, due))
    return answers, scheduled


def _poll_all(clients: list[AssignmentClient], scheduled: list[tuple[Any, ...]],
              config: CampaignsConfig) -> list[tuple[CallbackClaim, Answer | None]]:
    """One thread per callback, pressing around its due moment; their claims in schedule order."""
    with ThreadPoolExecutor(len(scheduled)) as threads:
        polls = [threads.submit(_poll, client, *due, config) for client, due in zip(clients, scheduled)]
    errors = [f"callback poller {index}: {type(poll.exception()).__name__}: {poll.exception()}"
              for index, poll in enumerate(polls) if poll.exception()]
    if errors:
        raise BenchError("; ".join(errors))
    return [poll.result() for poll in polls]


def _poll(client: AssignmentClient, student_id: str, assistant: str, due: datetime,
          config: CampaignsConfig) -> tuple[CallbackClaim, Answer | None]:
    """Press from ``early_seconds`` before ``due`` until the assistant's own callback comes back; complete it."""
    time.sleep(max(0.0, (due - timedelta(seconds=config.early_seconds) - datetime.now(timezone.utc)).total_seconds()))
    presses = 0
    while datetime.now(timezone.utc) < due + timedelta(seconds=config.give_up_seconds):
        began = time.monotonic()
        answer = _press(client, assistant, f"{assistant}-p{presses}")
        presses += 1
        if answer["status"] != "exhausted":
            if (answer["status"], answer.get("student_id"), answer.get("assigned_to")) != ("assigned", student_id,
                                                                                          assistant):
                raise BenchError(f"{assistant} waited for its callback {student_id} and was answered {answer}")
            claimed_at = datetime.fromisoformat(answer["assigned_at"])
            return (CallbackClaim(student_id, assistant, due, claimed_at, presses),
                    _complete(client, answer, assistant, "reached"))
        time.sleep(max(0.0, config.poll_seconds - (time.monotonic() - began)))
    return CallbackClaim(student_id, assistant, due, None, presses), None


def _press(client: AssignmentClient, assistant: str, request_id: str) -> dict[str, Any]:
    return client.call(ASSIGN_TASK, call_session_id=CALLBACK_SESSION, assistant_id=assistant, request_id=request_id)


def _complete(client: AssignmentClient, held: dict[str, Any], assistant: str, outcome: str, **callback: str) -> Answer:
    """End the hold of a press's answer with ``outcome`` (and a callback, if given) through Celery."""
    token = int(held["assignment_token"])
    done = client.call("callqueue.complete_student", call_session_id=CALLBACK_SESSION, student_id=held["student_id"],
                       assistant_id=assistant, outcome=outcome, assignment_token=token, **callback)
    ended = "completed" if done.get("status") == "completed" else f"refused:{done.get('status')}"
    return Answer(CALLBACK_SESSION, held["student_id"], assistant, token, ended)


PART = CampaignsPart()
