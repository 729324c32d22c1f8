"""Rate limits: token buckets for the pool, per group and per key, on timers."""

from __future__ import annotations

import asyncio

import pytest

import asyncq
from tests.conftest import assert_conserved

# uvloop's clock ticks in milliseconds: a reading may be a tick stale and a timer fire a
# tick early; plus the float error of subtracting two millisecond readings (0.048 can
# come out as 0.0479999...).
TICK = 0.002 + 1e-9


async def test_pool_rate_limit_spaces_starts_after_the_burst() -> None:
    """RateLimit(starts, per, burst): a burst starts at once, then one start per token;
    no worker is held while throttled (all four workers stay free)."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def record() -> None:
        starts.append(loop.time())

    limit = asyncq.RateLimit(starts=1, per=0.02, burst=3)
    async with asyncq.Pool(workers=4, rate_limit=limit) as pool:
        jobs = [await pool.submit(record) for _ in range(6)]
        await asyncio.sleep(0)
        assert pool.stats().running == 0
        await asyncio.gather(*jobs)
    offsets = [t - starts[0] for t in starts]
    assert offsets[2] < offsets[3]  # the burst came first
    # after the burst, the k-th start waits for the k-th refilled token (a stalled loop
    # can only make starts later, never earlier)
    for k, offset in enumerate(offsets[3:], start=1):
        assert offset >= k * 0.02 - TICK


async def test_group_rate_limit_throttles_only_its_group() -> None:
    """A group out of tokens waits on a timer while other groups and plain jobs flow."""
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []

    async def record(name: str) -> None:
        log.append((name, loop.time()))

    limits = {"cloud": asyncq.RateLimit(starts=1, per=0.05, burst=1)}
    async with asyncq.Pool(workers=2, group_rate_limits=limits) as pool:
        cloud = [await pool.options(group="cloud").submit(record, "cloud") for _ in range(3)]
        await asyncio.sleep(0.005)
        assert pool.stats().throttled == 2
        others = [await pool.submit(record, "plain") for _ in range(5)]
        await asyncio.gather(*others)
        assert all(not job.done() for job in cloud[1:])
        await asyncio.gather(*cloud)
    cloud_times = [t for name, t in log if name == "cloud"]
    assert cloud_times[1] - cloud_times[0] >= 0.05 - TICK
    assert cloud_times[2] - cloud_times[0] >= 2 * 0.05 - TICK


async def test_key_rate_limit_applies_to_each_key() -> None:
    """key_rate_limit gives every key its own bucket; keys do not slow each other."""
    loop = asyncio.get_running_loop()
    log: dict[str, list[float]] = {}

    async def record(key: str) -> None:
        log.setdefault(key, []).append(loop.time())

    limit = asyncq.RateLimit(starts=1, per=0.03, burst=1)
    async with asyncq.Pool(workers=4, key_rate_limit=limit) as pool:
        jobs = []
        for _ in range(3):
            for key in ("a", "b"):
                jobs.append(await pool.options(key=key).submit(record, key))
        await asyncio.gather(*jobs)
    for times in log.values():
        assert times[1] - times[0] >= 0.03 - TICK
        assert times[2] - times[0] >= 2 * 0.03 - TICK
    assert abs(log["a"][0] - log["b"][0]) < 0.03  # different keys start together


async def test_throttled_jobs_cancel_and_close_cleanly() -> None:
    """Jobs held back by a rate limit resolve when cancelled or when the pool closes."""
    async def noop() -> None:
        pass

    pool = asyncq.Pool(workers=1, rate_limit=asyncq.RateLimit(starts=1, per=60))
    await pool.start()
    first = await pool.submit(noop)
    rest = [await pool.submit(noop) for _ in range(3)]
    await first
    assert rest[0].cancel()
    await pool.close(drain=False)
    assert all(job.state is asyncq.JobState.CANCELLED for job in rest)
    assert_conserved(pool.stats())


def test_rate_limit_validation() -> None:
    """RateLimit and the Pool arguments reject bad values, naming them."""
    with pytest.raises(ValueError, match="starts"):
        asyncq.RateLimit(starts=0)
    with pytest.raises(ValueError, match="per"):
        asyncq.RateLimit(starts=1, per=0)
    with pytest.raises(ValueError, match="burst"):
        asyncq.RateLimit(starts=1, burst=0)
    with pytest.raises(TypeError, match="rate_limit"):
        asyncq.Pool(rate_limit=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="group_rate_limits"):
        asyncq.Pool(group_rate_limits={"a": 5})  # type: ignore[dict-item]
