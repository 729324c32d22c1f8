"""One test per guarantee in DESIGN.md ("Guarantees"), named after it."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

import asyncq
from tests.conftest import Gate, assert_conserved, settle, until


async def echo(value: int) -> int:
    return value


async def test_guarantee_1_conservation_under_faults() -> None:
    """Every admitted job ends exactly once as succeeded, dead or cancelled, and the
    identity submitted == succeeded + dead + cancelled + waiting + delayed + running holds
    at every step, through failures, retries, timeouts, cancellations and a cancelling
    close."""
    rng = random.Random(7)
    hang = asyncio.Event()
    ends: dict[int, int] = {}

    async def job(kind: str) -> str:
        if kind == "fail":
            raise ConnectionError(kind)
        if kind in ("hang", "timeout"):
            await hang.wait()
        if kind == "yield":
            await asyncio.sleep(0)
        return kind

    pool = asyncq.Pool(workers=3, maxsize=8,
                       retry=asyncq.Retry(attempts=2, delay=0.001, jitter=False))
    jobs = []
    async with pool:
        for _ in range(200):
            kind = rng.choice(["ok", "yield", "fail", "hang", "timeout"])
            sub = pool.options(timeout=0.005) if kind == "timeout" else pool
            delay = rng.choice([0, 0, 0.001])
            with contextlib.suppress(asyncq.QueueFull):
                jobs.append(sub.options(delay=delay).submit_nowait(job, kind))
            if rng.random() < 0.3:
                rng.choice(jobs).cancel()
            await asyncio.sleep(rng.choice([0, 0, 0.001]))
            assert_conserved(pool.stats())
        await pool.close(drain=False)
    for handle in jobs:
        assert handle.done()
        ends[handle.id] = ends.get(handle.id, 0) + 1
    stats = pool.stats()
    assert_conserved(stats)
    assert stats.waiting == stats.delayed == stats.running == 0
    assert stats.succeeded + stats.dead + stats.cancelled == len(jobs) == stats.submitted
    assert stats.dead == len(pool.dead_letters)
    assert stats.succeeded
    assert stats.dead
    assert stats.cancelled
    assert stats.retried
    states = [j.state for j in jobs]
    assert states.count(asyncq.JobState.SUCCEEDED) == stats.succeeded
    assert states.count(asyncq.JobState.DEAD) == stats.dead
    assert states.count(asyncq.JobState.CANCELLED) == stats.cancelled


async def test_guarantee_2_bounded_memory_and_backpressure(gate: Gate) -> None:
    """Jobs held not running never exceed maxsize; submit waits at the bound and
    submit_nowait raises QueueFull; a retry never waits for room and cannot deadlock."""
    attempts: dict[int, int] = {}

    async def fail_once(i: int) -> int:
        attempts[i] = attempts.get(i, 0) + 1
        await gate.wait()
        if attempts[i] == 1:
            raise ConnectionError("first try fails")
        return i

    async with asyncq.Pool(workers=2, maxsize=3,
                           retry=asyncq.Retry(attempts=2, delay=0, jitter=False)) as pool:
        jobs = [await pool.submit(fail_once, i) for i in range(5)]  # 2 running + 3 waiting
        await until(lambda: pool.stats().running == 2)
        with pytest.raises(asyncq.QueueFull):
            pool.submit_nowait(fail_once, 99)
        blocked = asyncio.create_task(pool.submit(fail_once, 5))
        await settle()
        assert not blocked.done()  # backpressure: waits while full
        s = pool.stats()
        assert s.waiting + s.delayed <= 3
        gate.open()  # every first attempt fails and is retried without waiting for room
        jobs.append(await blocked)
        results = [await job for job in jobs]
        assert results == [0, 1, 2, 3, 4, 5]
        s = pool.stats()
        assert s.retried == 6
        assert s.dead == 0


async def test_guarantee_3_order_fifo_and_one_worker_serial() -> None:
    """Jobs start in submission order; with workers=1 they never overlap."""
    started: list[int] = []
    inside = 0
    overlap = False

    async def record(i: int) -> None:
        nonlocal inside, overlap
        started.append(i)
        inside += 1
        overlap = overlap or inside > 1
        await asyncio.sleep(0)
        inside -= 1

    async with asyncq.Pool(workers=1, maxsize=10) as pool:
        jobs = [await pool.submit(record, i) for i in range(50)]
        for job in jobs:
            await job
    assert started == list(range(50))
    assert not overlap

    started.clear()
    async with asyncq.Pool(workers=4, maxsize=100) as pool:
        for i in range(100):
            await pool.submit(record, i)
    assert started == list(range(100))


async def test_guarantee_4_workers_never_sleep_for_delays_or_retries() -> None:
    """A job waiting on a delay or a retry backoff holds no worker: with one worker, a
    job retried after a long backoff and a long-delayed job do not stop others."""
    async def always_fails() -> None:
        raise ConnectionError("down")

    async with asyncq.Pool(workers=1, maxsize=100,
                           retry=asyncq.Retry(attempts=2, delay=30, jitter=False)) as pool:
        failing = await pool.submit(always_fails)
        later = await pool.options(delay=30).submit(echo, -1)
        await until(lambda: pool.stats().delayed == 2)
        quick = [await pool.submit(echo, i) for i in range(20)]
        assert [await j for j in quick] == list(range(20))
        s = pool.stats()
        assert s.running == 0
        assert s.delayed == 2
        assert failing.state is asyncq.JobState.DELAYED
        assert later.state is asyncq.JobState.DELAYED
        await pool.close(drain=False)


async def test_guarantee_5_isolation(gate: Gate) -> None:
    """A job that raises, hangs past its timeout or is cancelled affects only itself."""
    async def boom() -> None:
        raise ValueError("boom")

    async def hang() -> None:
        await asyncio.Event().wait()

    async with asyncq.Pool(workers=2, maxsize=10) as pool:
        bad = await pool.submit(boom)
        slow = await pool.options(timeout=0.01).submit(hang)
        waiting = await pool.submit(gate.wait, "x")
        await gate.entered.wait()
        assert waiting.cancel()
        good = [await pool.submit(echo, i) for i in range(10)]
        with pytest.raises(ValueError, match="boom"):
            await bad
        with pytest.raises(TimeoutError):
            await slow
        with pytest.raises(asyncq.JobCancelled):
            await waiting
        assert [await j for j in good] == list(range(10))
        assert pool.stats().workers == 2


async def test_guarantee_5_isolation_fatal_error_stops_pool_and_resolves_all(gate: Gate) -> None:
    """KeyboardInterrupt from a job shuts the pool down cleanly: every handle resolves,
    and close() raises the error once the pool is closed."""
    async def interrupt() -> None:
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    pool = asyncq.Pool(workers=2, maxsize=10)
    await pool.start()
    stuck = await pool.submit(gate.wait)
    await gate.entered.wait()
    fatal = await pool.submit(interrupt)
    rest = [await pool.submit(echo, i) for i in range(5)]
    with pytest.raises(KeyboardInterrupt):
        await pool.close()
    assert fatal.state is asyncq.JobState.DEAD
    assert stuck.state is asyncq.JobState.CANCELLED
    assert all(j.done() for j in rest)
    assert_conserved(pool.stats())


async def test_guarantee_6_clear_errors() -> None:
    """Bad arguments raise TypeError/ValueError at the call, naming the argument."""
    with pytest.raises(ValueError, match="workers"):
        asyncq.Pool(workers=0)
    with pytest.raises(TypeError, match="workers"):
        asyncq.Pool(workers=True)
    with pytest.raises(ValueError, match="maxsize"):
        asyncq.Pool(maxsize=0)
    with pytest.raises(ValueError, match="delay"):
        asyncq.Pool().options(delay=float("nan"))
    with pytest.raises(ValueError, match="attempts"):
        asyncq.Retry(attempts=0)
    async with asyncq.Pool() as pool:
        with pytest.raises(TypeError, match="in_thread"):
            await pool.submit(len, "x")  # type: ignore[arg-type]


async def test_guarantee_7_fair_to_the_loop() -> None:
    """Workers running jobs that never suspend still yield: a heartbeat task gets to run
    at least once per YIELD_EVERY jobs a worker runs."""
    beats = 0
    stop = False

    async def heartbeat() -> None:
        nonlocal beats
        while not stop:
            beats += 1
            await asyncio.sleep(0)

    ran = 0

    async def count() -> None:
        nonlocal ran
        ran += 1

    async with asyncq.Pool(workers=1, maxsize=None) as pool:
        for _ in range(asyncq.YIELD_EVERY * 20):
            pool.submit_nowait(count)
        beat_task = asyncio.create_task(heartbeat())
        await until(lambda: ran == asyncq.YIELD_EVERY * 20)
        stop = True
        await beat_task
    assert beats >= 19  # the worker yielded after each batch of YIELD_EVERY jobs


async def test_guarantee_8_graceful_shutdown(gate: Gate) -> None:
    """close() stops admission, drains what is waiting, lets delayed jobs fire, and wakes
    blocked producers with PoolClosed; with a timeout, what is left is cancelled."""
    pool = asyncq.Pool(workers=1, maxsize=2)
    await pool.start()
    running = await pool.submit(gate.wait, "r")
    await gate.entered.wait()
    waiting = await pool.submit(echo, 1)
    delayed = await pool.options(delay=0.01).submit(echo, 2)
    blocked = asyncio.create_task(pool.submit(echo, 3))
    await settle()
    closing = asyncio.create_task(pool.close())
    with pytest.raises(asyncq.PoolClosed):
        await blocked
    with pytest.raises(asyncq.PoolClosed):
        await pool.submit(echo, 4)
    assert pool.state is asyncq.PoolState.CLOSING
    gate.open()
    await closing
    assert pool.state is asyncq.PoolState.CLOSED
    assert [await running, await waiting, await delayed] == ["r", 1, 2]

    stuck_gate = Gate()
    pool = asyncq.Pool(workers=1, maxsize=5)
    await pool.start()
    stuck = await pool.submit(stuck_gate.wait)
    queued = await pool.submit(echo, 1)
    await stuck_gate.entered.wait()
    await pool.close(timeout=0.01)
    assert stuck.state is asyncq.JobState.CANCELLED
    assert queued.state is asyncq.JobState.CANCELLED
    assert_conserved(pool.stats())
