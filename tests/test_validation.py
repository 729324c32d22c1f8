"""Bad input is refused at the call that received it, with a message naming the argument.

DESIGN.md guarantee 6 ("Clear errors"): ``TypeError``/``ValueError`` (or an ``AsyncqError``
subclass) raised by the call itself, naming the argument and the accepted range; nothing
hangs and nothing is silently defaulted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import threading
from typing import Any

import pytest

import asyncq
from tests.conftest import LOOP_FACTORIES, Gate

NAN = math.nan
INF = math.inf


async def noop() -> None:
    """A job that does nothing."""


def blocking() -> int:
    """A plain function: must not be submitted as is."""
    return 1


# -- Pool(...) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("8", TypeError)],
)
def test_pool_rejects_bad_workers(workers: Any, error: type[Exception]) -> None:
    """``workers`` must be an int >= 1 (never a bool); the message names it and its range."""
    with pytest.raises(error, match=r"workers must be an int >= 1"):
        asyncq.Pool(workers=workers)


@pytest.mark.parametrize(
    ("maxsize", "error"),
    [(0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError)],
)
def test_pool_rejects_bad_maxsize(maxsize: Any, error: type[Exception]) -> None:
    """``maxsize`` must be an int >= 1; 0 never means "unbounded"."""
    with pytest.raises(error, match=r"maxsize must be an int >= 1"):
        asyncq.Pool(maxsize=maxsize)


async def test_pool_accepts_maxsize_none_as_unbounded() -> None:
    """``maxsize=None`` is the explicit spelling of an unbounded pool: nothing is refused."""
    gate = Gate()
    pool = asyncq.Pool(workers=1, maxsize=None)
    assert pool.maxsize is None
    async with pool:
        jobs = [pool.submit_nowait(gate.wait, i) for i in range(1500)]
        assert pool.stats().submitted == 1500
        gate.open()
        assert [await job for job in jobs] == list(range(1500))


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(0, ValueError), (-1, ValueError), (NAN, ValueError), (INF, ValueError), ("1", TypeError)],
)
def test_pool_rejects_bad_timeout(timeout: Any, error: type[Exception]) -> None:
    """A pool's default ``timeout`` is None or a finite number of seconds > 0."""
    with pytest.raises(error, match=r"timeout must be None or a finite number of seconds > 0"):
        asyncq.Pool(timeout=timeout)


@pytest.mark.parametrize("name", ["copy_context", "bind_job_id"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_pool_rejects_non_bool_switches(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=f"{name} must be a bool"):
        asyncq.Pool(**{name: value})


def test_pool_rejects_bad_retry() -> None:
    """A pool's ``retry`` is an ``asyncq.Retry`` or None."""
    with pytest.raises(TypeError, match=r"retry must be an asyncq\.Retry or None"):
        asyncq.Pool(retry=3)  # type: ignore[arg-type]


# -- Retry(...) --------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "error"), [(0, ValueError), (True, TypeError)])
def test_retry_rejects_bad_attempts(attempts: Any, error: type[Exception]) -> None:
    """``attempts`` is the total number of tries: an int >= 1, not a bool."""
    with pytest.raises(error, match=r"attempts must be an int >= 1"):
        asyncq.Retry(attempts=attempts)


@pytest.mark.parametrize("delay", [-1, NAN, INF])
def test_retry_rejects_bad_delay(delay: float) -> None:
    """A retry ``delay`` is a finite number of seconds >= 0."""
    with pytest.raises(ValueError, match=r"delay must be a finite number of seconds >= 0"):
        asyncq.Retry(delay=delay)


def test_retry_rejects_factor_below_one() -> None:
    """A backoff ``factor`` below 1 would shrink the delays: refused, naming the minimum."""
    with pytest.raises(ValueError, match=r"factor must be a finite number >= 1"):
        asyncq.Retry(factor=0.5)


def test_retry_rejects_nan_max_delay() -> None:
    """``max_delay`` is a finite number of seconds >= 0; NaN is refused."""
    with pytest.raises(ValueError, match=r"max_delay must be a finite number of seconds >= 0"):
        asyncq.Retry(max_delay=NAN)


def test_retry_rejects_non_bool_jitter() -> None:
    """``jitter`` is a bool; a truthy int is not silently accepted."""
    with pytest.raises(TypeError, match=r"jitter must be a bool"):
        asyncq.Retry(jitter=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("retry_on", ["x", (ValueError, 3)])
def test_retry_rejects_bad_retry_on(retry_on: Any) -> None:
    """``retry_on`` is an exception type, a tuple of them, or a predicate."""
    with pytest.raises(TypeError, match=r"retry_on must be an exception type, a tuple"):
        asyncq.Retry(retry_on=retry_on)


def test_retry_later_rejects_negative_delay() -> None:
    """``RetryLater(delay=...)`` validates its delay like any other delay."""
    with pytest.raises(ValueError, match=r"delay must be a finite number of seconds >= 0"):
        asyncq.RetryLater(delay=-1)


# -- pool.options(...) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "error"),
    [(-1, ValueError), (NAN, ValueError), (INF, ValueError), ("1", TypeError)],
)
def test_options_rejects_bad_delay(delay: Any, error: type[Exception]) -> None:
    """``options(delay=...)`` takes a finite number of seconds >= 0."""
    pool = asyncq.Pool()
    with pytest.raises(error, match=r"delay must be a finite number of seconds >= 0"):
        pool.options(delay=delay)


@pytest.mark.parametrize("timeout", [0, NAN])
def test_options_rejects_bad_timeout(timeout: float) -> None:
    """``options(timeout=...)`` takes None or a finite number of seconds > 0."""
    pool = asyncq.Pool()
    with pytest.raises(ValueError, match=r"timeout must be None or a finite number of seconds > 0"):
        pool.options(timeout=timeout)


def test_options_rejects_bad_retry() -> None:
    """``options(retry=...)`` takes an ``asyncq.Retry`` or None."""
    pool = asyncq.Pool()
    with pytest.raises(TypeError, match=r"retry must be an asyncq\.Retry or None"):
        pool.options(retry="x")  # type: ignore[arg-type]


# -- what is submitted -------------------------------------------------------------------


async def test_submit_rejects_plain_function_and_points_to_in_thread() -> None:
    """A plain function would block the loop: TypeError naming ``fn`` and ``asyncq.in_thread``."""
    async with asyncq.Pool(workers=1) as pool:
        with pytest.raises(TypeError, match=r"fn must be an async function.*asyncq\.in_thread"):
            await pool.submit(blocking)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"fn must be an async function.*asyncq\.in_thread"):
            pool.submit_nowait(blocking)  # type: ignore[arg-type]
        assert pool.stats().submitted == 0


async def test_submit_rejects_coroutine_object_and_closes_it() -> None:
    """A coroutine object is refused and closed, so it never warns "never awaited"."""
    async with asyncq.Pool(workers=1) as pool:
        coro = noop()
        with pytest.raises(TypeError, match=r"fn must be an async function, got a coroutine"):
            await pool.submit(coro)  # type: ignore[arg-type]
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        coro = noop()
        with pytest.raises(TypeError, match=r"fn must be an async function, got a coroutine"):
            pool.submit_nowait(coro)  # type: ignore[arg-type]
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        assert pool.stats().submitted == 0


@pytest.mark.parametrize(
    "fn", [42, "noop", None, [noop], {"fn": noop}], ids=["int", "str", "None", "list", "dict"]
)
async def test_submit_rejects_non_callable(fn: Any) -> None:
    """Something that is not callable (hashable or not) is refused with a TypeError naming fn."""
    async with asyncq.Pool(workers=1) as pool:
        with pytest.raises(TypeError, match=r"fn must be an async function"):
            pool.submit_nowait(fn)
        with pytest.raises(TypeError, match=r"fn must be an async function"):
            await pool.submit(fn)
        assert pool.stats().submitted == 0


@dataclasses.dataclass
class AsyncCallable:
    """An async callable object; a dataclass with ``eq=True``, so it is unhashable."""

    value: int

    async def __call__(self) -> int:
        return self.value


async def test_submit_accepts_unhashable_async_callable() -> None:
    """An object with an ``async def __call__`` is a valid job function, hashable or not."""
    async with asyncq.Pool(workers=1) as pool:
        job = pool.submit_nowait(AsyncCallable(7))
        assert await job == 7


# -- close(...) and run(...) -------------------------------------------------------------


async def test_close_rejects_bad_arguments_and_leaves_pool_running() -> None:
    """``close(timeout=-1)`` and ``close(drain="yes")`` fail at the call; the pool still runs."""
    async with asyncq.Pool(workers=1) as pool:
        with pytest.raises(ValueError, match=r"timeout must be None or a finite number"):
            await pool.close(timeout=-1)
        with pytest.raises(TypeError, match=r"drain must be a bool"):
            await pool.close(drain="yes")  # type: ignore[arg-type]
        assert pool.state is asyncq.PoolState.RUNNING
        assert await pool.submit_nowait(noop) is None


@pytest.mark.parametrize("main", [42, noop, asyncio.sleep])
def test_run_rejects_non_coroutine(main: Any) -> None:
    """``asyncq.run`` takes a coroutine object; a function or a number is a TypeError."""
    with pytest.raises(TypeError, match=r"main must be a coroutine object"):
        asyncq.run(main)


@pytest.mark.parametrize(("grace", "error"), [(NAN, ValueError), (-1, ValueError),
                                              (INF, ValueError), ("1", TypeError)])
def test_run_rejects_bad_grace_and_closes_the_coroutine(
    grace: Any, error: type[Exception]
) -> None:
    """A bad ``grace`` is refused before anything runs, and ``main`` is closed, not leaked."""
    coro = noop()
    with pytest.raises(error, match=r"grace must be a finite number of seconds >= 0"):
        asyncq.run(coro, grace=grace)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


# -- using the pool from the wrong place or at the wrong time ----------------------------


async def test_submit_from_another_thread_raises_wrong_loop() -> None:
    """``submit_nowait`` called from another thread raises ``WrongLoop`` and admits nothing."""
    async with asyncq.Pool(workers=1) as pool:
        with pytest.raises(asyncq.WrongLoop, match=r"another event loop"):
            await asyncio.to_thread(pool.submit_nowait, noop)

        caught: list[BaseException] = []

        def from_thread() -> None:
            try:
                pool.submit_nowait(noop)
            except BaseException as exc:
                caught.append(exc)

        thread = threading.Thread(target=from_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
        assert len(caught) == 1
        assert isinstance(caught[0], asyncq.WrongLoop)
        assert isinstance(caught[0], RuntimeError)
        assert pool.stats().submitted == 0


async def test_submit_from_a_loop_in_another_thread_raises_wrong_loop() -> None:
    """``await pool.submit`` on an event loop running in another thread raises ``WrongLoop``."""
    async with asyncq.Pool(workers=1) as pool:

        def other_loop() -> None:
            asyncio.run(pool.submit(noop))

        with pytest.raises(asyncq.WrongLoop):
            await asyncio.to_thread(other_loop)
        assert pool.stats().submitted == 0


@pytest.mark.parametrize("factory", LOOP_FACTORIES.values(), ids=LOOP_FACTORIES.keys())
def test_submit_on_a_different_loop_in_the_same_thread_raises_wrong_loop(factory: Any) -> None:
    """A pool started on one loop refuses jobs from a second loop of the same thread."""
    home, other = factory(), factory()
    try:
        pool = asyncq.Pool(workers=1)
        home.run_until_complete(pool.start())
        with pytest.raises(asyncq.WrongLoop):
            other.run_until_complete(pool.submit(noop))

        async def nowait() -> None:
            pool.submit_nowait(noop)

        with pytest.raises(asyncq.WrongLoop):
            other.run_until_complete(nowait())
        assert pool.stats().submitted == 0
        home.run_until_complete(pool.close())
    finally:
        other.close()
        home.close()


async def test_submit_before_start_raises_pool_not_started() -> None:
    """Submitting to a pool that was never started raises ``PoolNotStarted``."""
    pool = asyncq.Pool(workers=1)
    with pytest.raises(asyncq.PoolNotStarted, match=r"not started"):
        await pool.submit(noop)
    with pytest.raises(asyncq.PoolNotStarted, match=r"not started"):
        pool.submit_nowait(noop)
    with pytest.raises(asyncq.PoolNotStarted):
        pool.options(delay=1).submit_nowait(noop)


async def test_submit_after_close_raises_pool_closed() -> None:
    """Once closed, a pool admits nothing: ``PoolClosed`` from every submit path."""
    async with asyncq.Pool(workers=1) as pool:
        pass
    assert pool.state is asyncq.PoolState.CLOSED
    with pytest.raises(asyncq.PoolClosed, match=r"closed"):
        await pool.submit(noop)
    with pytest.raises(asyncq.PoolClosed, match=r"closed"):
        pool.submit_nowait(noop)
    with pytest.raises(asyncq.PoolClosed, match=r"closed"):
        await pool.options(timeout=1).submit(noop)


async def test_starting_twice_raises_runtime_error() -> None:
    """Starting a running pool again is a ``RuntimeError``; restarting a closed one too."""
    pool = asyncq.Pool(workers=1)
    async with pool:
        with pytest.raises(RuntimeError, match=r"already started"):
            await pool.start()
        with pytest.raises(RuntimeError, match=r"already started"):
            async with pool:
                pass
        assert pool.state is asyncq.PoolState.RUNNING
    with pytest.raises(RuntimeError):
        await pool.start()
