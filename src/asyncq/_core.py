"""The pool's engine: the ready queue, timers, the workers' hand-offs, cancellation, shutdown.

Every admitted job is owned by exactly one place: the ready queue (``WAITING``), the timer
(``DELAYED``), a worker (``RUNNING``), or nobody once it is terminal. The gauges are read
off those owners (``running`` counts busy workers, ``waiting`` the live jobs in the ready
queue), so ``submitted == succeeded + dead + cancelled + waiting + delayed + running``
holds between any two steps of the event loop.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Hashable, Mapping
from typing import Any

from asyncq._balance import Balancer
from asyncq._dead import DeadLetterQueue, qualified_name
from asyncq._errors import JobCancelled, PoolNotStarted
from asyncq._job import DELAYED, RUNNING, WAITING, Job
from asyncq._outcomes import Outcomes
from asyncq._rate import RateLimit
from asyncq._stats import Samples
from asyncq._timers import TimerQueue

_COMPACT_MIN = 64


class Core(Outcomes):
    """State shared by the pool facade and its workers (one per pool, one event loop).

    Admission (the bound, producers, the gates on the way in) is in :class:`Admission`,
    the routing of outcomes in :class:`Outcomes`; here are the workers' hand-offs,
    cancellation and shutdown.
    """

    __slots__ = (
        "balancer", "copy_context", "debug", "draining", "fatal", "idle", "log", "plain_ok",
        "ready", "stale", "stopping", "timers", "wait_samples", "workers",
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
        super().__init__(loop, maxsize, dead_letters, rng)
        self.copy_context = copy_context
        self.ready: deque[Job[Any]] = deque()
        self.timers = TimerQueue(loop, self.release)
        self.idle: list[asyncio.Future[None]] = []
        self.workers: list[Any] = []
        self.stale = 0
        self.stopping = False
        self.draining: asyncio.Future[None] | None = None
        self.fatal: BaseException | None = None
        self.log = logger
        self.debug = debug
        self.balancer = Balancer(
            group_weights or {}, aging, loop.time, later=loop.call_later, wake=self.wake_worker,
            pool_limit=rate_limit, group_limits=group_rate_limits, key_limit=key_rate_limit)
        # Plain jobs skip the balancer unless aging needs every job's enqueue time or a
        # pool-wide rate limit must count every start.
        self.plain_ok = aging is None and rate_limit is None and key_rate_limit is None
        self.balancing = False  # set once a job used keys, dependencies or lanes
        self.plain_retries = not debug  # neither debug nor balancing: the short retry path
        self.watch = debug  # debug or draining or balancing: successes need after_success
        self.wait_samples = Samples()
        self.delayed = 0  # the one gauge not read off an owner

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


def not_started() -> PoolNotStarted:
    """The error for a pool used before ``async with`` / ``start()``."""
    return PoolNotStarted("the pool is not started; use 'async with pool:' or 'await pool.start()'")
