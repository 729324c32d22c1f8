"""The exceptions asyncq raises, and the one a job raises to ask for a retry.

::

    AsyncqError                      root of everything asyncq raises
    ├── QueueFull                    submit_nowait() on a pool at its bound
    ├── PoolClosed (RuntimeError)    submit after close(); wakes blocked producers
    ├── PoolNotStarted (RuntimeError) submit before ``async with pool`` / ``start()``
    ├── WrongLoop (RuntimeError)     a pool used from another thread or event loop
    └── JobCancelled                 awaiting a job that ended CANCELLED
        └── DependencyFailed         the job never ran: a dependency died or was cancelled

    RetryLater (Exception)           raised *by a job* to be retried after a given delay

Bad arguments raise the built-in ``TypeError`` or ``ValueError`` with a message that names
the argument and the accepted range.
"""

from __future__ import annotations

__all__ = [
    "AsyncqError",
    "DependencyFailed",
    "JobCancelled",
    "PoolClosed",
    "PoolNotStarted",
    "QueueFull",
    "RetryLater",
    "WrongLoop",
]


class AsyncqError(Exception):
    """Root of every exception asyncq raises on its own behalf."""


class QueueFull(AsyncqError):
    """``submit_nowait()`` found the pool at its ``maxsize`` bound; nothing was admitted."""


class PoolClosed(AsyncqError, RuntimeError):
    """The pool is closing or closed and admits no more jobs."""


class PoolNotStarted(AsyncqError, RuntimeError):
    """The pool has not been started; use ``async with pool`` or ``await pool.start()``."""


class WrongLoop(AsyncqError, RuntimeError):
    """The pool was used from a thread or event loop other than the one it runs on."""


class JobCancelled(AsyncqError):
    """Raised when awaiting a job that ended ``CANCELLED``.

    ``job_id`` names the job. A job is cancelled by ``job.cancel()``, by
    ``close(drain=False)``, or when ``close()``'s timeout passes.
    """

    def __init__(self, job_id: int, reason: str = "cancelled") -> None:
        super().__init__(f"job {job_id} {reason}")
        self.job_id = job_id
        self.reason = reason


class DependencyFailed(JobCancelled):
    """The job never ran because a job it depends on died or was cancelled."""

    def __init__(self, job_id: int, dependency_id: int) -> None:
        super().__init__(job_id, f"cancelled: its dependency, job {dependency_id}, did not succeed")
        self.dependency_id = dependency_id


class RetryLater(Exception):
    """Raise inside a job to have it retried after ``delay`` seconds.

    The attempt counts as failed and uses one of the job's attempts (so a job can never
    retry forever); ``retry_on`` is not consulted. When no attempt is left the job goes to
    the dead letters with this exception as its error.
    """

    def __init__(self, delay: float = 0.0, reason: str = "") -> None:
        from asyncq._validate import check_seconds

        self.delay = check_seconds("delay", delay)
        super().__init__(reason or f"retry requested in {self.delay:g}s")
