"""Job handles: awaiting, states, cancellation, attempts, dropped handles."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

import asyncq
from tests.conftest import Flaky, Gate, assert_conserved, settle


async def echo(value: object) -> object:
    return value


async def test_awaiting_gives_result_or_the_jobs_own_exception() -> None:
    """``await job`` returns the result, or raises the very exception the job raised."""
    error = ValueError("own error")

    async def fail() -> None:
        raise error

    async with asyncq.Pool(workers=2) as pool:
        ok = await pool.submit(echo, 5)
        bad = await pool.submit(fail)
        assert await ok == 5
        with pytest.raises(ValueError, match="own error") as caught:
            await bad
        assert caught.value is error
        assert bad.error is error
        # awaiting again gives the same outcome
        assert await ok == 5
        with pytest.raises(ValueError, match="own error"):
            await bad


async def test_state_attempts_done_and_repr(gate: Gate) -> None:
    """A job moves WAITING -> RUNNING -> SUCCEEDED; attempts counts attempts started."""
    third_time_lucky = Flaky(2, "done")
    async with asyncq.Pool(workers=1, retry=asyncq.Retry(attempts=3, delay=0)) as pool:
        blocker = await pool.submit(gate.wait)
        job = await pool.submit(third_time_lucky.run)
        await gate.entered.wait()
        assert blocker.state is asyncq.JobState.RUNNING
        assert job.state is asyncq.JobState.WAITING
        assert not job.done()
        assert "WAITING" in repr(job)
        gate.open()
        assert await job == "done"
        assert job.state is asyncq.JobState.SUCCEEDED
        assert job.done()
        assert job.attempts == 3
        assert job.cancel() is False  # already terminal


async def test_caller_timeout_or_cancellation_never_cancels_the_job(gate: Gate) -> None:
    """wait_for(job, t) timing out, or cancelling the awaiting task, leaves the job alone."""
    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(gate.wait, "value")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(job, 0.01)
        waiter = asyncio.create_task(_await(job))
        await settle()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await job
        assert job.state is asyncq.JobState.RUNNING
        gate.open()
        assert await job == "value"


async def _await(job: asyncq.Job[object]) -> object:
    return await job


async def test_many_awaiters_all_resolve(gate: Gate) -> None:
    """Any number of tasks may await one job; all get the result."""
    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(gate.wait, 3)
        waiters = [asyncio.create_task(_await(job)) for _ in range(20)]
        await settle()
        gate.open()
        assert await asyncio.gather(*waiters) == [3] * 20


async def test_cancel_waiting_delayed_and_running_jobs(gate: Gate) -> None:
    """cancel() resolves a waiting or delayed job at once; a running attempt is cancelled
    and the job ends CANCELLED once that attempt has really finished."""
    finished_cleanup = False

    async def stubborn() -> None:
        nonlocal finished_cleanup
        try:
            await gate.wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            finished_cleanup = True

    async with asyncq.Pool(workers=1) as pool:
        running = await pool.submit(stubborn)
        waiting = await pool.submit(echo, 1)
        delayed = await pool.options(delay=10).submit(echo, 2)
        await gate.entered.wait()
        assert waiting.cancel()
        assert waiting.state is asyncq.JobState.CANCELLED
        assert delayed.cancel()
        assert delayed.state is asyncq.JobState.CANCELLED
        assert running.cancel()
        assert running.state is asyncq.JobState.RUNNING  # until the attempt ends
        with pytest.raises(asyncq.JobCancelled) as caught:
            await running
        assert finished_cleanup
        assert caught.value.job_id == running.id
        for job in (waiting, delayed):
            with pytest.raises(asyncq.JobCancelled):
                await job
        assert await pool.submit(echo, 3) is not None  # the worker lives on
        stats = pool.stats()
        assert stats.cancelled == 3
        assert_conserved(stats)


async def test_cancel_wins_even_if_the_attempt_swallows_it(gate: Gate) -> None:
    """A cancelled job ends CANCELLED even when its code swallows CancelledError and
    returns; the worker keeps running other jobs."""
    async def swallow() -> str:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            return "swallowed"
        return "normal"

    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(swallow)
        await gate.entered.wait()
        job.cancel()
        with pytest.raises(asyncq.JobCancelled):
            await job
        assert await (await pool.submit(echo, 1)) == 1
        await asyncio.sleep(0)  # the worker task was not left with a pending cancel


async def test_dropped_handles_still_run() -> None:
    """Handles may be dropped: the pool keeps each job alive until it is terminal."""
    done: list[int] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def work(i: int) -> None:
        started.set()
        await release.wait()
        done.append(i)

    async with asyncq.Pool(workers=2) as pool:
        refs = []
        for i in range(10):
            refs.append(weakref.ref(await pool.submit(work, i)))
        gc.collect()
        assert all(r() is not None for r in refs)
        await started.wait()
        release.set()
    assert sorted(done) == list(range(10))


async def test_job_timeout_counts_as_failed_attempt_and_attempts_never_overlap() -> None:
    """A timed-out attempt is cancelled, awaited to its real end, and counted as a failed
    attempt with TimeoutError; the retry starts only after it ended."""
    inside = 0
    peak = 0
    slow_cleanup = asyncio.Event()

    async def slow() -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # the cancelled attempt takes time to end
            inside -= 1
            slow_cleanup.set()

    async with asyncq.Pool(workers=2, retry=asyncq.Retry(attempts=3, delay=0),
                           timeout=0.01) as pool:
        job = await pool.submit(slow)
        with pytest.raises(TimeoutError, match="timed out"):
            await job
        assert job.attempts == 3
        assert peak == 1
        letter = next(iter(pool.dead_letters))
        assert isinstance(letter.error, TimeoutError)
        assert pool.stats().failed == 3
        assert pool.stats().retried == 2


async def test_options_chain_and_keep_other_fields() -> None:
    """options() returns a submitter; chained calls keep the fields not given."""
    async with asyncq.Pool(workers=1) as pool:
        sub = pool.options(timeout=5).options(delay=0)
        assert sub._options.timeout == 5
        assert await (await sub.submit(echo, 1)) == 1
        assert await sub.map(echo, [1, 2]) == [1, 2]
        assert await sub.submit_nowait(echo, 3) == 3


async def test_delay_holds_job_on_timer() -> None:
    """options(delay=) starts the job no earlier than the delay, on the loop's clock."""
    loop = asyncio.get_running_loop()
    async with asyncq.Pool(workers=1) as pool:
        begin = loop.time()
        job = await pool.options(delay=0.02).submit(_now)
        assert job.state is asyncq.JobState.DELAYED
        assert await job - begin >= 0.02 - 0.002  # uvloop's clock ticks in milliseconds


async def _now() -> float:
    return asyncio.get_running_loop().time()


async def test_copy_context_runs_each_job_in_its_submitters_context() -> None:
    """With copy_context=True a job sees the context variables of the code that submitted
    it, and what it sets stays with it; with bind_job_id its job_id is bound in its own context."""
    import contextvars

    import structlog

    request: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="-")
    seen: list[tuple[str, object]] = []

    async def handler() -> None:
        seen.append((request.get(), structlog.contextvars.get_contextvars().get("job_id")))
        request.set("changed by the job")
        await asyncio.sleep(0)
        seen.append((request.get(), None))

    async with asyncq.Pool(workers=1, copy_context=True, timeout=5, bind_job_id=True) as pool:
        request.set("req-1")
        first = await pool.submit(handler)
        request.set("req-2")
        second = await pool.submit(handler)
        await asyncio.gather(first, second)
    assert seen == [("req-1", first.id), ("changed by the job", None),
                    ("req-2", second.id), ("changed by the job", None)]
    assert request.get() == "req-2"


async def test_copy_context_jobs_still_cancel_and_time_out(gate: Gate) -> None:
    """Cancellation and timeouts reach a job running in its own context."""
    async with asyncq.Pool(workers=2, copy_context=True) as pool:
        running = await pool.submit(gate.wait)
        slow = await pool.options(timeout=0.01).submit(asyncio.sleep, 5)
        await gate.entered.wait()
        running.cancel()
        with pytest.raises(asyncq.JobCancelled):
            await running
        with pytest.raises(TimeoutError):
            await slow
        assert await (await pool.submit(echo, 3)) == 3


async def test_a_finished_handle_holds_neither_arguments_nor_copied_context() -> None:
    """A caller may keep handles for long: once a job has ended, its handle no longer keeps
    its arguments or the context copied for it (``copy_context=True``) alive."""
    import contextvars

    class Payload:
        pass

    carried: contextvars.ContextVar[Payload | None] = contextvars.ContextVar(
        "carried", default=None)

    async def uses(arg: Payload) -> bool:
        return carried.get() is not None

    async def submit_from_own_context(pool: asyncq.Pool) -> tuple[asyncq.Job[bool], Any, Any]:
        in_context, as_argument = Payload(), Payload()
        token = carried.set(in_context)
        job = await pool.submit(uses, as_argument)  # the job's copy of the context has it
        carried.reset(token)  # from here on only the job's copy holds it
        return job, weakref.ref(in_context), weakref.ref(as_argument)

    async with asyncq.Pool(workers=1, copy_context=True) as pool:
        job, in_context, as_argument = await asyncio.create_task(submit_from_own_context(pool))
        assert await job is True
        gc.collect()
        assert in_context() is None
        assert as_argument() is None
        assert job.state is asyncq.JobState.SUCCEEDED
