"""``asyncq.run``: run a program on uvloop where installed, closing pools on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from asyncq._errors import JobCancelled, PoolClosed
from asyncq._pool import Pool, running_pools
from asyncq._validate import check_seconds

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when uvloop is installed, else ``None`` (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, grace: float = 10.0) -> T:
    """Run ``main`` to completion on uvloop (if installed) or asyncio's default loop.

    On the first SIGINT or SIGTERM every running pool stops admitting and drains for at
    most ``grace`` seconds, then what is left is cancelled and ``main`` is cancelled; the
    process then exits with status 128 + the signal number (``SystemExit``), every job
    resolved. A second signal cancels everything at once.
    """
    if not asyncio.iscoroutine(main):
        raise TypeError(f"main must be a coroutine object, got {type(main).__name__}")
    try:
        grace = check_seconds("grace", grace)
    except (TypeError, ValueError):
        main.close()
        raise
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_supervise(main, grace))


class _Signals:
    """What the signal handlers have seen, and the task closing pools for them."""

    def __init__(self, main: asyncio.Task[Any], grace: float) -> None:
        self.main = main
        self.grace = grace
        self.signum: int | None = None
        self.closer: asyncio.Task[None] | None = None
        self.escalation: asyncio.Task[None] | None = None

    def received(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self.closer = asyncio.get_running_loop().create_task(self.close(self.grace))
        else:
            self.escalation = asyncio.get_running_loop().create_task(
                self.close(None, drain=False))

    async def close(self, grace: float | None, *, drain: bool = True) -> None:
        loop = asyncio.get_running_loop()
        pools: list[Pool] = [p for p in list(running_pools) if p._core is not None
                             and p._core.loop is loop]
        kwargs: dict[str, Any] = {"drain": drain, "timeout": grace or None}
        if drain and not grace:
            kwargs["drain"] = False
        await asyncio.gather(*(p.close(**kwargs) for p in pools), return_exceptions=True)
        self.main.cancel()


_SHUTDOWN = (asyncio.CancelledError, PoolClosed, JobCancelled)


def _shutdown_only(exc: BaseException) -> bool:
    """Whether ``exc`` (or every leaf of an exception group) is a shutdown error."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(_SHUTDOWN)[1] is None
    return isinstance(exc, _SHUTDOWN)


async def _supervise(main: Coroutine[Any, Any, T], grace: float) -> T:
    loop = asyncio.get_running_loop()
    task = loop.create_task(main)
    signals = _Signals(task, grace)
    handled: list[int] = []
    if threading.current_thread() is threading.main_thread() and sys.platform != "win32":
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signals.received, int(sig))
            handled.append(sig)
    try:
        try:
            result = await task
        except (asyncio.CancelledError, PoolClosed, JobCancelled, BaseExceptionGroup) as exc:
            # After a signal these are the shutdown we asked for, not a failure of main
            # (also when a task group gathered them).
            if signals.signum is None or not _shutdown_only(exc):
                raise
        if signals.signum is None:
            return result
        if signals.closer is not None:
            await signals.closer
        raise SystemExit(128 + signals.signum)
    finally:
        for number in handled:
            loop.remove_signal_handler(number)
