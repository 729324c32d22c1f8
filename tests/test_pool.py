"""Pool lifecycle, admission, map and stats."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import asyncq
from tests.conftest import Gate, assert_conserved, settle, until


async def echo(value: object) -> object:
    return value


def test_pool_is_built_outside_a_loop() -> None:
    """A pool can be constructed with no running loop; it is NEW until started."""
    pool = asyncq.Pool(workers=2, maxsize=None)
    assert pool.state is asyncq.PoolState.NEW
    assert pool.workers == 2
    assert pool.maxsize is None
    assert "NEW" in repr(pool)
    assert pool.stats().submitted == 0


async def test_close_is_idempotent_and_concurrent_closes_wait(gate: Gate) -> None:
    """close() may be called many times; every call returns once the pool is closed."""
    pool = asyncq.Pool(workers=1)
    await pool.start()
    job = await pool.submit(gate.wait, 1)
    first = asyncio.create_task(pool.close())
    second = asyncio.create_task(pool.close())
    await settle()
    assert not first.done()
    assert not second.done()
    gate.open()
    await asyncio.gather(first, second)
    await pool.close()
    assert await job == 1
    with pytest.raises(asyncq.PoolClosed):
        await pool.start()


async def test_closing_a_pool_never_started() -> None:
    """close() on a new pool just marks it closed."""
    pool = asyncq.Pool()
    await pool.close()
    assert pool.state is asyncq.PoolState.CLOSED
    with pytest.raises(asyncq.PoolNotStarted):
        await pool.submit(echo, 1)


async def test_leaving_block_by_exception_cancels_the_rest(gate: Gate) -> None:
    """async with drains on a normal exit and cancels what is left when the body raises."""
    pool = asyncq.Pool(workers=1)
    with pytest.raises(RuntimeError, match="body failed"):
        async with pool:
            job = await pool.submit(gate.wait)
            queued = await pool.submit(echo, 1)
            await gate.entered.wait()
            raise RuntimeError("body failed")
    assert job.state is asyncq.JobState.CANCELLED
    assert queued.state is asyncq.JobState.CANCELLED


async def test_close_without_drain_cancels_everything(gate: Gate) -> None:
    """close(drain=False) cancels running, waiting and delayed jobs; all handles resolve."""
    pool = asyncq.Pool(workers=2, maxsize=10)
    await pool.start()
    jobs = [await pool.submit(gate.wait) for _ in range(4)]
    jobs.append(await pool.options(delay=60).submit(echo, 1))
    await until(lambda: gate.inside == 2)
    await pool.close(drain=False)
    assert all(j.state is asyncq.JobState.CANCELLED for j in jobs)
    stats = pool.stats()
    assert stats.cancelled == 5
    assert_conserved(stats)


async def test_blocked_producers_are_admitted_in_fifo_order(gate: Gate) -> None:
    """Producers waiting for room are admitted in arrival order; a cancelled waiter hands
    its reserved slot to the next one."""
    async with asyncq.Pool(workers=1, maxsize=1) as pool:
        await pool.submit(gate.wait)
        await gate.entered.wait()
        await pool.submit(echo, "filler")  # the pool is now full
        order: list[int] = []

        async def produce(i: int) -> None:
            job = await pool.submit(echo, i)
            order.append(i)
            await job

        producers = [asyncio.create_task(produce(i)) for i in range(5)]
        await settle()
        producers[1].cancel()
        gate.open()
        await asyncio.gather(*producers, return_exceptions=True)
        assert order == [0, 2, 3, 4]


async def test_map_returns_ordered_results_and_streams_under_backpressure() -> None:
    """map() keeps input order and never holds more than maxsize + workers of its jobs,
    even for an endless iterable."""
    peak = 0

    async def square(i: int, *, offset: int = 0) -> int:
        nonlocal peak
        peak = max(peak, pool.stats().in_flight)
        await asyncio.sleep(0)
        return i * i + offset

    async with asyncq.Pool(workers=3, maxsize=5) as pool:
        results = await pool.map(square, range(300), offset=1)
        assert results == [i * i + 1 for i in range(300)]
        assert peak <= 5 + 3

        consumed = 0

        def endless() -> itertools.count[int]:
            return itertools.count()

        source = endless()

        async def limited() -> object:
            nonlocal consumed
            for item in source:
                consumed += 1
                if consumed > 50:
                    return
                yield item

        assert await pool.map(square, limited()) == [i * i for i in range(50)]


async def test_map_raises_first_error_and_cancels_its_other_jobs(gate: Gate) -> None:
    """A dying job makes map() raise its error; map's other jobs are cancelled."""
    async def maybe(i: int) -> int:
        if i == 0:
            raise ValueError("item 0")
        await gate.wait()
        return i

    async with asyncq.Pool(workers=2, maxsize=10) as pool:
        with pytest.raises(ValueError, match="item 0"):
            await pool.map(maybe, range(5))
        await until(lambda: pool.stats().in_flight == 0)
        assert pool.stats().cancelled == 4


async def test_map_rejects_non_iterable() -> None:
    """map() names its argument when it is given something that does not iterate."""
    async with asyncq.Pool() as pool:
        with pytest.raises(TypeError, match="iterable"):
            await pool.map(echo, 5)  # type: ignore[arg-type]


async def test_stats_snapshot_and_latency_percentiles(gate: Gate) -> None:
    """stats() is an immutable snapshot with counters, gauges and latency percentiles."""
    async with asyncq.Pool(workers=2, maxsize=100) as pool:
        await pool.map(echo, range(200))
        blocker = await pool.submit(gate.wait)
        await gate.entered.wait()
        stats = pool.stats()
        assert stats.running == 1
        assert stats.submitted == 201
        assert stats.succeeded == 200
        with pytest.raises(AttributeError):
            stats.submitted = 0  # type: ignore[misc]
        assert stats.queue_wait.samples > 0
        assert stats.run_time.samples > 0
        assert 0 <= stats.queue_wait.p50 <= stats.queue_wait.p95 <= stats.queue_wait.p99
        gate.open()
        await blocker
        assert_conserved(pool.stats())


def test_sample_mask_adapts_to_the_gap_between_samples() -> None:
    """Samples closer than 1 ms: time half as many jobs (up to one in 1024); farther than
    10 ms: twice as many (down to every job); in between: unchanged."""
    from asyncq._stats import SAMPLE_MASK_MAX, next_sample_mask

    assert next_sample_mask(0, 0.0) == 1
    assert next_sample_mask(15, 0.0005) == 31
    assert next_sample_mask(SAMPLE_MASK_MAX, 0.0) == SAMPLE_MASK_MAX == 1023
    assert next_sample_mask(15, 0.005) == 15
    assert next_sample_mask(15, 0.02) == 7
    assert next_sample_mask(0, float("inf")) == 0


async def test_sparse_jobs_are_all_timed() -> None:
    """When jobs come slowly (here: 20 ms of clock between any two readings), every job's
    queue wait and run time is recorded."""
    async with asyncq.Pool(workers=1) as pool:
        core = pool._core
        assert core is not None
        ticks = iter(range(1, 10_000))
        core.clock = lambda: next(ticks) * 0.02
        for i in range(40):
            await (await pool.submit(echo, i))
        stats = pool.stats()
    assert stats.queue_wait.samples == stats.run_time.samples == 40


async def test_fast_jobs_are_timed_one_in_up_to_1024() -> None:
    """When jobs come fast (here: a clock that stands still), the sampling interval doubles
    at each sample up to 1024: of 5000 jobs, those numbered 1, 2, 4, ..., 1024, 2048, 3072
    and 4096 are timed."""
    async with asyncq.Pool(workers=4, maxsize=None) as pool:
        core = pool._core
        assert core is not None
        core.clock = lambda: 100.0
        await pool.map(echo, range(5000))
        stats = pool.stats()
    assert stats.queue_wait.samples == stats.run_time.samples == 14


async def test_after_a_burst_timing_resumes_once_jobs_slow_down() -> None:
    """After a burst the next timed job may be a thousand admissions away; a timer armed
    while jobs are timed sparsely resets sampling once no job was timed for 10 ms."""
    now = [100.0]
    async with asyncq.Pool(workers=4, maxsize=None) as pool:
        core = pool._core
        assert core is not None
        core.clock = lambda: now[0]
        await pool.map(echo, range(5000))  # a burst: the clock stands still
        assert core.sample_mask == 1023
        assert core.sample_check is not None  # the timer is armed
        core.check_sampling()  # no time has passed: nothing changes
        assert core.sample_mask == 1023
        before = pool.stats().run_time.samples
        now[0] += 0.02  # 20 ms without a timed job
        core.check_sampling()
        assert core.sample_mask == 0
        ticks = itertools.count()
        core.clock = lambda: now[0] + 0.02 * next(ticks)  # from now on jobs come slowly
        await pool.map(echo, range(3))
        assert pool.stats().run_time.samples == before + 3  # each of them timed
    assert core.sample_check is None  # closing cancels the timer


async def test_unbounded_pool_admits_everything() -> None:
    """maxsize=None is an explicitly unbounded pool: submit_nowait never raises."""
    async with asyncq.Pool(workers=1, maxsize=None) as pool:
        jobs = [pool.submit_nowait(echo, i) for i in range(5000)]
        assert pool.stats().waiting == 5000
        assert [await j for j in jobs] == list(range(5000))


async def test_partial_and_async_callable_objects_are_accepted() -> None:
    """functools.partial of an async function and objects with async __call__ are jobs."""
    import functools

    class Adder:
        async def __call__(self, a: int, b: int) -> int:
            return a + b

    async with asyncq.Pool() as pool:
        assert await (await pool.submit(functools.partial(echo, 4))) == 4
        assert await (await pool.submit(Adder(), 1, 2)) == 3


async def test_workers_cancelled_from_outside_resolve_every_job(gate: Gate) -> None:
    """If the worker tasks are cancelled from outside (a loop shutting down with the pool
    still open), the pool stops admitting and every handle resolves as cancelled."""
    pool = asyncq.Pool(workers=2, maxsize=10)
    await pool.start()
    jobs = [await pool.submit(gate.wait) for _ in range(5)]
    jobs.append(await pool.options(delay=60).submit(echo, 1))
    await until(lambda: gate.inside == 2)
    for task in pool._tasks:
        task.cancel()
    await asyncio.gather(*pool._tasks, return_exceptions=True)
    assert all(j.state is asyncq.JobState.CANCELLED for j in jobs)
    assert_conserved(pool.stats())
    with pytest.raises(asyncq.PoolClosed):
        await pool.submit(echo, 2)
    await pool.close()
