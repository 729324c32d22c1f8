"""Admission: the bound on held jobs, waiting producers, and the gates on the way in.

Admission is bounded by one counter, ``taken``: the slots of ``maxsize`` in use, that is
waiting + delayed jobs plus slots reserved for producers about to be admitted. A new job
is admitted only while ``taken < maxsize``. A retry moves a job from running back to
waiting or delayed without asking for room, so the jobs held at any moment (waiting +
delayed + running) never exceed ``maxsize + workers``. Producers that find the pool full
wait in FIFO order; a slot freed for one of them is reserved for it, so a late producer
cannot barge in (and while any producer waits, ``taken >= maxsize``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from asyncq._errors import DependencyFailed, JobCancelled, PoolClosed, QueueFull, WrongLoop
from asyncq._job import DELAYED, SUCCEEDED, Job, job_class_for, make_job
from asyncq._options import JobOptions
from asyncq._stats import SAMPLE_GAP_MAX, next_sample_mask
from asyncq._validate import check_job_function

if TYPE_CHECKING:
    from asyncq._balance import Balancer
    from asyncq._timers import TimerQueue

NO_KWARGS: dict[str, Any] = {}
_CHECKED_MAX = 512


class Admission:
    """The way into a pool: checks, the ``maxsize`` bound, FIFO producers, key and
    dependency gates, and the hand-off to the ready queue, a lane or the timer."""

    # Slots, not an instance dict: the hot path reads and writes these on every job.
    __slots__ = (
        "balancing", "bounded", "checked", "clock", "delayed", "job_class", "loop", "maxsize",
        "open", "plain_retries",
        "putters", "reserved", "sample_check", "sample_mask", "sampled_at", "seq", "taken",
        "thread", "thread_of", "watch",
    )

    # Owned by the core, used here (set in ``Core.__init__``).
    ready: deque[Job[Any]]
    idle: list[asyncio.Future[None]]
    delayed: int
    timers: TimerQueue
    balancer: Balancer
    balancing: bool
    watch: bool
    plain_ok: bool
    copy_context: bool

    if TYPE_CHECKING:
        def abort_waiting(self, job: Job[Any], error: JobCancelled) -> None: ...
        def cancel_job(self, job: Job[Any], reason: str = "cancelled") -> bool: ...

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int | None) -> None:
        self.loop = loop
        # Submitting is allowed from this thread while ``loop`` runs: then, and only then,
        # the running loop is ``loop`` (one loop runs per thread at a time). Checking the
        # thread id and ``is_running()`` costs less than ``asyncio.get_running_loop()``.
        self.thread = threading.get_ident()
        # asyncio's own loops keep the id of the thread running them (None when stopped):
        # reading it is cheaper than calling their is_running(), a Python method. Other
        # loops (uvloop's is_running() is C) are asked.
        self.thread_of: Any = (
            loop if isinstance(loop, asyncio.BaseEventLoop) and hasattr(loop, "_thread_id")
            else None
        )
        # An int either way: the submit fast path compares it with an int on every job.
        self.maxsize = sys.maxsize if maxsize is None else maxsize
        self.bounded = maxsize is not None
        self.putters: deque[asyncio.Future[bool]] = deque()
        self.taken = 0
        self.reserved = 0
        self.open = True
        self.seq = 0
        self.checked: dict[Any, bool] = {}
        self.job_class = job_class_for(self)
        self.clock = loop.time  # for the timed samples
        self.sample_mask = 0  # time every job until they come fast (see _stats)
        self.sampled_at = -math.inf
        self.sample_check: asyncio.TimerHandle | None = None

    def check_open(self) -> None:
        """Raise unless a job may be submitted from here, now."""
        if threading.get_ident() != self.thread or not self.loop.is_running():
            self.check_loop()  # the cheap test failed: find out exactly what is wrong
        if not self.open:
            raise PoolClosed("the pool is closed and admits no more jobs")

    def check_loop(self) -> None:
        """Raise ``WrongLoop`` unless the loop running in this thread is the pool's."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not self.loop:
            raise WrongLoop(
                "this pool runs on another event loop; submit from a task on the pool's own "
                "loop (use asyncio.run_coroutine_threadsafe from other threads)"
            )

    def full(self) -> bool:
        """Whether a new job would have to wait for room (or queue behind waiting producers)."""
        return self.taken >= self.maxsize

    async def wait_room(self) -> None:
        """Wait, in FIFO order with other producers, until a slot is reserved for us."""
        waiter: asyncio.Future[bool] = self.loop.create_future()
        self.putters.append(waiter)
        try:
            has_room = await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):  # room_freed or close may have taken it
                    self.putters.remove(waiter)
            elif waiter.result():  # a slot was reserved for us: hand it on
                self.reserved -= 1
                self.taken -= 1
                self.room_freed()
            raise
        if not has_room:
            raise PoolClosed("the pool closed while this producer waited for room")
        self.reserved -= 1
        self.taken -= 1  # admit() takes the slot again
        if not self.open:
            raise PoolClosed("the pool closed while this producer waited for room")

    def room_freed(self) -> None:
        """Reserve freed slots for the longest-waiting producers."""
        putters = self.putters
        while putters and self.taken < self.maxsize:
            waiter = putters.popleft()
            if not waiter.done():
                self.taken += 1
                self.reserved += 1
                waiter.set_result(True)

    def admit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        options: JobOptions,
    ) -> Job[Any]:
        """Create and place a job; the caller has checked the bound."""
        try:
            known = fn in self.checked
        except TypeError:  # unhashable callables are checked every time
            known = False
        if not known or options.after:
            self.vet(fn, options)
        self.seq = seq = self.seq + 1
        # An empty **kwargs dict is a fresh object each call; holding one per queued job
        # only feeds the garbage collector, so every such job shares one (never mutated).
        # Jobs are made here only, WAITING with every field set; no one awaits them yet.
        job: Job[Any] = make_job(self.job_class, seq, fn, args, kwargs or NO_KWARGS, options)
        self.taken += 1
        if not seq & self.sample_mask or self.copy_context:
            extra = job.more()
            if not seq & self.sample_mask:  # a timed job
                extra.t0 = now = self.clock()
                self.sample_mask = next_sample_mask(self.sample_mask, now - self.sampled_at)
                self.sampled_at = now
                if self.sample_mask and self.sample_check is None:
                    self.sample_check = self.loop.call_later(SAMPLE_GAP_MAX, self.check_sampling)
            if self.copy_context:
                extra.context = contextvars.copy_context()
        if not (options.plain and self.plain_ok):
            self.admit_balanced(job)
        elif options.delay:
            job.state = DELAYED
            self.delayed += 1
            self.timers.schedule(options.delay, job)
        else:
            self.ready.append(job)
            if self.idle:
                self.wake_worker()
        return job

    def check_sampling(self) -> None:
        """While jobs are timed one in many: if none was timed lately, time the next one.

        The mask only adapts when a job is timed, so after a burst the next timed job could
        be a thousand admissions away however slowly they now come; this timer, armed while
        the mask is above zero, resets it once no job has been timed for ``SAMPLE_GAP_MAX``.
        """
        if self.clock() - self.sampled_at > SAMPLE_GAP_MAX:
            self.sample_mask = 0
        self.sample_check = (self.loop.call_later(SAMPLE_GAP_MAX, self.check_sampling)
                             if self.sample_mask and self.open else None)

    def check_dependencies(self, options: JobOptions) -> None:
        """Dependencies must be jobs of this pool, or have succeeded already (a succeeded
        job has let go of its pool, and leaves nothing to wait for)."""
        for dependency in options.after:
            if dependency.state is not SUCCEEDED and dependency._owner is not self:
                raise ValueError(f"after: job {dependency.id} belongs to another pool")

    def admit_balanced(self, job: Job[Any]) -> None:
        """Send a job through its gates: key, then dependencies, then delay, then lane."""
        if not self.balancing:
            self.balancing = self.watch = True
            self.plain_retries = False
        options = job.options
        if options.key is not None and not self.balancer.claim_key(job):
            return  # queued behind its key's holder; released in finished()
        if options.key_only and self.plain_ok:  # nothing but a key: to the ready queue
            self.ready.append(job)
            if self.idle:
                self.wake_worker()
        else:
            self.past_key(job)

    def past_key(self, job: Job[Any]) -> None:
        """The job holds its key (or has none): wait for dependencies, then go on."""
        if job.options.after:
            failed = self.balancer.wait_for(job)
            if failed is not None:
                self.abort_waiting(job, DependencyFailed(job.id, failed.id))
                return
            if job in self.balancer.blocked:
                return  # released in finished() of its last dependency
        self.past_dependencies(job)

    def past_dependencies(self, job: Job[Any]) -> None:
        """Ready but for its delay: onto the timer, or into its lane."""
        delay = job.options.delay
        if delay and not job.attempts:
            job.state = DELAYED
            self.delayed += 1
            self.timers.schedule(delay, job)
        else:
            self.enqueue(job)

    def enqueue(self, job: Job[Any], *, front: bool = False) -> None:
        """A waiting job joins the ready queue or its lane (at the back, or at the front
        for a zero-delay retry: it runs next); wake a worker for it."""
        if self.balancing and self.balancer.uses_lane(job):  # lanes exist only if balancing
            self.balancer.place(job, front=front)
        elif front:
            self.ready.appendleft(job)
        else:
            self.ready.append(job)
        if self.idle:
            self.wake_worker()

    def vet(self, fn: Callable[..., Any], options: JobOptions) -> None:
        """Refuse what admission would refuse, before a producer waits for room."""
        try:
            known = fn in self.checked
        except TypeError:  # unhashable callables are checked every time
            known = False
        if not known:
            self.remember_checked(fn)
        if options.after:
            self.check_dependencies(options)

    def remember_checked(self, fn: Callable[..., Any]) -> None:
        """Validate a job function once; later submits of it skip the check."""
        check_job_function(fn)
        checked = self.checked
        if len(checked) >= _CHECKED_MAX:
            checked.clear()
        with contextlib.suppress(TypeError):  # unhashable: not remembered
            checked[fn] = True

    def refuse_nowait(self) -> NoReturn:
        """Raise ``QueueFull`` for ``submit_nowait`` on a full pool."""
        raise QueueFull(
            f"the pool holds {self.taken - self.reserved} jobs not yet running "
            f"(maxsize={self.maxsize}); use 'await submit(...)' to wait for room"
        )

    def wake_worker(self) -> None:
        """Wake one parked worker."""
        idle = self.idle
        while idle:
            waiter = idle.pop()
            if not waiter.done():
                waiter.set_result(None)
                return
