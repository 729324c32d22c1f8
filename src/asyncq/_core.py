"""The pool's engine: the ready queue, timers, routing of outcomes, shutdown.

Every admitted job is owned by exactly one place: the ready queue (``WAITING``), the timer
(``DELAYED``), a worker (``RUNNING``), or nobody once it is terminal. The gauges are read
off those owners (``running`` counts busy workers, ``waiting`` the live jobs in the ready
queue), so ``submitted == succeeded + dead + cancelled + waiting + delayed + running``
holds between any two steps of the event loop.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Hashable, Mapping
from typing import Any

from asyncq._admission import Admission
from asyncq._balance import Balancer
from asyncq._dead import DeadLetter, DeadLetterQueue, qualified_name
from asyncq._errors import (
    DependencyFailed,
    JobCancelled,
    PoolNotStarted,
    RetryLater,
)
from asyncq._job import CANCELLED, DEAD, DELAYED, RUNNING, SUCCEEDED, WAITING, Job, let_go, wake
from asyncq._rate import RateLimit
from asyncq._retry import Retry, retries_at_once
from asyncq._stats import Samples
from asyncq._timers import TimerQueue

_COMPACT_MIN = 64
#: Error classes a pool remembers for the short retry path (it forgets all past this).
AT_ONCE_MAX = 64


class Core(Admission):
    """State shared by the pool facade and its workers (one per pool, one event loop).

    Admission (the bound, producers, the gates on the way in) is in :class:`Admission`;
    here are the workers' hand-offs, the routing of outcomes, cancellation and shutdown.
    """

    __slots__ = (
        "at_once", "balancer", "cancelled", "copy_context", "dead", "dead_letters", "debug",
        "draining", "ended", "failed_finally", "fatal", "handing_on", "idle", "log", "plain_ok",
        "ready", "retried", "rng", "routing", "run_samples", "stale",
        "stopping", "succeeded", "timers", "wait_samples", "workers",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        maxsize: int | None,
        dead_letters: DeadLetterQueue,
        *,
        logger: Any,
        debug: bool,
        rng: random.Random,
        group_weights: Mapping[Hashable, int] | None = None,
        aging: float | None = None,
        rate_limit: RateLimit | None = None,
        group_rate_limits: Mapping[Hashable, RateLimit] | None = None,
        key_rate_limit: RateLimit | None = None,
        copy_context: bool = False,
    ) -> None:
        super().__init__(loop, maxsize)
        self.copy_context = copy_context
        self.ready: deque[Job[Any]] = deque()
        self.timers = TimerQueue(loop, self.release)
        self.idle: list[asyncio.Future[None]] = []
        self.workers: list[Any] = []
        self.stale = 0
        self.stopping = False
        self.draining: asyncio.Future[None] | None = None
        self.fatal: BaseException | None = None
        self.dead_letters = dead_letters
        self.log = logger
        self.debug = debug
        self.rng = rng
        self.balancer = Balancer(
            group_weights or {}, aging, loop.time, later=loop.call_later, wake=self.wake_worker,
            pool_limit=rate_limit, group_limits=group_rate_limits, key_limit=key_rate_limit)
        # Plain jobs skip the balancer unless aging needs every job's enqueue time or a
        # pool-wide rate limit must count every start.
        self.plain_ok = aging is None and rate_limit is None and key_rate_limit is None
        self.balancing = False  # set once a job used keys, dependencies or lanes
        self.plain_retries = not debug  # neither debug nor balancing: the short retry path
        self.ended: deque[Job[Any]] = deque()  # terminal jobs whose key/dependents wait
        self.handing_on = False
        self.watch = debug  # debug or draining or balancing: successes need after_success
        self.wait_samples = Samples()
        self.run_samples = Samples()
        # counters (``submitted`` is ``seq``) and the one gauge not read off an owner
        self.succeeded = self.retried = self.dead = self.cancelled = 0
        self.failed_finally = 0  # failed attempts that were not retried (see failed)
        self.delayed = 0
        self.routing = 0  # failed attempts whose retry decision is running user code
        # Error classes the workers retry at once, each with the policy that said so.
        self.at_once: dict[type[BaseException], Retry] = {}

    @property
    def failed(self) -> int:
        """Failed attempts: each was retried, or was its job's last (one counter fewer to
        move on the retry path)."""
        return self.retried + self.failed_finally

    @property
    def submitted(self) -> int:
        """Jobs admitted so far (each got the next id)."""
        return self.seq

    @property
    def waiting(self) -> int:
        """Admitted jobs neither delayed nor running: queued, behind a key or a dependency."""
        return self.taken - self.reserved - self.delayed

    @property
    def running(self) -> int:
        """Jobs whose attempt is running on a worker (or whose failed attempt is being
        routed: ``retry_on`` and ``backoff`` are user code, which may read ``stats()``)."""
        return sum(1 for worker in self.workers if worker.job is not None) + self.routing

    # -- workers ------------------------------------------------------------------------
    async def park(self, worker: Any) -> bool:
        """Park a worker until there is work; False when it should stop instead."""
        if self.stopping:
            return False
        waiter: asyncio.Future[None] = self.loop.create_future()
        self.idle.append(waiter)
        worker.parked = waiter
        try:
            await waiter
        finally:
            worker.parked = None
        return not self.stopping

    def retired(self, worker: Any) -> None:
        """A retired worker left: pass on any wake-up it may have swallowed."""
        self.workers.remove(worker)
        if (self.ready or self.balancer.count) and self.idle:
            self.wake_worker()

    def begin(self, job: Job[Any]) -> None:
        """A worker took ``job``: hand its slot on, sample its wait, log it."""
        extra = job.extra
        if extra is not None and extra.t0 is not None:
            now = self.clock()
            if job.attempts == 1:
                self.wait_samples.add(now - extra.t0)
            extra.t0 = now
        if self.putters:
            self.room_freed()
        if self.debug:
            self.log.debug("job.started", job_id=job.id, fn=qualified_name(job.fn),
                           attempt=job.attempts)

    def drop_stale(self) -> None:
        """Forget one cancelled job popped from the ready queue."""
        self.stale -= 1

    # -- outcomes ----------------------------------------------------------------------
    def succeed(self, job: Job[Any], result: Any) -> None:
        """The attempt returned: the job has its result."""
        # RUNNING -> SUCCEEDED is legal by construction: the worker owns the job.
        waiters = job._outcome
        job.state = SUCCEEDED
        job._outcome = result
        job.args = job.kwargs = None
        if waiters is not None:
            wake(waiters)
        self.succeeded += 1
        if job.extra is not None or self.watch:
            self.after_success(job)
        let_go(job, job.options.inert)

    def after_success(self, job: Job[Any]) -> None:
        """The rarer parts of a success: a latency sample, a log event, the drain check."""
        extra = job.extra
        if extra is not None:
            if extra.t0 is not None:
                self.run_samples.add(self.clock() - extra.t0)
            job.extra = None  # a finished job needs none of it: keep handles small
        if self.debug:
            self.log.debug("job.succeeded", job_id=job.id, fn=qualified_name(job.fn),
                           attempt=job.attempts)
        if self.balancing:
            self.finished(job)
        if self.draining is not None:
            self.check_drained()

    def finished(self, job: Job[Any]) -> None:
        """A job became terminal: hand on its key, release or cancel its dependents.

        Cancelling a dependent ends another job, and so on down a chain: the jobs are
        handled one after another from a queue, never by recursion.
        """
        if self.handing_on:
            self.ended.append(job)
            return
        self.handing_on = True
        try:
            self.hand_on(job)
            while self.ended:
                self.hand_on(self.ended.popleft())
        finally:
            self.handing_on = False

    def hand_on(self, job: Job[Any]) -> None:
        """What one terminal job releases: its key, and its dependents."""
        balancer = self.balancer
        if job.options.key is not None:
            successor = balancer.release_key(job)
            if successor is not None:
                self.past_key(successor)
        if balancer.dependents and job in balancer.dependents:
            for dependent in balancer.resolved(job):
                if job.state is SUCCEEDED:
                    self.past_dependencies(dependent)
                else:
                    self.abort_waiting(dependent, DependencyFailed(dependent.id, job.id))

    def fail(self, job: Job[Any], error: BaseException) -> None:
        """The attempt raised: retry it on the timer, or bury it in the dead letters.

        A zero-delay retry that needs no user code to decide takes a shorter path, inline
        in ``Worker.run``; this is every other case, and does the same for that one.
        """
        policy = job.options.retry
        self.failed_finally += 1  # until schedule_retry() says otherwise
        extra = job.extra
        if extra is not None and extra.t0 is not None:
            self.run_samples.add(self.clock() - extra.t0)
        if job.first_failed_at is None:
            job.first_failed_at = time.time()
        delay: float | None = None
        self.routing += 1  # still counted while user code below runs
        try:
            if isinstance(error, RetryLater):
                retryable, delay = True, error.delay
            else:
                try:
                    if type(policy) is Retry and type(retry_on := policy.retry_on) is tuple:
                        retryable = isinstance(error, retry_on)  # Retry.retryable, no call
                    else:
                        retryable = policy.retryable(error)
                except Exception as exc:  # a predicate, or an __instancecheck__, that raised
                    self.log.error("job.retry_on_failed", job_id=job.id, error=safe_repr(exc))
                    retryable = False
            if not retryable:
                reason: str | None = "not_retryable"
            elif job.attempts >= policy.attempts:
                reason = "attempts_exhausted"
            else:
                reason = None
                if delay is None:  # Retry.backoff is 0.0 without a delay: skip the call then
                    delay = (0.0 if type(policy) is Retry and policy.delay == 0.0
                             else self.backoff(job, policy))
                    if delay is None:
                        reason = "backoff_failed"
        finally:
            self.routing -= 1
        extra = job.extra  # Job.cancel_requested(), inline: this is the retry path
        if extra is not None and extra.cancel_requested:  # cancel() from predicate/backoff
            self.settle_cancelled(job, "cancelled")  # a cancel request wins, as in route()
        elif reason is not None:
            self.bury(job, error, reason)
        else:
            assert delay is not None
            self.schedule_retry(job, delay, error)

    def learn_at_once(self, cls: type[BaseException], policy: Retry) -> bool:
        """Whether errors of class ``cls`` take the short retry path under ``policy``
        (:func:`retries_at_once`); a yes is remembered in ``at_once`` (a few classes)."""
        if not retries_at_once(policy, cls):
            return False
        if len(self.at_once) >= AT_ONCE_MAX:
            self.at_once.clear()
        self.at_once[cls] = policy
        return True

    def backoff(self, job: Job[Any], policy: Retry) -> float | None:
        """The wait before the job's next attempt, or ``None`` (with an error event) when
        a ``Retry`` subclass's ``backoff`` raised or gave no finite number of seconds >= 0."""
        try:
            delay = policy.backoff(job.attempts, self.rng)
            if (isinstance(delay, int | float) and not isinstance(delay, bool)
                    and math.isfinite(delay) and delay >= 0):
                return float(delay)
            problem = f"backoff returned {safe_repr(delay)}, not a finite number >= 0"
        except Exception as exc:
            problem = f"backoff raised {safe_repr(exc)}"
        self.log.error("job.retry_backoff_failed", job_id=job.id, error=problem)
        return None

    def schedule_retry(self, job: Job[Any], delay: float, error: BaseException) -> None:
        """Queue the next attempt: at once when there is no delay, else on the timer."""
        self.failed_finally -= 1
        self.retried += 1
        self.taken += 1
        # RUNNING -> DELAYED / WAITING are legal by construction: the worker owns the job.
        if delay:
            job.state = DELAYED
            self.delayed += 1
            self.timers.schedule(delay, job)
        else:
            job.state = WAITING
            self.enqueue(job)
        if self.debug:  # last: the error's repr is user code, and may cancel the job
            self.log.debug("job.retry_scheduled", job_id=job.id, fn=qualified_name(job.fn),
                           attempt=job.attempts, delay=delay, error=safe_repr(error))

    def bury(self, job: Job[Any], error: BaseException, reason: str) -> None:
        """Move a job to the dead letters, tell the hooks, resolve its handle."""
        args, kwargs = job.args, job.kwargs  # settle() lets go of them
        assert args is not None, "the job is not terminal yet: it has its arguments"
        assert kwargs is not None
        # Settled first: the letter renders the error, user code that may call cancel().
        job.settle(DEAD, None, error)
        self.dead += 1  # counted at once: stats() from that user code stays whole
        letter = DeadLetter.of(job, args, kwargs, error, reason)
        self.log.warning("job.dead", job_id=job.id, fn=qualified_name(letter.fn),
                         attempt=job.attempts, reason=reason, error=safe_repr(error))
        self.dead_letters.add(letter, self.log)
        if self.balancing:
            self.finished(job)
        if self.draining is not None:
            self.check_drained()

    def settle_cancelled(self, job: Job[Any], reason: str,
                         error: JobCancelled | None = None) -> None:
        """Resolve a job as ``CANCELLED`` (its gauge already adjusted)."""
        error = error or job.cancelled_error(reason)
        job.settle(CANCELLED, None, error)
        self.cancelled += 1
        if self.debug:
            self.log.debug("job.cancelled", job_id=job.id, fn=qualified_name(job.fn),
                           attempt=job.attempts, reason=error.reason)
        if self.balancing:
            self.finished(job)
        if self.draining is not None:
            self.check_drained()

    # -- cancellation and timers ---------------------------------------------------------
    def abort_waiting(self, job: Job[Any], error: JobCancelled) -> None:
        """Cancel a ``WAITING`` job that no queue holds (it is between two gates)."""
        self.taken -= 1
        self.settle_cancelled(job, error.reason, error)
        if self.putters:
            self.room_freed()

    def cancel_job(self, job: Job[Any], reason: str = "cancelled") -> bool:
        """Cancel a job wherever it is (see :meth:`asyncq.Job.cancel`)."""
        state = job.state
        if state is WAITING:
            self.taken -= 1
            if not (self.balancing and self.balancer.discard(job)):
                self.stale += 1  # left in the ready queue, skipped when popped
                self.compact_ready()
            self.settle_cancelled(job, reason)
        elif state is DELAYED:
            self.taken -= 1
            self.delayed -= 1
            self.timers.discard(job)
            self.settle_cancelled(job, reason)
        elif state is RUNNING:
            for worker in self.workers:
                if worker.job is job:
                    worker.cancel_attempt(job)
                    break
            else:  # the attempt has ended and is being routed (a retry_on predicate or a
                # backoff, user code, runs then): the routing sees the request
                job.more().cancel_requested = True
            return True
        else:
            return False
        if self.putters:
            self.room_freed()
        return True

    def compact_ready(self) -> None:
        """Rebuild the ready queue when cancelled jobs make up most of it."""
        if self.stale > _COMPACT_MIN and self.stale * 2 > len(self.ready):
            live = [job for job in self.ready if job.state is WAITING]
            self.ready.clear()  # in place: workers and the balancer hold this deque
            self.ready.extend(live)
            self.stale = 0

    def release(self, job: Job[Any]) -> None:
        """A timer fired: the delayed job joins the ready queue."""
        job.move(WAITING)
        self.delayed -= 1
        self.enqueue(job)

    # -- shutdown ------------------------------------------------------------------------
    def close_admission(self) -> None:
        """Admit nothing more and wake every blocked producer with ``PoolClosed``."""
        self.open = False
        if self.sample_check is not None:
            self.sample_check.cancel()
            self.sample_check = None
        putters, self.putters = self.putters, deque()
        for waiter in putters:
            if not waiter.done():
                waiter.set_result(False)

    def check_drained(self) -> None:
        """Resolve the drain future once nothing is left in flight."""
        draining = self.draining
        if (draining is not None and not draining.done()
                and self.taken == self.reserved and self.running == 0):
            draining.set_result(None)

    def cancel_all(self, reason: str) -> None:
        """Cancel every job not yet terminal; running attempts end when they end.

        Cancelling a key's holder hands the key on, so this repeats until nothing waits.
        """
        while True:
            held = self.timers.release_all()
            held.extend(job for job in self.ready if job.state is WAITING)
            self.ready.clear()
            self.stale = 0
            held.extend(self.balancer.release_all())
            if not held:
                break
            for job in held:
                if job.done():
                    continue
                self.taken -= 1
                if job.state is DELAYED:
                    self.delayed -= 1
                self.settle_cancelled(job, reason)
        for worker in self.workers:
            if worker.job is not None:
                self.cancel_job(worker.job, reason)

    def emergency(self, error: BaseException) -> None:
        """A job raised ``KeyboardInterrupt``/``SystemExit``: stop admitting, cancel the rest.

        The error is kept and raised again by ``close()`` once every handle is resolved.
        """
        if self.fatal is None:
            self.fatal = error
        self.abandon("cancelled: the pool stopped after a fatal error in another job")

    def abandon(self, reason: str) -> None:
        """Stop the pool where it stands: admit nothing, cancel every job, stop workers."""
        self.close_admission()
        self.cancel_all(reason)
        self.stop_workers()

    def stop_workers(self) -> None:
        """Tell parked workers to exit (running ones exit after their attempt)."""
        self.stopping = True
        idle, self.idle = self.idle, []
        for waiter in idle:
            if not waiter.done():
                waiter.set_result(None)


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder when that raises (user objects may)."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object (repr failed)>"


def not_started() -> PoolNotStarted:
    """The error for a pool used before ``async with`` / ``start()``."""
    return PoolNotStarted("the pool is not started; use 'async with pool:' or 'await pool.start()'")
