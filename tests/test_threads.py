"""``asyncq.in_thread``: blocking functions run in a worker thread, and never overlap."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import structlog
import structlog.contextvars
from structlog.testing import capture_logs

import asyncq
from tests.conftest import settle, until

#: Upper bound on how long a test thread may block if a test goes wrong.
SAFETY = 2.0


class Blocking:
    """A blocking function that counts how many threads are inside it at once.

    It waits on ``release`` (a ``threading.Event``) for at most ``hold`` seconds, so the
    test decides when it returns.
    """

    def __init__(self, hold: float = SAFETY) -> None:
        self.hold = hold
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.inside = 0
        self.peak = 0
        self.trace: list[str] = []

    def __call__(self, value: Any) -> Any:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            self.trace.append("enter")
        self.entered.set()
        try:
            self.release.wait(self.hold)
            return value
        finally:
            with self.lock:
                self.inside -= 1
                self.trace.append("exit")


def where(value: int, *, offset: int = 0) -> tuple[int, int]:
    """Return the running thread's ident and a computed value."""
    return threading.get_ident(), value + offset


def explode(message: str) -> None:
    """A blocking function that raises."""
    raise LookupError(message)


async def test_in_thread_runs_off_the_loop_thread_and_returns_the_value() -> None:
    """The wrapped function runs in a thread other than the event loop's, with its
    positional and keyword arguments, and the job's result is its return value."""
    loop_thread = threading.get_ident()
    async with asyncq.Pool(workers=2) as pool:
        job = await pool.submit(asyncq.in_thread(where), 40, offset=2)
        thread, value = await job
    assert value == 42
    assert thread != loop_thread
    assert job.state is asyncq.JobState.SUCCEEDED


async def test_in_thread_exception_reaches_the_job_and_its_dead_letter() -> None:
    """An exception raised in the thread is the job's error: awaiting raises that very
    object and the dead letter holds it, with the blocking function in its traceback."""
    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(asyncq.in_thread(explode), "missing key")
        with pytest.raises(LookupError, match="missing key") as raised:
            await job
        (letter,) = pool.dead_letters
    assert letter.error is raised.value
    assert type(letter.error) is LookupError
    assert "explode" in letter.traceback
    assert letter.job_id == job.id


async def test_timed_out_thread_attempt_ends_only_when_the_thread_returns() -> None:
    """A timeout cannot stop a thread: the attempt stays RUNNING past its deadline until the
    function returns, and only then is the next attempt started, so attempts never overlap."""
    blocking = Blocking()
    loop = asyncio.get_running_loop()
    retry = asyncq.Retry(attempts=2, delay=0)
    timeout = 0.01
    async with asyncq.Pool(workers=2, retry=retry, timeout=timeout) as pool:
        job = await pool.submit(asyncq.in_thread(blocking), "done")
        await asyncio.to_thread(blocking.entered.wait, SAFETY)
        deadline = loop.time() + timeout
        await until(lambda: loop.time() > deadline)
        await settle()
        # The deadline has passed and the attempt was cancelled, but the thread is still in.
        assert job.state is asyncq.JobState.RUNNING
        assert blocking.trace == ["enter"]
        assert pool.stats().failed == 0
        blocking.release.set()
        assert await job == "done"
    assert blocking.peak == 1
    assert blocking.trace == ["enter", "exit", "enter", "exit"]
    assert job.attempts == 2
    stats = pool.stats()
    assert stats.failed == 1
    assert stats.retried == 1
    assert stats.succeeded == 1


async def test_timed_out_thread_job_dies_with_timeout_error_after_threads_end() -> None:
    """When every attempt times out, the job dies with ``TimeoutError`` and by then each
    attempt's thread has returned; the threads never ran two at a time."""
    blocking = Blocking(hold=0.05)  # each thread blocks 50 ms; the attempt deadline is 10 ms
    retry = asyncq.Retry(attempts=2, delay=0)
    async with asyncq.Pool(workers=2, retry=retry, timeout=0.01) as pool:
        job = await pool.submit(asyncq.in_thread(blocking), "never")
        with pytest.raises(TimeoutError):
            await job
        assert blocking.trace == ["enter", "exit", "enter", "exit"]
        assert blocking.inside == 0
        (letter,) = pool.dead_letters
    assert blocking.peak == 1
    assert isinstance(letter.error, TimeoutError)
    assert letter.attempts == 2


async def test_cancelled_thread_job_ends_after_the_thread_returns() -> None:
    """``job.cancel()`` on a job running in a thread resolves it CANCELLED only once the
    thread has returned."""
    blocking = Blocking()
    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(asyncq.in_thread(blocking), 1)
        await asyncio.to_thread(blocking.entered.wait, SAFETY)
        assert job.cancel()
        await settle()
        assert job.state is asyncq.JobState.RUNNING
        assert blocking.inside == 1
        blocking.release.set()
        with pytest.raises(asyncq.JobCancelled):
            await job
        assert blocking.trace == ["enter", "exit"]
    assert job.state is asyncq.JobState.CANCELLED
    assert pool.stats().cancelled == 1


async def test_thread_code_logs_carry_the_job_id() -> None:
    """With ``bind_job_id``, the job's structlog context reaches the thread: logs from the
    blocking function carry its ``job_id``."""

    def logs_from_thread() -> None:
        structlog.get_logger().info("in.thread")

    structlog.reset_defaults()
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
            async with asyncq.Pool(workers=1, bind_job_id=True) as pool:
                job = await pool.submit(asyncq.in_thread(logs_from_thread))
                await job
    finally:
        structlog.reset_defaults()
    (entry,) = [e for e in entries if e["event"] == "in.thread"]
    assert entry["job_id"] == job.id


async def async_function() -> None:
    """Already async: nothing to wrap."""


@pytest.mark.parametrize(("fn", "match"), [
    (async_function, "fn must be a plain function"),
    (42, "fn must be callable"),
])
def test_in_thread_rejects_async_functions_and_non_callables(fn: Any, match: str) -> None:
    """``in_thread`` wraps plain callables only: an async function or a number is refused."""
    with pytest.raises(TypeError, match=match):
        asyncq.in_thread(fn)

