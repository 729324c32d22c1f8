"""Running a plain (blocking) function from a job, in a worker thread."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")


def in_thread(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """Wrap a blocking function so a pool runs it in a worker thread (anyio's thread pool).

    ``pool.submit(asyncq.in_thread(resize_image), path)``. A pool refuses plain functions
    so that nothing blocks the event loop by accident; this is the explicit way in.

    A thread cannot be interrupted: when the attempt is cancelled or times out, the pool
    waits for the function to return before the attempt ends, so attempts never overlap.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__} {fn!r}")
    if asyncio.iscoroutinefunction(fn):
        raise TypeError(f"fn must be a plain function; {fn!r} is already async")

    @functools.wraps(fn)
    async def run_in_thread(*args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs)
        future = asyncio.ensure_future(anyio.to_thread.run_sync(call))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await _outlast(future)
            raise

    return run_in_thread


async def _outlast(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` to finish, absorbing further cancellations (re-raised by caller)."""
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            continue
    if not future.cancelled():
        future.exception()  # retrieved: the caller is raising the cancellation instead
