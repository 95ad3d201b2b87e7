"""Huge sessions: a 1,000,000-row roster through the command line, then claims from it against small sessions.

1. A CSV roster imported exactly as ``python -m producers import`` does it
   (the command itself, sending chunks to a real worker on the ``batch``
   queue), reported as students/s.
2. Claims from that session against fresh 1,000-student sessions, taking
   turns A-B-B-A; every small turn claims from its own fresh session. The
   huge session cannot be reseeded, so it carries the claims of the turns
   before (reported, with the deleted keys each claim stepped over).
"""

from __future__ import annotations

import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.harness.claims import Claims, claim_jobs, measure, merge
from bench.harness.core import Harness, Part, RunOptions
from bench.harness.cpu import CpuMeter, CpuUse, with_descendants
from bench.harness.data import seed_session, settle
from bench.harness.desks import BenchError
from bench.harness.integrity import HOLDING, IntegrityReport, check, combine
from bench.harness.servers import WorkerOptions
from bench.harness.stats import median, ratio
from bench.harness.targets import Target
from devstack.servers import PROJECT_ROOT, project_env
from workers.app import BATCH_QUEUE
from workers.store import STUDENTS

DATABASE = "bench_huge"
SESSION = "huge-session"
ROSTER_FIELDS = ("student_id", "name", "phone", "email", "cohort")
PROGRESS_SECONDS = 15.0


@dataclass(frozen=True)
class HugeConfig:
    clients: int = 8
    students: int = 1_000_000
    chunk_rows: int = 500
    import_worker_concurrency: int = 1
    import_timeout_seconds: float = 1_800.0
    small: int = 1_000
    turn_claims: int = 800
    rounds: int = 11
    mode: str = "threads"


@dataclass(frozen=True)
class ImportResult:
    """One CSV roster imported by ``python -m producers import`` through a real batch worker."""

    rows: int
    chunk_rows: int
    worker_concurrency: int
    seconds: float
    received: int
    inserted: int
    duplicates: int
    stored: int
    file_bytes: int
    write_seconds: float
    cli_cpu_seconds: float
    cpu: CpuUse | None

    @property
    def students_per_second(self) -> float:
        return ratio(self.inserted, self.seconds)

    @property
    def ok(self) -> bool:
        return self.received == self.rows == self.inserted == self.stored and self.duplicates == 0

    def to_json(self) -> dict[str, Any]:
        return {**{key: value for key, value in asdict(self).items() if key != "cpu"},
                "students_per_second": round(self.students_per_second, 1), "ok": self.ok,
                "cpu_ms_per_1000_students": None if self.cpu is None else
                {name: round(value * 1000, 1) for name, value in self.cpu.per_operation_ms.items()},
                "machine_busy_share": None if self.cpu is None else round(self.cpu.machine_busy_share, 3)}


@dataclass(frozen=True)
class SizeRound:
    """One round: claims from two fresh small sessions and from the huge one, A-B-B-A."""

    small: Claims
    large: Claims
    large_claimed_before: int

    @property
    def ratio(self) -> float:
        return ratio(self.large.claims_per_second, self.small.claims_per_second)

    def to_json(self) -> dict[str, Any]:
        return {"small": self.small.to_json(), "large": self.large.to_json(), "ratio": round(self.ratio, 3),
                "small_skipped_entries_per_claim": round(self.small.per_claim(self.small.skipped_entries), 1),
                "large_skipped_entries_per_claim": round(self.large.per_claim(self.large.skipped_entries), 1),
                "large_claimed_before": self.large_claimed_before}


@dataclass
class HugeResults:
    config: HugeConfig
    imported: ImportResult | None = None
    rounds: list[SizeRound] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)

    def size_ratio(self) -> float:
        return median([result.ratio for result in self.rounds])

    def to_json(self) -> dict[str, Any]:
        return {"import": None if self.imported is None else self.imported.to_json(),
                "size_rounds": [result.to_json() for result in self.rounds],
                "size_round_ratios": [round(result.ratio, 3) for result in self.rounds]}


class HugeSessionsPart(Part):
    name = "huge-sessions"
    description = "a 1,000,000-row import through the command line, claims from it vs fresh 1,000-student sessions"

    def config(self, options: RunOptions) -> HugeConfig:
        config = HugeConfig(mode=options.engine_mode)
        return replace(config, students=100_000, rounds=3) if options.quick else config

    def run(self, config: HugeConfig, harness: Harness) -> HugeResults:
        results = HugeResults(config)
        harness.mongo.drop_database(DATABASE)
        try:
            harness.say(f"  import {config.students:,} students with `python -m producers import` (chunks of "
                        f"{config.chunk_rows}) through a batch worker x{config.import_worker_concurrency}")
            results.imported = import_roster(harness, config)
            harness.say(_import_line(results.imported))
            if not results.imported.ok:
                raise BenchError(f"the import stored {results.imported.stored:,} of {config.students:,} students")
            harness.say(f"  claims from the {config.students:,}-student session vs a fresh {config.small:,}-student "
                        f"session each turn: {config.turn_claims} claims per turn (A-B-B-A), {config.rounds} rounds, "
                        f"{config.clients} desks")
            self._size_rounds(harness, config, results)
            harness.say(f"  median per-round ratio: {results.size_ratio():.2f}")
        finally:
            harness.mongo.drop_database(DATABASE)
        return results

    def _size_rounds(self, harness: Harness, config: HugeConfig, results: HugeResults) -> None:
        database, url = harness.mongo[DATABASE], harness.servers.mongo.url
        small_checks: list[IntegrityReport] = []
        large_answers: list[Any] = []
        with harness.desks(config.clients, config.mode) as pool:
            meter = harness.servers.cpu_meter(None, pool.pids)
            for number in range(config.rounds):
                names = [f"small-{number}-{turn}" for turn in range(2)]
                for small in names:
                    seed_session(database, small, config.small)
                settle(database)
                smalls = iter(names)
                order = ["small", SESSION] if number % 2 == 0 else [SESSION, "small"]
                halves: dict[str, list[Claims]] = {name: [] for name in order}
                for turn, name in enumerate(order + order[::-1]):
                    session, label = next(smalls) if name == "small" else SESSION, f"huge-r{number}-t{turn}"
                    seats = [(session, f"{label}-c{index}", ()) for index in range(config.clients)]
                    halves[name].append(measure(pool, claim_jobs(url, DATABASE, seats, config.clients, label,
                                                                 config.turn_claims), label, database, meter))
                result = SizeRound(merge("small", halves["small"]), merge(SESSION, halves[SESSION]),
                                   len(large_answers))
                results.rounds.append(result)
                large_answers += result.large.answers
                small_checks.append(check("", database, result.small.answers, HOLDING))
                harness.say(_round_line(number, result, config))
        results.checks = [combine(f"{config.small:,}-student sessions ({len(small_checks)} rounds)", small_checks),
                          check(f"{config.students:,}-student session", database, large_answers, HOLDING)]

    def targets(self, results: HugeResults) -> list[Target]:
        config = results.config
        return [Target(f"{config.students:,}-student session vs fresh {config.small:,}-student session, claims/s "
                       f"(median of per-round ratios)", results.size_ratio(), 0.9, samples=len(results.rounds))]

    def observations(self, results: HugeResults) -> list[tuple[str, float]]:
        sizes = [ratio(result.large.cpu_per_claim(), result.small.cpu_per_claim()) for result in results.rounds]
        return [(f"CPU per claim, {results.config.students:,} / {results.config.small:,} students (median of "
                 f"per-round ratios)", median(sizes))]


def import_roster(harness: Harness, config: HugeConfig) -> ImportResult:
    """Write a ``config.students``-row CSV, import it with the command line and a batch worker, delete it."""
    servers = harness.servers
    with tempfile.TemporaryDirectory(prefix="callqueue-bench-roster-") as folder:
        path = Path(folder) / "students.csv"
        began = time.monotonic()
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(ROSTER_FIELDS)
            writer.writerows((f"s{n:07d}", f"Student {n:07d}", f"+1555{n:07d}", f"student{n:07d}@example.edu",
                              f"cohort-{n % 40:02d}") for n in range(config.students))
        written = time.monotonic() - began
        harness.say(f"  roster {path.name}: {config.students:,} rows, {path.stat().st_size / 1e6:.0f} MB, written in "
                    f"{written:.1f}s (not timed)")
        options = WorkerOptions(concurrency=config.import_worker_concurrency)
        with servers.worker(options, BATCH_QUEUE, {"MONGO_DB": DATABASE}) as worker:
            meter = CpuMeter({"batch worker": lambda: with_descendants([worker.process.pid]),
                              "mongod": lambda: [servers.mongo.pid], "redis": lambda: [servers.redis.process.pid]})
            answer, seconds, cli_cpu, cpu = _run_import(harness, path, config, meter)
        size = path.stat().st_size
    stored = harness.mongo[DATABASE][STUDENTS].count_documents({"call_session_id": SESSION})
    return ImportResult(config.students, config.chunk_rows, config.import_worker_concurrency, round(seconds, 2),
                        int(answer["received"]), int(answer["inserted"]), int(answer["duplicates"]), stored, size,
                        round(written, 2), round(cli_cpu, 2), cpu)


def _run_import(harness: Harness, path: Path, config: HugeConfig,
                meter: CpuMeter) -> tuple[dict[str, Any], float, float, CpuUse]:
    """``python -m producers import`` as a child in its own session, killed by PID if left running."""
    argv = [sys.executable, "-m", "producers", "import", str(path), "--session", SESSION, "--name",
            f"{config.students:,} students", "--chunk-size", str(config.chunk_rows)]
    output, errors = path.with_suffix(".out"), path.with_suffix(".err")
    children_before = _children_cpu_seconds()
    meter.start()
    began = time.monotonic()
    with output.open("wb") as out, errors.open("wb") as err:
        process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=project_env(harness.servers.env_with({"MONGO_DB": DATABASE})),
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        try:
            while process.poll() is None:
                if time.monotonic() - began > config.import_timeout_seconds:
                    raise BenchError(f"import command still running after {config.import_timeout_seconds:.0f}s")
                try:
                    process.wait(timeout=PROGRESS_SECONDS)
                except subprocess.TimeoutExpired:
                    stored = harness.mongo[DATABASE][STUDENTS].estimated_document_count()
                    harness.say(f"    {time.monotonic() - began:5.0f}s: {stored:,} students stored")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    seconds = time.monotonic() - began
    cpu = meter.stop(config.students)
    if process.returncode != 0:
        raise BenchError(f"import command exited {process.returncode}: {errors.read_text()[-2000:]}")
    return json.loads(output.read_text()), seconds, _children_cpu_seconds() - children_before, cpu


def _children_cpu_seconds() -> float:
    """User + system CPU of this process's finished children (the import command, once it is reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _import_line(result: ImportResult) -> str:
    """The import's rate, its completeness and CPU per 1,000 students by process."""
    cpu = "" if result.cpu is None else ", ".join(
        f"{name} {value * 1000:.0f}" for name, value in result.cpu.per_operation_ms.items())
    return (f"  imported {result.inserted:,} of {result.rows:,} rows in {result.seconds:.1f}s: "
            f"{result.students_per_second:,.0f} students/s; {result.stored:,} stored, {result.duplicates} duplicates "
            f"[{'OK' if result.ok else 'FAIL'}]; CPU ms per 1,000 students: {cpu}, import command "
            f"{result.cli_cpu_seconds / max(result.rows, 1) * 1e6:.0f}")


def _round_line(number: int, result: SizeRound, config: HugeConfig) -> str:
    """One round's rates, CPU and skipped keys per claim of both sizes, and its ratio."""
    small, large = result.small, result.large
    return (f"  round {number}: {config.small:,} {small.claims_per_second:6.1f} claims/s ({small.cpu_per_claim():.2f} "
            f"ms CPU), {config.students:,} {large.claims_per_second:6.1f} claims/s ({large.cpu_per_claim():.2f} ms "
            f"CPU, after {result.large_claimed_before:,} earlier claims); skipped keys/claim "
            f"{small.per_claim(small.skipped_entries):.0f} vs {large.per_claim(large.skipped_entries):.0f}; "
            f"ratio {result.ratio:.2f}")


PART = HugeSessionsPart()
