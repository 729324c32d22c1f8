"""Routing an attempt's outcome: the result, a retry (at once or on the timer), the dead
letters, or cancelled; and the counters of those outcomes.

A worker owns its job while the attempt runs and hands it to one of these routes when it
ends; each route moves the job on to its next owner (the ready queue, the timer) or makes
it terminal (``SUCCEEDED``, ``DEAD``, ``CANCELLED``), resolving its handle. A terminal job
then hands on its key and releases or cancels its dependents (:meth:`Outcomes.finished`).
The commonest routes, a plain success and a zero-delay retry decided without user code,
are also written out inline in ``Worker.run``; these methods are every case.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from asyncq._admission import Admission
from asyncq._dead import DeadLetter, DeadLetterQueue, qualified_name
from asyncq._errors import DependencyFailed, JobCancelled, RetryLater
from asyncq._job import CANCELLED, DEAD, DELAYED, SUCCEEDED, WAITING, Job, let_go, wake
from asyncq._retry import Retry, retries_at_once
from asyncq._stats import Samples

#: Error classes a pool remembers for the short retry path (it forgets all past this).
AT_ONCE_MAX = 64


class Outcomes(Admission):
    """Where a job goes when an attempt ends, and how many went each way.

    ``at_once`` and :meth:`learn_at_once` serve the worker's short retry path: the error
    classes a plain zero-delay ``Retry`` may retry without running user code.
    """

    __slots__ = (
        "at_once", "cancelled", "dead", "dead_letters", "ended", "failed_finally",
        "handing_on", "retried", "rng", "routing", "run_samples", "succeeded",
    )

    # Owned by the core, used here (set in ``Core.__init__``).
    debug: bool
    log: Any
    draining: asyncio.Future[None] | None

    if TYPE_CHECKING:
        def check_drained(self) -> None: ...

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int | None,
                 dead_letters: DeadLetterQueue, rng: random.Random) -> None:
        super().__init__(loop, maxsize)
        self.dead_letters = dead_letters
        self.rng = rng  # for the backoff's jitter
        self.run_samples = Samples()
        self.ended: deque[Job[Any]] = deque()  # terminal jobs whose key/dependents wait
        self.handing_on = False
        # counters (``submitted`` is ``seq``; ``delayed`` is the core's)
        self.succeeded = self.retried = self.dead = self.cancelled = 0
        self.failed_finally = 0  # failed attempts that were not retried (see failed)
        self.routing = 0  # failed attempts whose retry decision is running user code
        # Error classes the workers retry at once, each with the policy that said so.
        self.at_once: dict[type[BaseException], Retry] = {}

    @property
    def failed(self) -> int:
        """Failed attempts: each was retried, or was its job's last (one counter fewer to
        move on the retry path)."""
        return self.retried + self.failed_finally

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

        A zero-delay retry of the job's own failure that needs no user code to decide
        takes a shorter path, inline in ``Worker.run`` (with :meth:`learn_at_once`); this is
        every other case, interrupted attempts (a timeout) included, and does the same for
        that one.
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
        """Queue the next attempt: first in its queue when there is no delay (it runs
        next), else on the timer (it rejoins the back of its queue when that fires)."""
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
            self.enqueue(job, front=True)
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


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder when that raises (user objects may)."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object (repr failed)>"


