"""asyncq: a bounded asyncio job pool.

A bounded queue feeding a pool of coroutine workers, with backpressure on submit,
awaitable results, timer-based delays and retries, and a dead-letter queue::

    async with asyncq.Pool(workers=8, maxsize=1000, retry=asyncq.Retry(attempts=3)) as pool:
        job = await pool.submit(fetch, url)
        print(await job)
"""

from asyncq._dead import DeadLetter, DeadLetterQueue, read_dead_letters
from asyncq._errors import (
    AsyncqError,
    DependencyFailed,
    JobCancelled,
    PoolClosed,
    PoolNotStarted,
    QueueFull,
    RetryLater,
    WrongLoop,
)
from asyncq._job import Job, JobState
from asyncq._log import add_job_id
from asyncq._options import JobOptions
from asyncq._pool import Pool, PoolState
from asyncq._rate import RateLimit
from asyncq._retry import Retry, backoff
from asyncq._run import run
from asyncq._stats import Latency, Stats
from asyncq._submit import Submitter
from asyncq._threads import in_thread
from asyncq._worker import YIELD_EVERY, current_job

__all__ = [
    "YIELD_EVERY",
    "AsyncqError",
    "DeadLetter",
    "DeadLetterQueue",
    "DependencyFailed",
    "Job",
    "JobCancelled",
    "JobOptions",
    "JobState",
    "Latency",
    "Pool",
    "PoolClosed",
    "PoolNotStarted",
    "PoolState",
    "QueueFull",
    "RateLimit",
    "Retry",
    "RetryLater",
    "Stats",
    "Submitter",
    "WrongLoop",
    "add_job_id",
    "backoff",
    "current_job",
    "in_thread",
    "read_dead_letters",
    "run",
]

__version__ = "0.1.0"
