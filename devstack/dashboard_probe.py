"""How fast the dashboard answers on a big database, and what its live streams cost MongoDB.

``python -m devstack.dashboard_probe`` starts a mongod of its own (or reuses
the data of an earlier run with ``--workdir``/``--port``), fills it with
``devstack.probe_data`` (a session of 1,000,000 students, with a day of calls
and 200 holds, among 200 open sessions) and starts the dashboard with a login.
It then measures, over HTTP as a browser asks:

* every page, cold (the first read of its figures) and warm (read again by
  the next request), ``--repeats`` times each: the sessions list (first
  page, the page holding the huge session, a search), the closed list, the
  huge session's page and a small one's;
* the live streams: MongoDB operations per second (``serverStatus``
  opcounters) while 1 and then 20 browsers watch the huge session's page and
  the sessions list, to show the shared poll costs the same whatever the count.

It prints a table, exits 1 if a page took 1 s or more, and stops what it started by PID.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import click
import requests
from pymongo import MongoClient

from devstack.probe_data import HUGE_SESSION, ProbeData, seed, seeded
from devstack.servers import Dashboard, MongoServer
from callqueue.workers.store import ensure_indexes

PAGE_LIMIT_SECONDS = 1.0
PASSWORD = "probe-only-password"


def log_in(base: str) -> requests.Session:
    http = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"', http.get(f"{base}/login", timeout=30).text).group(1)
    http.post(f"{base}/login", data={"csrf": token, "username": "probe", "password": PASSWORD}, timeout=30)
    return http


def timed(http: requests.Session, url: str) -> float:
    started = time.perf_counter()
    answer = http.get(url, timeout=60)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, (url, answer.status_code)
    return elapsed


def operations(mongo: MongoClient) -> int:
    counters = mongo.admin.command("serverStatus")["opcounters"]
    return sum(counters[name] for name in ("query", "getmore", "command"))


def ops_per_second(mongo: MongoClient, base: str, http: requests.Session, browsers: int, seconds: float,
                   paths: tuple[str, ...]) -> float:
    """MongoDB operations per second while ``browsers`` live streams per path are open."""
    stop = threading.Event()

    def watch(path: str) -> None:
        with http.get(f"{base}{path}", stream=True, timeout=(10, 60)) as stream:
            for _ in stream.iter_lines():
                if stop.is_set():
                    return

    threads = [threading.Thread(target=watch, args=(path,), daemon=True) for path in paths for _ in range(browsers)]
    for thread in threads:
        thread.start()
    time.sleep(3)  # every stream connected and the poll running
    before, started = operations(mongo), time.monotonic()
    time.sleep(seconds)
    rate = (operations(mongo) - before) / (time.monotonic() - started)
    stop.set()
    return rate


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep mongod's data here (with --port, a later run reuses it).")
@click.option("--port", type=int, default=None, help="mongod's port (default: a free one).")
@click.option("--repeats", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--students", type=click.IntRange(1000), default=1_000_000, show_default=True)
@click.option("--watch-seconds", type=click.FloatRange(2), default=10.0, show_default=True)
def main(workdir: Path | None, port: int | None, repeats: int, students: int, watch_seconds: float) -> None:
    """Page times on a 1,000,000-student session among 200 open ones, and the cost of live streams."""
    data = ProbeData(huge_students=students)
    with ExitStack() as stack:
        directory = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dashboard-probe-")))
        directory.mkdir(parents=True, exist_ok=True)
        server = MongoServer(directory, port=port)
        stack.callback(server.stop)
        server.start()
        mongo = stack.enter_context(MongoClient(server.url, tz_aware=True))
        database = mongo["callqueue_probe"]
        if not seeded(database, data):
            mongo.drop_database(database.name)
            ensure_indexes(database)
            started = time.monotonic()
            seed(database, data, say=lambda line: click.echo(f"{time.monotonic() - started:5.0f} s  {line}"))
        ensure_indexes(database)
        env = {"MONGO_URL": server.url, "MONGO_DB": database.name, "PATH": "/usr/bin:/bin",
               "CALLQUEUE_DASHBOARD_VIEWER_AUTH": f"probe:{PASSWORD}"}
        dashboard = Dashboard(directory, env)
        stack.callback(dashboard.stop)
        dashboard.start()
        base = dashboard.url
        http = log_in(base)
        huge_page = 1 + (data.open_sessions - 1) // 25  # the huge session was created first: the last page
        pages: dict[str, str] = {
            "sessions list, page 1 (25 sessions)": "/",
            "sessions list, page with the huge session": f"/?page={huge_page}",
            "sessions list, search 'huge'": "/?q=huge",
            "closed sessions list": "/?status=closed",
            "huge session's page": f"/session?id={HUGE_SESSION}",
            "small session's page": "/session?id=probe-001",
        }
        results = measure_pages(http, base, pages, repeats)
        streams = (f"/live/session?id={HUGE_SESSION}", f"/live/sessions?page={huge_page}")
        one = ops_per_second(mongo, base, http, 1, watch_seconds, streams)
        twenty = ops_per_second(mongo, base, http, 20, watch_seconds, streams)
    click.echo(f"\npages ({repeats} times each; cold = first read of its figures, warm = the next request):")
    worst = 0.0
    for label, (cold, warm) in results.items():
        worst = max(worst, max(cold), max(warm))
        click.echo(f"  {label:45s} cold median {statistics.median(cold) * 1000:6.0f} ms, max {max(cold) * 1000:6.0f} ms"
                   f" | warm median {statistics.median(warm) * 1000:5.0f} ms, max {max(warm) * 1000:5.0f} ms")
    click.echo(f"live streams of the huge session's page and its list page: {one:.1f} MongoDB operations/s with "
               f"1 browser each, {twenty:.1f} with 20 each")
    click.echo(f"slowest page: {worst * 1000:.0f} ms (limit {PAGE_LIMIT_SECONDS * 1000:.0f} ms)")
    sys.exit(0 if worst < PAGE_LIMIT_SECONDS else 1)


def measure_pages(http: requests.Session, base: str, pages: dict[str, str],
                  repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """Cold then warm time of each page, ``repeats`` rounds; a round waits out the hub's cache first."""
    results: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in pages}
    pause: Callable[[], None] = lambda: time.sleep(2.5)  # past CALLQUEUE_DASHBOARD_POLL_SECONDS: read afresh
    for _ in range(repeats):
        pause()
        for label, path in pages.items():
            results[label][0].append(timed(http, f"{base}{path}"))
            results[label][1].append(timed(http, f"{base}{path}"))
    return results


if __name__ == "__main__":
    main()
