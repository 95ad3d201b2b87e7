"""The benchmark run: servers up, the three parts on identical data, checks, servers down."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from pymongo import MongoClient

from bench import integrity
from bench.campaigns import CampaignsConfig, CampaignsResults, campaigns_part
from bench.celery_load import ASSIGN_TASK, CallResult, combine, measure_calls
from bench.cpu import CpuMeter
from bench.data import fresh_ours, fresh_seed_style, seed_session, settle
from bench.engine import OURS, SEED_STYLE, ClaimResult, measure_claims, merge_claims
from bench.integrity import Answer, IntegrityReport
from bench.openloop import OpenLoopConfig, OpenLoopResults, open_loop_part
from bench.pool import PROCESSES, THREADS, BenchError, DeskPool
from bench.servers import BenchServers, WorkerOptions
from bench.sessions import (
    HugeSessionsResults, ManySessionsResults, SessionsConfig, huge_sessions_part, many_sessions_part,
)
from bench.stats import median, percentile, ratio
from bench.tasks import CLAIM_ONLY_TASK, NOOP_TASK
from workers.store import ensure_indexes

ENGINE_DB = "bench_engine"
SEED_STYLE_DB = "bench_seed_style"
SIZE_DB = "bench_session_size"
CELERY_TASKS = (NOOP_TASK, CLAIM_ONLY_TASK, ASSIGN_TASK)
Say = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and durations of one run (``quick`` shrinks them for a smoke run)."""

    engine_students: int = 20_000
    engine_clients: tuple[int, ...] = (1, 8, 32)
    engine_seconds: float = 3.0
    engine_repeats: int = 3
    seed_style_seconds: float = 8.0
    size_small: int = 1_000
    size_large: int = 100_000
    size_clients: int = 8
    size_round_claims: int = 500
    size_rounds: int = 9
    size_followup_rounds: int = 4
    celery_callers: int = 64
    celery_caller_processes: int = 4
    celery_students: int = 20_000
    celery_seconds: float = 4.0
    celery_pairs: int = 4
    celery_warmup_seconds: float = 2.0
    engine_mode: str = THREADS
    workers: WorkerOptions = field(default_factory=WorkerOptions)
    open_loop: OpenLoopConfig = field(default_factory=OpenLoopConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)

    @classmethod
    def quick(cls, **overrides: Any) -> "BenchConfig":
        """About a minute: one repeat, short windows, fewer rounds."""
        values: dict[str, Any] = dict(engine_seconds=1.5, engine_repeats=1, seed_style_seconds=3.0,
                                      size_rounds=3, size_followup_rounds=1, celery_seconds=3.0, celery_pairs=1,
                                      celery_warmup_seconds=1.0, open_loop=OpenLoopConfig.quick(),
                                      sessions=SessionsConfig.quick(), campaigns=CampaignsConfig.quick())
        values.update(overrides)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchResults:
    """Everything measured in one run, in the order it was measured."""

    engine: dict[str, dict[int, list[ClaimResult]]] = field(default_factory=dict)
    session_size: dict[int, list[ClaimResult]] = field(default_factory=dict)
    session_followup: list[ClaimResult] = field(default_factory=list)
    celery: dict[str, list[CallResult]] = field(default_factory=dict)
    integrity: list[IntegrityReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    open_loop: OpenLoopResults | None = None
    many_sessions: ManySessionsResults | None = None
    huge_sessions: HugeSessionsResults | None = None
    campaigns: CampaignsResults | None = None


def run_benchmark(config: BenchConfig, say: Say = print) -> BenchResults:
    """Start the servers, run every part, and stop everything again (also on errors and Ctrl-C)."""
    results = BenchResults()
    with BenchServers() as servers, MongoClient(servers.mongo.url, tz_aware=True) as mongo:
        say(f"mongod on {servers.mongo.url}, redis-server on port {servers.redis.port} "
            f"(both started for this run)")
        with DeskPool(max(max(config.engine_clients), config.size_clients), config.engine_mode) as pool:
            meter = CpuMeter({"mongod": lambda: [servers.mongo.process.pid], "clients": pool.pids})
            _timed(results, "engine", lambda: engine_part(pool, meter, servers.mongo.url, mongo, config,
                                                          results, say))
            _timed(results, "session_size", lambda: size_part(pool, meter, servers.mongo.url, mongo, config,
                                                              results, say))
        with DeskPool(config.celery_caller_processes, PROCESSES) as pool:
            _timed(results, "celery", lambda: celery_part(pool, servers, mongo, config, results, say))
        _timed(results, "open_loop", lambda: open_loop(servers, mongo, config, results, say))
        with DeskPool(config.sessions.clients, config.engine_mode) as pool:
            _timed(results, "many_sessions", lambda: many_sessions(pool, servers, mongo, config, results, say))
            _timed(results, "huge_sessions", lambda: huge_sessions(pool, servers, mongo, config, results, say))
            _timed(results, "campaigns", lambda: campaigns(pool, servers, mongo, config, results, say))
    return results


def _timed(results: BenchResults, name: str, part: Callable[[], None]) -> None:
    """Run one part and record how long it took."""
    began = time.monotonic()
    part()
    results.timings[name] = round(time.monotonic() - began, 1)


def _ms(latencies_ms: list[float], fraction: float) -> str:
    return f"{percentile(latencies_ms, fraction):.2f}"


# -- part 1: the claim engine against the seed-style query --------------------

def engine_part(pool: DeskPool, meter: CpuMeter, mongo_url: str, mongo: MongoClient, config: BenchConfig,
                results: BenchResults, say: Say) -> None:
    """Claims/s for each client count: ours repeated and interleaved, then the seed-style query once."""
    say(f"\n[1/7] claim engine without Celery: {config.engine_students:,} students, "
        f"clients {list(config.engine_clients)} as {config.engine_mode}, {config.engine_repeats} repeat(s)")
    runs = [(OURS, clients, f"ours-r{repeat}-c{clients}") for repeat in range(config.engine_repeats)
            for clients in config.engine_clients]
    runs += [(SEED_STYLE, clients, f"seed-c{clients}") for clients in config.engine_clients]
    for kind, clients, label in runs:
        result = _engine_run(pool, meter, mongo_url, mongo, kind, clients, config, label, results)
        results.engine.setdefault(kind, {}).setdefault(clients, []).append(result)
        say(f"  {kind:<10} {clients:>3} clients: {result.claims_per_second:9.1f} claims/s  "
            f"(p50 {_ms(result.latencies_ms, 0.5)} ms, p99 {_ms(result.latencies_ms, 0.99)} ms; "
            f"{result.cpu.line('claim') if result.cpu else ''})")


def _engine_run(pool: DeskPool, meter: CpuMeter, mongo_url: str, mongo: MongoClient, kind: str,
                clients: int, config: BenchConfig, label: str, results: BenchResults) -> ClaimResult:
    """Fresh identical data, one measurement, one integrity check."""
    session_id = "engine-session"
    database = mongo[ENGINE_DB if kind == OURS else SEED_STYLE_DB]
    (fresh_ours if kind == OURS else fresh_seed_style)(database, session_id, config.engine_students)
    seconds = config.engine_seconds if kind == OURS else config.seed_style_seconds
    result = measure_claims(pool, mongo_url, database.name, session_id, kind, clients,
                            duration_seconds=seconds, label=label, meter=meter)
    results.integrity.append(integrity.check(f"engine {kind}, {clients} clients ({label})", database,
                                             [session_id], result.answers))
    return result


# -- part 2: cost against session size ----------------------------------------

def size_part(pool: DeskPool, meter: CpuMeter, mongo_url: str, mongo: MongoClient, config: BenchConfig,
              results: BenchResults, say: Say) -> None:
    """Claims/s from a 1,000- and a 100,000-student session, both fresh in one collection each round.

    Both sessions start every round with no earlier claims: claimed students
    leave deleted keys at the head of the claim index that later claims step
    over until WiredTiger rewrites the page, so a session with more recent
    claims is slower whatever its size (docs/performance.md). Fresh sessions
    keep that equal, leaving size as the only difference. Within a round the
    sessions take turns A-B-B-A (half the claims each time), which cancels a
    steady drift in the machine's other load; the target uses the median of
    the per-round ratios.
    """
    say(f"\n[2/7] session size: {config.size_small:,} vs {config.size_large:,} pending students, "
        f"{config.size_clients} clients, {config.size_round_claims} claims per session per round (A-B-B-A), "
        f"{config.size_rounds} rounds, both sessions fresh each round")
    database = mongo[SIZE_DB]
    checks: dict[int, list[IntegrityReport]] = {}
    for round_number in range(config.size_rounds):
        sessions = {config.size_small: f"small-{round_number}", config.size_large: f"large-{round_number}"}
        _fresh_sizes(mongo, sessions)
        first, second = sorted(sessions) if round_number % 2 == 0 else sorted(sessions, reverse=True)
        halves: dict[int, list[ClaimResult]] = {first: [], second: []}
        for size in (first, second, second, first):
            halves[size].append(measure_claims(pool, mongo_url, SIZE_DB, sessions[size], OURS, config.size_clients,
                                               total_claims=config.size_round_claims // 2,
                                               label=f"size{size}-r{round_number}-{len(halves[size])}",
                                               meter=meter))
        for size, parts in halves.items():
            merged = merge_claims(parts)
            results.session_size.setdefault(size, []).append(merged)
            checks.setdefault(size, []).append(integrity.check("", database, [sessions[size]], merged.answers))
    _followup(pool, meter, mongo_url, mongo, config, f"large-{config.size_rounds - 1}", results, checks)
    _size_lines(config, results, checks, say)


def _fresh_sizes(mongo: MongoClient, sessions: dict[int, str]) -> None:
    """An empty database with one fresh session per size, indexed and flushed."""
    mongo.drop_database(SIZE_DB)
    for size, session_id in sessions.items():
        seed_session(mongo[SIZE_DB], session_id, size)
    ensure_indexes(mongo[SIZE_DB])
    settle(mongo[SIZE_DB])


def _size_lines(config: BenchConfig, results: BenchResults, checks: dict[int, list[IntegrityReport]],
                say: Say) -> None:
    """Record the size part's integrity checks and print its rates and ratios."""
    for size, runs in sorted(results.session_size.items()):
        results.integrity.append(integrity.combine(f"session size {size:,} ({len(runs)} rounds)", checks[size]))
        rates = [result.claims_per_second for result in runs]
        say(f"  {size:>7,} students: median {median(rates):9.1f} claims/s  "
            f"(rounds: {', '.join(f'{rate:.0f}' for rate in rates)})")
    pairs = size_ratios(results, config)
    say(f"  per-round ratio {config.size_large:,} / {config.size_small:,}: median {median(pairs):.2f} "
        f"({', '.join(f'{value:.2f}' for value in pairs)})")
    if results.session_followup:
        rates = [result.claims_per_second for result in results.session_followup]
        say(f"  {config.size_large:,} students, last session continued (no target): "
            f"{', '.join(f'{rate:.0f}' for rate in rates)} claims/s")


def size_ratios(results: BenchResults, config: BenchConfig) -> list[float]:
    """Large-session claims/s over small-session claims/s, round by round."""
    return [ratio(large.claims_per_second, small.claims_per_second) for small, large in
            zip(results.session_size[config.size_small], results.session_size[config.size_large])]


def _followup(pool: DeskPool, meter: CpuMeter, mongo_url: str, mongo: MongoClient, config: BenchConfig,
              session_id: str, results: BenchResults, checks: dict[int, list[IntegrityReport]]) -> None:
    """More rounds on the last large session without reseeding (for reference, no target).

    Shows the cost of earlier claims in the same session: the deleted keys
    they left at the head of the claim index are stepped over by every claim
    until WiredTiger rewrites the page. The session's integrity check is
    redone over all of its claims.
    """
    answers = list(results.session_size[config.size_large][-1].answers)
    for round_number in range(config.size_followup_rounds):
        result = measure_claims(pool, mongo_url, SIZE_DB, session_id, OURS, config.size_clients,
                                total_claims=config.size_round_claims, label=f"followup-r{round_number}",
                                meter=meter)
        results.session_followup.append(result)
        answers.extend(result.answers)
    checks[config.size_large][-1] = integrity.check("", mongo[SIZE_DB], [session_id], answers)


# -- part 3: through Celery ---------------------------------------------------

def celery_part(pool: DeskPool, servers: BenchServers, mongo: MongoClient, config: BenchConfig,
                results: BenchResults, say: Say) -> None:
    """No-op, claim-only probe and assign_next_student on the same workers, windows interleaved."""
    options = config.workers
    say(f"\n[3/7] through Celery: {config.celery_callers} callers over {config.celery_caller_processes} "
        f"processes; worker pool {options.pool} x{options.concurrency}, prefetch multiplier "
        f"{options.prefetch_multiplier or 'from settings'}; {config.celery_pairs} x {config.celery_seconds:g}s "
        f"windows per task")
    database = mongo[servers.settings().mongo_db]
    sessions = {ASSIGN_TASK: "celery-assign", CLAIM_ONLY_TASK: "celery-claim-only", NOOP_TASK: "celery-noop"}
    fresh_ours(database, sessions[ASSIGN_TASK], config.celery_students)
    seed_session(database, sessions[CLAIM_ONLY_TASK], config.celery_students)
    settle(database)
    answers: dict[str, list[Answer]] = {task: [] for task in CELERY_TASKS}
    with servers.workers(options) as worker:
        meter = servers.cpu_meter(worker, pool.pids)
        windows = [(task, config.celery_warmup_seconds, f"warm-{task}", None) for task in CELERY_TASKS]
        windows += [(task, config.celery_seconds, f"{task}-w{pair}", meter) for pair in range(config.celery_pairs)
                    for task in (CELERY_TASKS if pair % 2 == 0 else CELERY_TASKS[::-1])]
        for task, seconds, label, window_meter in windows:
            result = measure_calls(pool, servers.environ(), task, sessions[task], config.celery_callers,
                                   config.celery_caller_processes, seconds, label, window_meter)
            answers[task].extend(result.answers)
            failed = {status: count for status, count in result.statuses.items() if status.startswith("error:")}
            if failed:
                raise BenchError(f"{task} failed in window {label}: {failed}; see the worker log")
            if window_meter is not None:
                results.celery.setdefault(task, []).append(result)
                _say_call(result, say)
    for task in (CLAIM_ONLY_TASK, ASSIGN_TASK):
        results.integrity.append(integrity.check(f"celery {task}", database, [sessions[task]], answers[task]))


def _say_call(result: CallResult, say: Say) -> None:
    """One window's throughput, percentiles, answers and CPU cost."""
    say(f"  {result.task:<30} {result.per_second:7.1f} calls/s  p50 {_ms(result.latencies_ms, 0.5)} ms  "
        f"p95 {_ms(result.latencies_ms, 0.95)} ms  p99 {_ms(result.latencies_ms, 0.99)} ms  "
        f"{result.statuses}\n      {result.cpu[0].line() if result.cpu else ''}")



# -- part 4: open-loop latency ------------------------------------------------

def open_loop(servers: BenchServers, mongo: MongoClient, config: BenchConfig, results: BenchResults,
              say: Say) -> None:
    """Press latency at fixed fractions of the no-op pair's capacity measured in part 3."""
    capacity = combine(results.celery[NOOP_TASK]).per_second / 2
    say(f"\n[4/7] open loop: presses at fractions of the no-op pair's capacity ({capacity:.1f} presses/s, "
        f"from part 3)")
    results.open_loop = open_loop_part(servers, config.workers, mongo, config.open_loop, capacity, say)
    results.integrity.extend(results.open_loop.integrity())


# -- parts 5 and 6: many sessions, huge sessions -------------------------------

def many_sessions(pool: DeskPool, servers: BenchServers, mongo: MongoClient, config: BenchConfig,
                  results: BenchResults, say: Say) -> None:
    """200 sessions of 5 assistants against one session of 1,000."""
    say("\n[5/7] many sessions at once")
    results.many_sessions = many_sessions_part(pool, servers.mongo.url, mongo, config.sessions, say)
    results.integrity.extend(results.many_sessions.integrity())


def huge_sessions(pool: DeskPool, servers: BenchServers, mongo: MongoClient, config: BenchConfig,
                  results: BenchResults, say: Say) -> None:
    """A 1,000,000-student import, claims from it, and a 100,000-student drain."""
    say("\n[6/7] huge sessions")
    results.huge_sessions = huge_sessions_part(servers, pool, mongo, config.sessions, say)
    results.integrity.extend(results.huge_sessions.integrity())


# -- part 7: campaigns (routing tags, callbacks) ----------------------------------

def campaigns(pool: DeskPool, servers: BenchServers, mongo: MongoClient, config: BenchConfig,
              results: BenchResults, say: Say) -> None:
    """Claims/s with routing tags against none, and a callback's due moment to its claim through Celery."""
    say("\n[7/7] campaigns: routing tags and callbacks")
    results.campaigns = campaigns_part(pool, servers, mongo, config.campaigns, config.workers, say)
    results.integrity.extend(results.campaigns.integrity())
