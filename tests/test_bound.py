"""The memory bound under a producer far faster than the workers."""

from __future__ import annotations

import asyncio
import gc
import weakref

import asyncq


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
