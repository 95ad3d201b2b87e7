"""The dashboard's shared poll: one read per refresh however many streams watch, nothing read for nobody."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Hashable

from callqueue.producers.dashboard.live import Hub, ListKey, SessionKey


class CountingReader:
    """Stands in for ``live.Reader``: records every read and how long it takes."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.reads: list[list[Hashable]] = []
        self.seconds = seconds

    def read(self, keys: list[Hashable]) -> dict[Hashable, Any]:
        self.reads.append(list(keys))
        time.sleep(self.seconds)
        return {key: f"figures of {key} #{len(self.reads)}" for key in keys}


async def watch_for(hub: Hub, key: Hashable, updates: int, seen: list[Any]) -> None:
    async with hub.watching(key) as watch:
        version = -1
        while len(seen) < updates:
            version, value = await watch.next(version, 5)
            seen.append(value)


def test_twenty_streams_of_one_page_share_each_read() -> None:
    reader = CountingReader()

    async def run() -> list[list[Any]]:
        hub = Hub(reader, poll_seconds=0.05)
        await hub.start()
        seen: list[list[Any]] = [[] for _ in range(20)]
        try:
            await asyncio.gather(*(watch_for(hub, SessionKey("s1"), 5, values) for values in seen))
        finally:
            await hub.stop()
        return seen

    seen = asyncio.run(run())
    assert all(len(values) == 5 for values in seen)
    assert all(keys == [SessionKey("s1")] for keys in reader.reads)  # one key per read, never one per stream
    assert len(reader.reads) <= 7, len(reader.reads)


def test_nothing_is_read_while_nobody_watches_and_a_page_request_reads_once_per_interval() -> None:
    reader = CountingReader()

    async def run() -> None:
        hub = Hub(reader, poll_seconds=0.5)
        await hub.start()
        try:
            await asyncio.sleep(0.3)
            assert reader.reads == []
            key = ListKey("open", "", 1)
            first, second = await asyncio.gather(hub.get(key), hub.get(key))
            assert first == second and len(reader.reads) == 1
        finally:
            await hub.stop()

    asyncio.run(run())


def test_a_slow_read_lengthens_the_pause_so_the_poll_stays_a_quarter_busy() -> None:
    reader = CountingReader(seconds=0.2)

    async def run() -> float:
        hub = Hub(reader, poll_seconds=0.01)
        await hub.start()
        try:
            async with hub.watching(SessionKey("s1")):
                started = time.monotonic()
                await asyncio.sleep(2.5)
                return time.monotonic() - started
        finally:
            await hub.stop()

    elapsed = asyncio.run(run())
    busy = len(reader.reads) * reader.seconds
    assert busy / elapsed <= 0.35, (len(reader.reads), elapsed)
