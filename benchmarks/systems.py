"""asyncq and the hand-written asyncio baselines, one coroutine function per system.

Every system function has the signature ``(jobs, workers, maxsize) -> Outcome``.  It submits
all ``jobs.n`` jobs, awaits every result and returns the results in submission order together
with the wall time of the submit+await phase (setup and teardown are excluded).
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from .workloads import JobSet, Unsupported


@dataclass
class Outcome:
    """Results in submission order plus the timed submit+await phase in seconds."""

    results: list[object]
    seconds: float


async def run_asyncq(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """asyncq with the defaults a user gets; native ``Retry`` for the retry workload.

    For the keyed workload the ``key_count`` submitters (``pool.options(key=k)``) are built
    before the clock starts, and job ``i`` goes through submitter ``i % key_count``.
    """
    import asyncq

    if jobs.key_count:
        require_option(asyncq.Pool, "key")
    kwargs: dict[str, Any] = {}
    if jobs.retry_attempts > 1:
        kwargs["retry"] = asyncq.Retry(attempts=jobs.retry_attempts, delay=0.0, jitter=False)
    pool = asyncq.Pool(workers=workers, maxsize=maxsize, **kwargs)
    fn = jobs.native
    handles: list[Any] = [None] * jobs.n
    async with pool:
        keyed = [pool.options(key=k) for k in range(jobs.key_count)]
        start = perf_counter()
        if jobs.delays is not None:
            due = jobs.due
            for i, delay in enumerate(jobs.delays):
                due[i] = perf_counter() + delay
                handles[i] = await pool.options(delay=delay).submit(fn, i)
        elif jobs.key_count:
            count = jobs.key_count
            for i in range(jobs.n):
                handles[i] = await keyed[i % count].submit(fn, i)
        else:
            for i in range(jobs.n):
                handles[i] = await pool.submit(fn, i)
        results = [await handle for handle in handles]
        seconds = perf_counter() - start
    return Outcome(results, seconds)


def require_option(pool_class: type[Any], name: str) -> None:
    """Raise :class:`Unsupported` when ``pool_class.options`` has no keyword ``name``.

    An asyncq checked out at an old ref (``--compare-ref``) may predate the option.
    """
    if name not in inspect.signature(pool_class.options).parameters:
        raise Unsupported(f"this asyncq has no options({name}=...)")


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_bare(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """``asyncio.Queue`` + W worker tasks + one future per job.

    For the delayed workload each job is put into the queue by a ``loop.call_later`` timer.
    To keep the same contract as asyncq (at most ``maxsize`` jobs waiting or delayed), the
    submitter first takes one of ``maxsize`` semaphore slots, and a worker gives it back when
    it dequeues the job; the queue itself is then unbounded.
    """
    loop = asyncio.get_running_loop()
    fn = jobs.emulated
    delayed = jobs.delays is not None
    queue: asyncio.Queue[tuple[int, asyncio.Future[object]]] = asyncio.Queue(
        0 if delayed else (maxsize or 0)
    )
    slots = asyncio.Semaphore(maxsize or jobs.n)

    async def worker() -> None:
        while True:
            i, fut = await queue.get()
            if delayed:
                slots.release()
            try:
                value = await fn(i)
            except Exception as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

    tasks = [loop.create_task(worker()) for _ in range(workers)]
    futures: list[asyncio.Future[object]] = []
    start = perf_counter()
    if jobs.delays is not None:
        due = jobs.due
        for i, delay in enumerate(jobs.delays):
            await slots.acquire()
            fut = loop.create_future()
            futures.append(fut)
            due[i] = perf_counter() + delay
            loop.call_later(delay, queue.put_nowait, (i, fut))
    else:
        for i in range(jobs.n):
            fut = loop.create_future()
            futures.append(fut)
            await queue.put((i, fut))
    results = [await fut for fut in futures]
    seconds = perf_counter() - start
    await _stop(tasks)
    return Outcome(results, seconds)


async def run_bare_nofuture(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """The floor: ``asyncio.Queue`` + W workers + ``queue.join()``; results stored by index."""
    loop = asyncio.get_running_loop()
    fn = jobs.emulated
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize or 0)
    results: list[object] = [None] * jobs.n

    async def worker() -> None:
        while True:
            i = await queue.get()
            try:
                results[i] = await fn(i)
            except Exception as exc:
                results[i] = exc
            finally:
                queue.task_done()

    tasks = [loop.create_task(worker()) for _ in range(workers)]
    start = perf_counter()
    for i in range(jobs.n):
        await queue.put(i)
    await queue.join()
    seconds = perf_counter() - start
    await _stop(tasks)
    return Outcome(results, seconds)


async def run_slices(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """No queue at all: W tasks, task ``k`` awaits jobs ``k, k+W, k+2W, ...`` in turn.

    No submit, no backpressure, no handles: only the jobs themselves and W tasks, so the gap
    between a system and ``slices`` is what that system's queueing and bookkeeping cost.
    ``maxsize`` has nothing to bound here and is ignored.
    """
    del maxsize
    loop = asyncio.get_running_loop()
    fn = jobs.emulated
    n = jobs.n
    results: list[object] = [None] * n

    async def share(first: int) -> None:
        for i in range(first, n, workers):
            try:
                results[i] = await fn(i)
            except Exception as exc:
                results[i] = exc

    start = perf_counter()
    await asyncio.gather(*[loop.create_task(share(k)) for k in range(workers)])
    seconds = perf_counter() - start
    return Outcome(results, seconds)


async def run_semaphore(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """``asyncio.Semaphore(W)`` + ``asyncio.gather`` over chunks of ``maxsize`` jobs.

    Chunking bounds memory like a bounded queue would (at most ``maxsize`` tasks exist at a
    time); the price is a short drain at the end of every chunk.
    """
    fn = jobs.emulated
    sem = asyncio.Semaphore(workers)
    chunk = maxsize or jobs.n

    async def guarded(i: int) -> object:
        async with sem:
            return await fn(i)

    results: list[object] = []
    start = perf_counter()
    for first in range(0, jobs.n, chunk):
        last = min(jobs.n, first + chunk)
        results.extend(await asyncio.gather(*(guarded(i) for i in range(first, last))))
    seconds = perf_counter() - start
    return Outcome(results, seconds)
