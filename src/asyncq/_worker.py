"""A worker: take a job, run an attempt, classify the outcome, route it.

Attempts run inline in the worker's own task (no task per job), which is where most of
the pool's speed comes from. Cancelling an attempt — on ``job.cancel()``, on a timeout, or
at shutdown — cancels the worker's task while the attempt runs and takes the cancellation
back (``Task.uncancel``) once the attempt has ended, so the worker lives on.

Fair to the loop: a worker that keeps finding jobs waiting runs at most
:data:`YIELD_EVERY` attempts back to back, then yields to the event loop once, so other
tasks, timers and I/O run even when jobs never suspend.

A retry with no delay runs next: the worker runs the next attempt at once, unless it must
yield first (its budget is spent) or is retiring; then the job goes to the front of the
queue.
"""

from __future__ import annotations

import asyncio
import weakref
from contextvars import ContextVar
from time import time as wall_clock  # bound once: the short retry path reads it
from typing import Any

from asyncq._admission import NO_KWARGS
from asyncq._context import run_in_context
from asyncq._core import Core
from asyncq._job import RUNNING, WAITING, Job, finish, wake

#: Attempts a worker may run back to back before it yields to the event loop.
YIELD_EVERY = 64

# The worker behind each running worker task, for current_job(). Weak both ways: a pool
# that is dropped, or whose loop is closed under it, must not be kept alive by this map
# (a worker refers to its task, so a strong value would keep the key alive too).
_by_task: weakref.WeakKeyDictionary[asyncio.Task[None], weakref.ref[Worker]] = (
    weakref.WeakKeyDictionary())


def current_job() -> Job[Any] | None:
    """The job whose attempt is running in the current task, or ``None``.

    Called from a job's own code (directly, or from functions it calls and awaits), this
    is that job's handle: its ``id``, ``attempts`` and ``options``. Tasks that a job
    spawns are not worker tasks, so there it is ``None``. Outside a running event loop it
    is ``None`` too.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None
    ref = None if task is None else _by_task.get(task)
    worker = None if ref is None else ref()
    return None if worker is None else worker.job


class Worker:
    """One coroutine worker of a pool."""

    __slots__ = ("__weakref__", "cancels", "core", "flagged", "job", "parked", "retiring",
                 "started", "task", "timed_out")

    def __init__(self, core: Core) -> None:
        self.core = core
        self.job: Job[Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancels = 0  # task.cancel() calls made for the running attempt
        self.flagged = False  # the running attempt was cancelled or timed out: route it
        self.timed_out = False
        self.retiring = False
        self.started = False
        self.parked: asyncio.Future[None] | None = None

    def start(self, job_id_var: ContextVar[Any] | None) -> asyncio.Task[None]:
        """Start the worker's task; with ``job_id_var``, bind each job's id in it."""
        task = self.core.loop.create_task(self.run(job_id_var))
        self.task = task
        task.add_done_callback(self.ended)
        return task

    def ended(self, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never ran ``run()``: stop the pool here
        instead, as ``run()`` would have, so every job still resolves."""
        if not self.started and task.cancelled():
            self.core.abandon("cancelled: the pool's workers were cancelled")

    async def run(self, job_id_var: ContextVar[Any] | None) -> None:
        """The worker's task: take a job, run an attempt, route the outcome (a retry with
        no delay: the next attempt, at once); park when there is no job; stop when the
        pool stops or the worker retires.

        If this task is cancelled from outside (the loop is shutting down with the pool
        still open), the pool stops and every job resolves. The loop is written out here,
        not in a coroutine of its own, because every level of ``await`` between the task
        and a job's code is paid again each time the job suspends and resumes. For the
        same reason the two commonest routes are written out too, a plain success and a
        zero-delay retry decided without user code: each does what ``Outcomes.succeed`` or
        ``Outcomes.fail`` would, less a call (3% of a retried job in the retry benchmark),
        and the retry's next attempt runs in the same pass, without the trip through the
        queue (8% fewer instructions per retried job than queueing it).
        """
        core = self.core
        balancer = core.balancer
        ready = core.ready
        special = core.copy_context or job_id_var is not None  # every job takes run_special
        budget = YIELD_EVERY
        self.started = True
        task = self.task or asyncio.current_task()  # None while an eager task factory runs us
        assert task is not None
        self.task = task
        _by_task[task] = weakref.ref(self)
        try:
            while not self.retiring:
                if balancer.count:  # prioritised, grouped or rate-limited jobs wait in lanes
                    taken = balancer.take(ready)
                    if taken is None:  # held back by a rate limit: a timer wakes a worker
                        if not await core.park(self):
                            break
                        continue
                    job = taken
                    if balancer.count and core.idle:
                        core.wake_worker()  # more work may be allowed now: share it
                elif ready:
                    job = ready.popleft()
                else:
                    self.check_cancelled()
                    if not await core.park(self):
                        break
                    budget = YIELD_EVERY
                    continue
                if job.state is not WAITING:
                    core.drop_stale()
                    continue
                # take it: WAITING -> RUNNING (legal: the worker found it WAITING)
                job.state = RUNNING
                job.attempts += 1
                self.job = job
                core.taken -= 1
                if core.putters or job.extra is not None or core.debug:
                    core.begin(job)  # room for a waiting producer, a latency sample, a log event
                while True:  # one attempt per pass; again only for a retry at once
                    try:
                        if job.options.timeout is not None or special:
                            result = await self.run_special(job, job_id_var)
                        elif job.kwargs is NO_KWARGS:
                            result = await job.fn(*job.args)  # type: ignore[misc]
                        else:
                            result = await job.fn(*job.args, **job.kwargs)  # type: ignore[misc, arg-type]
                    except asyncio.CancelledError as error:  # first: it may be an Exception too
                        self.job = None
                        self.route(job, None, error)
                    except Exception as error:
                        self.job = None
                        if self.flagged or task.cancelling():
                            self.route(job, None, error)
                        else:  # the job's own failure, nothing interrupted it (see route)
                            policy = job.options.retry
                            cls = type(error)
                            if (job.attempts < policy.attempts and core.plain_retries
                                    and type(cls) is type  # so hashed by identity, below
                                    and (core.at_once.get(cls) is policy
                                         or core.learn_at_once(cls, policy))
                                    and job.extra is None):  # no cancel request, no sample
                                # the short retry path: what Outcomes.fail does, the long way
                                core.retried += 1  # and so, one more failed attempt
                                if job.first_failed_at is None:
                                    job.first_failed_at = wall_clock()
                                if budget > 1 and not self.retiring:  # the next attempt, here
                                    budget -= 1
                                    job.attempts += 1
                                    self.job = job
                                    continue
                                # out of budget, or retiring (rare): first in the queue
                                core.taken += 1
                                job.state = WAITING  # RUNNING -> WAITING: we own the job
                                core.enqueue(job, front=True)
                            else:
                                core.fail(job, error)
                    except BaseException as error:
                        self.job = None
                        self.route_fatal(job, error)
                        if self.retiring:
                            core.retired(self)
                        return  # the pool is stopping
                    else:
                        self.job = None
                        if self.flagged:
                            self.route(job, result, None)
                        elif job.extra is not None or core.watch:
                            core.succeed(job, result)  # a latency sample, a log event, a key...
                        else:  # the common case, inline: RUNNING -> SUCCEEDED (as Outcomes.succeed)
                            waiters = finish(job, result, job.options.inert)
                            if waiters is not None:
                                wake(waiters)
                            core.succeeded += 1
                    break
                budget -= 1
                if not budget:
                    budget = YIELD_EVERY
                    self.check_cancelled()
                    await asyncio.sleep(0)
            if self.retiring:
                core.retired(self)
        except asyncio.CancelledError:
            core.abandon("cancelled: the pool's workers were cancelled")
            raise
        finally:
            _by_task.pop(task, None)  # already gone if the task is being collected

    def retire(self) -> None:
        """Stop after the current attempt (at once if idle)."""
        self.retiring = True
        if self.parked is not None and not self.parked.done():
            self.parked.set_result(None)

    def check_cancelled(self) -> None:
        """Raise if our task was cancelled from outside and a job swallowed it."""
        assert self.task is not None
        if self.task.cancelling():
            raise asyncio.CancelledError

    async def run_special(self, job: Job[Any], job_id_var: ContextVar[Any] | None) -> Any:
        """Run one attempt under a deadline on the loop's clock, in the job's own context
        (``Pool(copy_context=True)``), with its id bound for structlog
        (``Pool(bind_job_id=True)``), or any of these."""
        handle = None
        fn, args, kwargs = job.fn, job.args, job.kwargs
        assert fn is not None, "a running job has its function and arguments"
        assert args is not None
        assert kwargs is not None
        timeout = job.options.timeout
        if timeout is not None:
            handle = self.core.loop.call_later(timeout, self.expire, job)
        try:
            if self.core.copy_context:
                context = job.more().context
                assert context is not None  # copied at admission
                if job_id_var is not None:
                    context.run(job_id_var.set, job.id)
                coro = context.run(fn, *args, **kwargs)
                return await run_in_context(context, coro)
            if job_id_var is not None:
                job_id_var.set(job.id)
            return await fn(*args, **kwargs)
        finally:
            if handle is not None:
                handle.cancel()

    def expire(self, job: Job[Any]) -> None:
        """The attempt's deadline passed: cancel it; it will count as a ``TimeoutError``."""
        if self.job is job:
            self.timed_out = True
            self.interrupt()

    def cancel_attempt(self, job: Job[Any]) -> None:
        """Cancel the running attempt of ``job`` on request (``job.cancel()``, shutdown)."""
        if self.job is job and not job.cancel_requested():
            job.more().cancel_requested = True
            if asyncio.current_task() is self.task:
                self.flagged = True  # the job cancels itself: it ends CANCELLED on return
            else:
                self.interrupt()

    def interrupt(self) -> None:
        """Cancel our task while the attempt runs; counted so it can be taken back."""
        assert self.task is not None
        self.cancels += 1
        self.flagged = True
        self.task.cancel()

    def take_back_cancels(self) -> bool:
        """Undo our own cancellations; True if the task is being cancelled from outside."""
        task = self.task
        assert task is not None
        for _ in range(self.cancels):
            task.uncancel()
        self.cancels = 0
        self.flagged = False
        return task.cancelling() > 0

    def route(self, job: Job[Any], result: Any, error: BaseException | None) -> None:
        """Classify an attempt that raised or was interrupted, and route it.

        Cancelled on request wins over everything (the job ends ``CANCELLED`` whatever the
        attempt did); then a cancellation of the worker's own task from outside (the job is
        cancelled and the cancellation goes on, ending the worker, whatever the job made of
        it); then the timeout (a failed attempt with ``TimeoutError``, even if the attempt
        swallowed the cancellation); then a ``CancelledError`` of the job's own making (it
        ends ``CANCELLED``); then the job's result or error.
        """
        core = self.core
        task = self.task
        assert task is not None
        if not self.flagged and not task.cancelling():
            # The common case: nothing interrupted the attempt (no cancel request, no
            # timeout, no cancellation of ours or from outside): the job's own outcome.
            if isinstance(error, asyncio.CancelledError):
                core.settle_cancelled(job, "cancelled: its code raised CancelledError")
            elif error is None:
                core.succeed(job, result)
            else:
                core.fail(job, error)
            return
        timed_out, self.timed_out = self.timed_out, False
        external = self.take_back_cancels()
        if job.cancel_requested():
            core.settle_cancelled(job, "cancelled")
        elif external:
            core.settle_cancelled(job, "cancelled: its worker was cancelled")
        elif timed_out:
            core.fail(job, TimeoutError(
                f"job {job.id} attempt {job.attempts} timed out after {job.options.timeout:g}s"))
        elif isinstance(error, asyncio.CancelledError):
            core.settle_cancelled(job, "cancelled: its code raised CancelledError")
        elif error is None:
            core.succeed(job, result)
        else:
            core.fail(job, error)
        if external:
            raise asyncio.CancelledError

    def route_fatal(self, job: Job[Any], error: BaseException) -> None:
        """``KeyboardInterrupt``/``SystemExit`` from a job: bury it and stop the pool."""
        core = self.core
        self.take_back_cancels()
        core.bury(job, error, "fatal")
        core.emergency(error)
