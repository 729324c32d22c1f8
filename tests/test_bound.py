"""The memory bound under a producer far faster than the workers."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

import asyncq
from asyncq._core import Core
from tests.conftest import settle, until


async def test_live_jobs_stay_within_maxsize_plus_workers() -> None:
    """A producer submitting as fast as it can, dropping every handle, against slow
    workers whose jobs also fail and retry: the live Job objects (counted by weak
    reference, so nothing is kept alive by the test) never exceed maxsize + workers."""
    maxsize, workers = 20, 4
    live: weakref.WeakSet[asyncq.Job[int]] = weakref.WeakSet()
    peak = 0
    failed_once: set[int] = set()

    async def slow(i: int) -> int:
        nonlocal peak
        peak = max(peak, len(live))
        await asyncio.sleep(0.0005)
        if i % 3 == 0 and i not in failed_once:
            failed_once.add(i)
            raise ConnectionError("retry me")
        return i

    gc.disable()  # only reference counting frees jobs: the count is exact
    try:
        async with asyncq.Pool(workers=workers, maxsize=maxsize,
                               retry=asyncq.Retry(attempts=2, delay=0.001)) as pool:
            for i in range(2000):
                live.add(await pool.submit(slow, i))
                peak = max(peak, len(live))
                stats = pool.stats()
                assert stats.waiting + stats.delayed + stats.running <= maxsize + workers
    finally:
        gc.enable()
    assert peak <= maxsize + workers
    assert pool.stats().succeeded == 2000
    assert len(live) == 0


async def echo(i: int) -> int:
    return i


async def test_workers_that_empty_the_queue_yield_to_a_producer_given_room(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight workers drain a queue of four faster than one producer refills it. A worker
    that finds the queue empty while a freed slot is reserved for the producer yields to
    it instead of parking (a park costs a future and a wake-up): each worker parks only
    once, before the first job, where parking on every empty queue made it 204 parks."""
    parks = 0
    park = Core.park

    async def counting_park(core: Core, worker: Any) -> bool:
        nonlocal parks
        parks += 1
        return await park(core, worker)

    monkeypatch.setattr(Core, "park", counting_park)
    async with asyncq.Pool(workers=8, maxsize=4) as pool:
        jobs = [await pool.submit(echo, i) for i in range(200)]
        assert [await job for job in jobs] == list(range(200))
    assert parks <= 8


async def test_a_reserved_slot_no_producer_uses_does_not_keep_a_worker_spinning() -> None:
    """The yield above happens once per admission: with a slot reserved but no producer
    ever admitting a job, an idle worker that is woken parks again after one yield."""
    async with asyncq.Pool(workers=1) as pool:
        core = pool._core
        assert core is not None
        await until(lambda: len(core.idle) == 1)
        core.taken += 1
        core.reserved += 1  # as room_freed() does for a producer
        core.wake_worker()
        assert not core.idle
        await settle()
        assert len(core.idle) == 1  # parked again: not spinning on sleep(0)
        core.taken -= 1
        core.reserved -= 1
        assert await (await pool.submit(echo, 7)) == 7
