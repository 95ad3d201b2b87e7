"""Huge sessions: a 1,000,000-row roster imported, then claims from it against fresh 1,000-student sessions.

The import is ``python -m producers import`` itself, sending chunks to a real
worker on the ``batch`` queue. The claims take turns A-B-B-A, every small
turn on a fresh session of its own; the huge session cannot be reseeded, so
it carries the claims of the turns before (reported, with the deleted keys
each claim stepped over).
"""

from __future__ import annotations

import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.claims import Claims, Rounds, abba, claim_jobs, seed_session, settle
from bench.harness.core import Harness, Part, WorkerOptions
from bench.harness.cpu import CpuMeter, CpuUse
from bench.harness.desks import BenchError
from bench.harness.integrity import HOLDING, IntegrityReport, check, combine
from bench.harness.targets import Target, ratio
from devstack.servers import PROJECT_ROOT, project_env
from callqueue.workers.app import BATCH_QUEUE
from callqueue.workers.store import STUDENTS

DATABASE = "bench_huge"
SESSION = "huge-session"
SMALL, HUGE = "small", "huge"
ROSTER_FIELDS = ("student_id", "name", "phone", "email", "cohort")


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


@dataclass(frozen=True)
class ImportResult:
    rows: int
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

    def line(self) -> str:
        costs = self.cpu.per_operation_ms if self.cpu else {}
        cpu = ", ".join(f"{name} {ms * 1000:.0f}" for name, ms in costs.items())
        return (f"  imported {self.inserted:,} of {self.rows:,} rows in {self.seconds:.1f}s: "
                f"{self.students_per_second:,.0f} students/s; {self.stored:,} stored, {self.duplicates} duplicates "
                f"[{'OK' if self.ok else 'FAIL'}]; CPU ms per 1,000 students: {cpu}, import command "
                f"{self.cli_cpu_seconds / max(self.rows, 1) * 1e6:.0f}")


@dataclass
class HugeResults(Rounds):
    config: HugeConfig = field(default_factory=HugeConfig)
    imported: ImportResult | None = None
    checks: list[IntegrityReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"import": None if self.imported is None else self.imported.to_json(), "size_rounds": super().to_json(),
                "size_round_ratios": [round(value, 3) for value in self.ratios(HUGE, SMALL)]}


class HugeSessionsPart(Part):
    name = "huge-sessions"
    description = "a 1,000,000-row import through the command line, claims from it vs fresh 1,000-student sessions"
    sizes, quick = HugeConfig, {"students": 100_000, "rounds": 3}

    def run(self, config: HugeConfig, harness: Harness) -> HugeResults:
        results = HugeResults(config=config)
        harness.mongo.drop_database(DATABASE)
        try:
            harness.say(f"  import {config.students:,} students with `python -m producers import` (chunks of "
                        f"{config.chunk_rows}) through a batch worker x{config.import_worker_concurrency}")
            results.imported = import_roster(harness, config)
            harness.say(results.imported.line())
            if not results.imported.ok:
                raise BenchError(f"the import stored {results.imported.stored:,} of {config.students:,} students")
            harness.say(f"  claims from the {config.students:,}-student session vs a fresh {config.small:,}-student "
                        f"session each turn: {config.turn_claims} claims per turn (A-B-B-A), {config.rounds} rounds, "
                        f"{config.clients} desks")
            self._rounds(harness, config, results)
        finally:
            harness.mongo.drop_database(DATABASE)
        harness.say(f"  median per-round ratio: {results.ratio(HUGE, SMALL):.2f}")
        return results

    def _rounds(self, harness: Harness, config: HugeConfig, results: HugeResults) -> None:
        database, small_checks = harness.mongo[DATABASE], []
        with harness.desks(config.clients) as pool:
            meter = harness.servers.cpu_meter(None, pool.pids)
            for number in range(config.rounds):
                smalls = [f"small-{number}-{turn}" for turn in range(2)]
                for small in smalls:
                    seed_session(database, small, config.small)
                settle(database)
                fresh_smalls = iter(smalls)

                def jobs(kind: str, label: str) -> list[Any]:
                    session = next(fresh_smalls) if kind == SMALL else SESSION
                    return claim_jobs(harness.servers.mongo.url, DATABASE, [(session, f"{label}-c{index}", ())
                                      for index in range(config.clients)], config.clients, label, config.turn_claims)

                before = sum(turns[HUGE].claims for turns in results.rounds)
                results.rounds.append(abba(pool, database, meter, (SMALL, HUGE), number, jobs))
                small_checks.append(check("", database, results.rounds[-1][SMALL].answers, HOLDING))
                harness.say(_round_line(number, results.rounds[-1], before, config))
        huge_answers = [answer for turns in results.rounds for answer in turns[HUGE].answers]
        results.checks = [combine(f"{config.small:,}-student sessions ({len(small_checks)} rounds)", small_checks),
                          check(f"{config.students:,}-student session", database, huge_answers, HOLDING)]

    def targets(self, results: HugeResults) -> list[Target]:
        config = results.config
        return [Target(f"{config.students:,}-student session vs fresh {config.small:,}-student session, claims/s "
                       f"(median of per-round ratios)", results.ratio(HUGE, SMALL), 0.9, samples=len(results.rounds))]

    def observations(self, results: HugeResults) -> list[tuple[str, float]]:
        return [(f"CPU per claim, {results.config.students:,} / {results.config.small:,} students (median of "
                 f"per-round ratios)", results.cpu_ratio(HUGE, SMALL))]


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
            meter = CpuMeter({"batch worker": lambda: [worker.process.pid, *worker.child_pids()],
                              "mongod": lambda: [servers.mongo.pid], "redis": lambda: [servers.redis.process.pid]})
            answer, seconds, cli_cpu, cpu = _run_import(harness, path, config, meter)
        size = path.stat().st_size
    stored = harness.mongo[DATABASE][STUDENTS].count_documents({"call_session_id": SESSION})
    return ImportResult(config.students, round(seconds, 2),
                        int(answer["received"]), int(answer["inserted"]), int(answer["duplicates"]), stored, size,
                        round(written, 2), round(cli_cpu, 2), cpu)


def _run_import(harness: Harness, path: Path, config: HugeConfig,
                meter: CpuMeter) -> tuple[dict[str, Any], float, float, CpuUse]:
    """``python -m producers import`` as a child in its own session, killed by PID if left running."""
    argv = [sys.executable, "-m", "producers", "import", str(path), "--session", SESSION, "--name",
            f"{config.students:,} students", "--chunk-size", str(config.chunk_rows)]
    output, errors = path.with_suffix(".out"), path.with_suffix(".err")
    children_before = _children_cpu()
    meter.start()
    began = time.monotonic()
    env = project_env(harness.servers.env_with({"MONGO_DB": DATABASE}))
    with output.open("wb") as out, errors.open("wb") as err, subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True) as process:
        try:
            process.wait(timeout=config.import_timeout_seconds)
        finally:
            if process.poll() is None:  # timed out, or Ctrl-C
                process.kill()
    seconds = time.monotonic() - began
    cpu = meter.stop(config.students)
    if process.returncode != 0:
        raise BenchError(f"import command exited {process.returncode}: {errors.read_text()[-2000:]}")
    return json.loads(output.read_text()), seconds, _children_cpu() - children_before, cpu


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the import command, once it is reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _round_line(number: int, turns: dict[str, Claims], before: int, config: HugeConfig) -> str:
    small, huge = turns[SMALL], turns[HUGE]
    return (f"  round {number}: {config.small:,} {small.claims_per_second:6.1f} claims/s ({small.cpu_per_claim():.2f} "
            f"ms CPU), {config.students:,} {huge.claims_per_second:6.1f} claims/s ({huge.cpu_per_claim():.2f} ms "
            f"CPU, after {before:,} earlier claims); skipped keys/claim {small.per_claim(small.skipped_entries):.0f} "
            f"vs {huge.per_claim(huge.skipped_entries):.0f}; ratio "
            f"{ratio(huge.claims_per_second, small.claims_per_second):.2f}")


PART = HugeSessionsPart()
