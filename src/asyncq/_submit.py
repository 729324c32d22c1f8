"""Submitting jobs: ``submit``, ``submit_nowait``, ``map`` and ``options``.

:class:`Submitter` is what ``pool.options(...)`` returns; :class:`asyncq.Pool` is itself
a submitter with the pool's default options.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable, Iterable
from threading import get_ident
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from asyncq._core import Core, not_started
from asyncq._job import Job
from asyncq._options import _UNSET, JobOptions

if TYPE_CHECKING:
    from asyncq._retry import Retry

P = ParamSpec("P")
T = TypeVar("T")

_UNBOUNDED_MAP_WINDOW = 1024


class _CoreSource(Protocol):
    """Anything that can hand out the running core (the pool)."""

    _core: Core | None
    _workers: int


class Submitter:
    """Submits jobs with a fixed set of :class:`JobOptions` to one pool."""

    __slots__ = ("_options", "_owner")

    def __init__(self, owner: _CoreSource, options: JobOptions) -> None:
        self._owner = owner
        self._options = options

    def options(
        self,
        *,
        delay: float = _UNSET,
        timeout: float | None = _UNSET,
        retry: Retry | None = _UNSET,
        key: Hashable | None = _UNSET,
        priority: int = _UNSET,
        group: Hashable | None = _UNSET,
        after: Job[Any] | Iterable[Job[Any]] = _UNSET,
    ) -> Submitter:
        """A submitter whose jobs use these options; the others stay as they are here.

        ``delay``: seconds before the first attempt may start (a timer; no worker waits).
        ``timeout``: seconds each attempt may run before it is cancelled and counted as a
        failed attempt with ``TimeoutError`` (``None``: no limit).
        ``retry``: the :class:`asyncq.Retry` policy (``None``: a single attempt).
        ``key``: jobs sharing a key never overlap and start in submission order; a retry
        keeps the key, so later jobs of the key wait for it. Other keys keep flowing.
        ``priority``: an int, higher first; FIFO within a priority.
        ``group``: the fair-share group (weights from ``Pool(group_weights=...)``).
        ``after``: jobs that must all succeed first; if one dies or is cancelled, this job
        never runs and ends ``CANCELLED`` with ``asyncq.DependencyFailed``.
        """
        if after is not _UNSET:
            after = check_after(after)
        return Submitter(self._owner, self._options.derive(
            delay=delay, timeout=timeout, retry=retry, key=key, priority=priority,
            group=group, after=after))

    async def submit(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]:
        """Submit ``fn(*args, **kwargs)``; wait while the pool is full; return its job.

        Producers that wait are admitted in the order they arrived. Raises ``PoolClosed``
        when the pool is closed, or closes while this call waits.
        """
        core = self._owner._core
        if (core is not None and core.taken < core.maxsize and core.open
                and (get_ident() == core.thread_of._thread_id if core.thread_of is not None
                     else get_ident() == core.thread and core.loop.is_running())):
            return core.admit(fn, args, kwargs, self._options)  # the fast path: room, no queue
        if core is None:
            raise not_started()
        core.check_open()
        if core.full():
            core.vet(fn, self._options)  # refuse now what admit would refuse after the wait
            await core.wait_room()
        return core.admit(fn, args, kwargs, self._options)

    def submit_nowait(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]:
        """Submit without waiting: raise ``asyncq.QueueFull`` when the pool is full."""
        core = self._owner._core
        if (core is not None and core.taken < core.maxsize and core.open
                and (get_ident() == core.thread_of._thread_id if core.thread_of is not None
                     else get_ident() == core.thread and core.loop.is_running())):
            return core.admit(fn, args, kwargs, self._options)  # the fast path: room
        if core is None:
            raise not_started()
        core.check_open()
        core.refuse_nowait()

    async def map(
        self,
        fn: Callable[..., Awaitable[T]],
        iterable: Iterable[Any] | AsyncIterable[Any],
        /,
        **kwargs: Any,
    ) -> list[T]:
        """Run ``fn(item, **kwargs)`` for every item; return the results in input order.

        The iterable (sync or async) is consumed as room allows, so a huge or endless
        source is never turned into jobs up front: at most ``maxsize + workers`` of this
        call's jobs are in flight. If a job dies, its error is raised and this call's
        remaining jobs are cancelled; if this call is cancelled, so are they.
        """
        owner = self._owner
        core = owner._core
        limit = _UNBOUNDED_MAP_WINDOW if core is None or not core.bounded \
            else core.maxsize + owner._workers
        window: deque[Job[T]] = deque()
        results: list[T] = []
        try:
            async for item in _items(iterable):
                window.append(await self.submit(fn, item, **kwargs))
                while window and (len(window) >= limit or window[0].done()):
                    results.append(await window.popleft())
            while window:
                results.append(await window.popleft())
        except BaseException:
            for job in window:
                job.cancel()
            raise
        return results


async def _items(iterable: Iterable[Any] | AsyncIterable[Any]) -> Any:
    if isinstance(iterable, AsyncIterable):
        async for item in iterable:
            yield item
    elif isinstance(iterable, Iterable):
        for item in iterable:
            yield item
    else:
        raise TypeError(f"iterable must be an iterable or async iterable, got "
                        f"{type(iterable).__name__}")


def check_after(value: object) -> tuple[Job[Any], ...]:
    """An iterable of jobs (a single job is accepted too)."""
    if isinstance(value, Job):
        return (value,)
    if value is None:
        return ()
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise TypeError(f"after must be a job or an iterable of jobs, got {value!r}")
    jobs = tuple(value)
    for job in jobs:
        if not isinstance(job, Job):
            raise TypeError(f"after must hold asyncq.Job handles, got {type(job).__name__}")
    return jobs
