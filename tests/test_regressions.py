"""Faults found by review, each pinned by a test: hand-offs under cancellation, user code
that misbehaves inside the pool's own paths, long dependency chains, and timers."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from typing import Any

import pytest

import asyncq
from tests.conftest import LOOP_FACTORIES, Flaky, Gate, assert_conserved, settle, until


async def ok(value: object = "ok") -> object:
    return value


async def test_cancelled_error_raised_by_job_code_affects_only_that_job() -> None:
    """A job whose own code raises CancelledError (e.g. it awaited a future someone else
    cancelled) ends CANCELLED; its worker and the pool carry on."""
    async def awaits_cancelled_future() -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    async with asyncq.Pool(workers=1) as pool:
        bad = await pool.submit(awaits_cancelled_future)
        later = [await pool.submit(ok, i) for i in range(3)]
        with pytest.raises(asyncq.JobCancelled):
            await bad
        assert [await job for job in later] == [0, 1, 2]
        assert pool.state is asyncq.PoolState.RUNNING


async def test_outside_cancellation_of_a_worker_is_never_swallowed(gate: Gate) -> None:
    """job.cancel() and a cancellation of the worker task in the same step: the worker
    still ends (the pool stops and resolves everything) instead of running on."""
    pool = asyncq.Pool(workers=1)
    await pool.start()
    job = await pool.submit(gate.wait)
    await gate.entered.wait()
    job.cancel()
    pool._tasks[0].cancel()
    await asyncio.gather(*pool._tasks, return_exceptions=True)
    assert pool._tasks[0].done()
    assert job.state is asyncq.JobState.CANCELLED
    with pytest.raises(asyncq.PoolClosed):
        await pool.submit(ok)
    await pool.close()


async def test_outside_cancellation_is_not_lost_when_the_job_converts_it(gate: Gate) -> None:
    """A job that turns the worker's cancellation into another error does not keep the
    cancelled worker alive."""
    async def converts() -> None:
        try:
            await gate.wait()
        finally:
            raise RuntimeError("cleanup failed")

    pool = asyncq.Pool(workers=1)
    await pool.start()
    job = await pool.submit(converts)
    await gate.entered.wait()
    pool._tasks[0].cancel()
    await asyncio.gather(*pool._tasks, return_exceptions=True)
    assert pool._tasks[0].done()
    assert job.done()
    await pool.close()


async def test_a_job_cancelling_itself_does_not_poison_the_next_job() -> None:
    """A job that calls cancel() on its own handle and returns ends CANCELLED; the next
    job on the same worker runs normally."""
    handles: list[asyncq.Job[object]] = []

    async def cancel_self() -> str:
        handles[0].cancel()
        return "returned"

    async with asyncq.Pool(workers=1) as pool:
        handles.append(await pool.submit(cancel_self))
        after = await pool.submit(ok, "next")
        with pytest.raises(asyncq.JobCancelled):
            await handles[0]
        assert await after == "next"
        assert pool.state is asyncq.PoolState.RUNNING


async def test_cancelled_producer_gets_cancelled_error_not_value_error(gate: Gate) -> None:
    """A producer cancelled while blocked in submit gets CancelledError even when a slot
    was freed (or the pool closed) in the same step."""
    async with asyncq.Pool(workers=1, maxsize=1) as pool:
        await pool.submit(gate.wait)
        await gate.entered.wait()
        queued = await pool.submit(ok)
        producer = asyncio.create_task(pool.submit(ok))
        await settle()
        producer.cancel()
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await producer
        gate.open()


async def test_producer_refused_after_waiting_hands_its_slot_on(gate: Gate) -> None:
    """A waiting producer whose submit is refused (a plain function) raises at once and
    never strands the producer behind it."""
    def not_async() -> None:
        pass

    async with asyncq.Pool(workers=1, maxsize=1) as pool:
        await pool.submit(gate.wait)
        await gate.entered.wait()
        queued = await pool.submit(ok)
        bad = asyncio.create_task(pool.submit(not_async))  # type: ignore[arg-type]
        await settle()
        good = asyncio.create_task(pool.submit(ok, "good"))
        await settle()
        with pytest.raises(TypeError):
            await bad
        queued.cancel()
        job = await asyncio.wait_for(good, 2)
        gate.open()
        assert await job == "good"


async def test_long_dependency_chain_fails_without_recursion() -> None:
    """A failure at the head of a chain of 2,000 dependents cancels all of them; nothing
    recurses, every handle resolves."""
    async def broken() -> None:
        raise ValueError("head failed")

    async with asyncq.Pool(workers=2, maxsize=None) as pool:
        chain = [await pool.submit(broken)]
        for _ in range(2000):
            chain.append(await pool.options(after=[chain[-1]]).submit(ok))
        await until(lambda: all(job.done() for job in chain))
    assert all(job.state is asyncq.JobState.CANCELLED for job in chain[1:])
    assert_conserved(pool.stats())


async def test_long_key_queue_behind_a_cancelled_dependency_resolves() -> None:
    """Many keyed jobs waiting behind a holder whose dependency is cancelled all resolve,
    and the key is free afterwards."""
    async with asyncq.Pool(workers=2, maxsize=None) as pool:
        head = await pool.options(delay=60).submit(ok)
        waiting = [await pool.options(key="k", after=[head]).submit(ok) for _ in range(1500)]
        head.cancel()
        await until(lambda: all(job.done() for job in waiting))
        assert pool.stats().keys_busy == 0
        assert await (await pool.options(key="k").submit(ok, "free")) == "free"


async def test_rate_limited_pool_resumes_every_parked_worker() -> None:
    """When a pool's bucket refills, waiting jobs reach every free worker (three jobs that
    must all run at once do)."""
    barrier = asyncio.Barrier(3)

    async def meet(i: int) -> int:
        await barrier.wait()
        return i

    limit = asyncq.RateLimit(starts=1, per=0.01)
    for kwargs in ({"rate_limit": limit}, {"group_rate_limits": {"g": limit}}):
        async with asyncq.Pool(workers=3, **kwargs) as pool:  # type: ignore[arg-type]
            jobs = [await pool.options(group="g").submit(meet, i) for i in range(3)]
            assert await asyncio.wait_for(asyncio.gather(*jobs), 2) == [0, 1, 2]


async def test_redrive_survives_a_purge_while_it_waits(gate: Gate) -> None:
    """purge() during a redrive that waits for room does not make redrive raise."""
    async def fail() -> None:
        raise ValueError("x")

    async with asyncq.Pool(workers=1, maxsize=1) as pool:
        with pytest.raises(ValueError, match="x"):
            await (await pool.submit(fail))
        await pool.submit(gate.wait)
        await gate.entered.wait()
        await pool.submit(ok)  # full
        redriving = asyncio.create_task(pool.dead_letters.redrive())
        await settle()
        pool.dead_letters.purge()
        gate.open()
        jobs = await redriving
        assert len(jobs) == 1


async def test_user_code_failing_inside_routing_still_settles_the_job() -> None:
    """A retry_on predicate that raises, or an exception whose repr raises, still leaves
    the job DEAD and in the dead letters; the worker lives on."""
    class Weird(Exception):
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    async def raise_plain() -> None:
        raise ValueError()

    async def raise_weird() -> None:
        raise Weird("weird")

    bad_predicate = asyncq.Retry(attempts=3, delay=0, retry_on=lambda e: e.args[0] == "x")
    async with asyncq.Pool(workers=1, retry=bad_predicate) as pool:
        first = await pool.submit(raise_plain)
        second = await pool.submit(raise_weird)
        for job in (first, second):
            with pytest.raises(Exception):  # noqa: B017, PT011 - the job's own error
                await job
            assert job.state is asyncq.JobState.DEAD
        assert len(pool.dead_letters) == 2
        assert await (await pool.submit(ok, 1)) == 1


async def test_key_rate_limit_keeps_fifo_among_plain_and_keyed_jobs() -> None:
    """With key_rate_limit set, jobs of equal priority still start in submission order."""
    order: list[str] = []

    async def record(name: str) -> None:
        order.append(name)

    async with asyncq.Pool(workers=1, key_rate_limit=asyncq.RateLimit(100)) as pool:
        for name in ("p1", "p2", "p3"):
            await pool.submit(record, name)
        await pool.options(key="a").submit(record, "k1")
    assert order == ["p1", "p2", "p3", "k1"]


async def test_cancelling_the_last_job_of_a_group_keeps_turns_fair(gate: Gate) -> None:
    """Cancel-and-refill cycles in one group's lane do not give it extra turns."""
    started: list[str] = []

    async def record(group: str) -> None:
        started.append(group)

    async with asyncq.Pool(workers=1, maxsize=None) as pool:
        await pool.submit(gate.wait)
        await gate.entered.wait()
        await pool.options(group="g2").submit(record, "g2")
        for _ in range(3):
            (await pool.options(group="g1").submit(record, "g1")).cancel()
        for _ in range(8):
            await pool.options(group="g1").submit(record, "g1")
            await pool.options(group="g2").submit(record, "g2")
        gate.open()
    assert started[:12].count("g1") == 6


async def test_delayed_jobs_do_not_spin_the_loop() -> None:
    """Delayed jobs fire without the timer re-arming itself over and over (uvloop's clock
    ticks in milliseconds): it is armed about once per distinct deadline, not thousands
    of times."""
    class CountingLoop:
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop = loop
            self.armed = 0
            self._clock_resolution = getattr(loop, "_clock_resolution", None)

        def time(self) -> float:
            return self.loop.time()

        def call_at(self, when: float, callback: object) -> asyncio.TimerHandle:
            self.armed += 1
            return self.loop.call_at(when, callback)  # type: ignore[arg-type]

    async with asyncq.Pool(workers=2, maxsize=None) as pool:
        assert pool._core is not None
        timers = pool._core.timers
        counting = CountingLoop(asyncio.get_running_loop())
        timers._loop = counting  # type: ignore[assignment]
        jobs = [await pool.options(delay=0.0005 * i).submit(ok, i) for i in range(1, 101)]
        await asyncio.gather(*jobs)
    assert counting.armed < 400


async def test_close_called_from_inside_a_job_is_refused() -> None:
    """A job awaiting pool.close() would wait for itself: it gets a clear error instead."""
    holder: list[asyncq.Pool] = []

    async def closes() -> None:
        await holder[0].close()

    async with asyncq.Pool(workers=1) as pool:
        holder.append(pool)
        with pytest.raises(RuntimeError, match="inside a job"):
            await (await pool.submit(closes))


@pytest.mark.parametrize("factory", LOOP_FACTORIES.values(), ids=LOOP_FACTORIES.keys())
def test_a_pool_left_open_on_a_closed_loop_can_be_collected(factory: Any) -> None:
    """A started pool that is never closed, on a loop that is then closed, is garbage once
    the caller drops it: nothing global (such as the map behind ``current_job()``) keeps
    its workers, core or jobs alive."""

    async def start_and_leave() -> tuple[weakref.ref[Any], weakref.ref[Any]]:
        pool = asyncq.Pool(workers=3)
        await pool.start()
        await (await pool.submit(ok))
        assert pool._core is not None
        return weakref.ref(pool), weakref.ref(pool._core.workers[0])

    loop = factory()
    try:
        pool, worker = loop.run_until_complete(start_and_leave())
    finally:
        loop.close()
    del loop
    gc.collect()
    assert worker() is None
    assert pool() is None


async def test_workers_cancelled_before_their_first_step_still_resolve_every_job() -> None:
    """If the worker tasks are cancelled before they ever run (so their coroutine never
    starts), the pool still stops and every admitted job resolves, as when they are
    cancelled while running."""
    pool = asyncq.Pool(workers=2)
    await pool.start()
    job = pool.submit_nowait(ok)
    for task in pool._tasks:
        task.cancel()
    await asyncio.wait_for(asyncio.gather(*pool._tasks, return_exceptions=True), 5)
    with pytest.raises(asyncq.JobCancelled):
        await asyncio.wait_for(job, 5)
    assert job.state is asyncq.JobState.CANCELLED
    assert_conserved(pool.stats())
    await asyncio.wait_for(pool.close(), 5)


async def test_an_error_that_is_both_cancelled_and_exception_ends_the_job_cancelled() -> None:
    """A job's CancelledError counts as a cancellation even when its class also derives
    from Exception: it is not a failed attempt, so it is neither retried nor buried."""
    class Both(asyncio.CancelledError, Exception):
        pass

    async def raises_both() -> None:
        raise Both

    async with asyncq.Pool(workers=1, retry=asyncq.Retry(attempts=3, delay=0.0)) as pool:
        job = await pool.submit(raises_both)
        with pytest.raises(asyncq.JobCancelled):
            await job
        assert job.attempts == 1
        assert await (await pool.submit(ok)) == "ok"
        stats = pool.stats()
    assert (stats.cancelled, stats.failed, stats.dead) == (1, 0, 0)


class _RaisingCheck(type):
    def __instancecheck__(cls, instance: object) -> bool:
        raise RuntimeError("instance check broke")


class Unmatchable(Exception, metaclass=_RaisingCheck):
    """An exception type whose isinstance() check raises."""


async def test_a_retry_on_type_whose_check_raises_buries_the_job() -> None:
    """retry_on types are checked with isinstance(), which user code can make raise: the
    job is buried as not retryable and the worker carries on, as for a raising predicate."""
    async def fails() -> None:
        raise ValueError("boom")

    retry = asyncq.Retry(attempts=3, delay=0.0, retry_on=(Unmatchable,))
    async with asyncq.Pool(workers=1, retry=retry) as pool:
        job = await pool.submit(fails)
        with pytest.raises(ValueError, match="boom"):
            await job
        assert [letter.reason for letter in pool.dead_letters] == ["not_retryable"]
        assert await (await pool.submit(ok)) == "ok"



@pytest.mark.parametrize("where", ["retry_on", "backoff"])
async def test_cancel_from_the_routing_of_a_failed_attempt_cancels_the_job(where: str) -> None:
    """A job cancelled from user code that runs while its failed attempt is routed (a
    retry_on predicate, a Retry subclass's backoff) ends CANCELLED and is not retried: the
    request wins, as it does while the attempt runs."""
    routed: list[asyncq.Job[Any]] = []
    answers: list[bool] = []

    def cancels(error: BaseException) -> bool:
        answers.append(routed[0].cancel())
        return True

    class CancelsInBackoff(asyncq.Retry):
        def backoff(self, failed_attempts: int, rng: random.Random) -> float:
            answers.append(routed[0].cancel())
            return 0.0

    retry = (asyncq.Retry(attempts=3, delay=0.0, retry_on=cancels) if where == "retry_on"
             else CancelsInBackoff(attempts=3, delay=0.01))
    flaky = Flaky(5)
    async with asyncq.Pool(workers=1, retry=retry) as pool:
        job = await pool.submit(flaky.run)
        routed.append(job)
        with pytest.raises(asyncq.JobCancelled):
            await job
        assert answers == [True]
        assert job.state is asyncq.JobState.CANCELLED
        assert (flaky.calls, job.attempts) == (1, 1)
        stats = pool.stats()
        assert (stats.failed, stats.retried, stats.cancelled, stats.dead) == (1, 0, 1, 0)
        assert_conserved(stats)
        assert await (await pool.submit(ok)) == "ok"


async def test_cancel_while_a_dead_letter_is_written_finds_the_job_dead() -> None:
    """The dead letter renders the job's error (its ``__str__``, user code) after the job
    has ended DEAD: a ``cancel()`` from there returns False, as for any finished job,
    instead of True for a cancel that could not happen."""
    routed: list[asyncq.Job[Any]] = []
    answers: list[bool] = []

    class CancelsWhenRendered(ValueError):
        def __str__(self) -> str:
            if routed and not answers:
                answers.append(routed[0].cancel())
            return "rendered"

    async def fails() -> None:
        raise CancelsWhenRendered

    async with asyncq.Pool(workers=1, retry=None) as pool:
        job = await pool.submit(fails)
        routed.append(job)
        with pytest.raises(CancelsWhenRendered):
            await job
        assert answers == [False]
        assert job.state is asyncq.JobState.DEAD
        (letter,) = pool.dead_letters
        assert "rendered" in letter.traceback
        assert (letter.args, letter.kwargs) == ((), {})
        assert_conserved(pool.stats())


@pytest.mark.parametrize("give", [RuntimeError("no"), float("nan"), -1.0, "1", None, True])
async def test_a_backoff_that_raises_or_gives_no_delay_buries_the_job(give: Any) -> None:
    """A Retry subclass's backoff that raises, or returns something that is not a finite
    number of seconds >= 0, sends the job to the dead letters as "backoff_failed"; the
    worker carries on and every handle resolves."""
    class BadBackoff(asyncq.Retry):
        def backoff(self, failed_attempts: int, rng: random.Random) -> Any:
            if isinstance(give, BaseException):
                raise give
            return give

    async with asyncq.Pool(workers=1, retry=BadBackoff(attempts=3, delay=0.01)) as pool:
        job = await pool.submit(Flaky(1).run)
        with pytest.raises(ConnectionError):
            await job
        assert [letter.reason for letter in pool.dead_letters] == ["backoff_failed"]
        assert job.attempts == 1
        stats = pool.stats()
        assert (stats.failed, stats.retried, stats.dead) == (1, 0, 1)
        assert await (await pool.submit(ok)) == "ok"
        assert_conserved(pool.stats())


async def test_stats_read_while_a_failed_attempt_is_routed_stay_whole() -> None:
    """A retry_on predicate and a backoff are user code that may read ``stats()`` while the
    failed job is between its attempt and its next state: it still counts as running, so
    the conservation identity holds there too."""
    seen: list[Any] = []
    pool_ref: list[asyncq.Pool] = []

    def look(error: BaseException) -> bool:
        seen.append(pool_ref[0].stats())
        return True

    class Looking(asyncq.Retry):
        def backoff(self, failed_attempts: int, rng: random.Random) -> float:
            seen.append(pool_ref[0].stats())
            return 0.0

    async with asyncq.Pool(workers=2, retry=Looking(attempts=2, delay=0.01, retry_on=look)
                           ) as pool:
        pool_ref.append(pool)
        job = await pool.submit(Flaky(1).run)
        assert await job == "ok"
    assert len(seen) == 2
    for stats in seen:
        assert (stats.running, stats.failed) == (1, 1)
        assert_conserved(stats)


async def test_stats_read_while_a_dead_letter_is_written_stay_whole() -> None:
    """The dead letter renders the error (its ``__str__``, user code) after the job has
    ended DEAD, and the dead count already includes it: stats() from there add up."""
    seen: list[Any] = []
    pool_ref: list[asyncq.Pool] = []

    class LooksWhenRendered(ValueError):
        def __str__(self) -> str:
            if pool_ref and not seen:
                seen.append(pool_ref[0].stats())
            return "rendered"

    async def fails() -> None:
        raise LooksWhenRendered

    async with asyncq.Pool(workers=1, retry=None) as pool:
        pool_ref.append(pool)
        with pytest.raises(LooksWhenRendered):
            await (await pool.submit(fails))
    (stats,) = seen
    assert (stats.dead, stats.running) == (1, 0)
    assert_conserved(stats)
