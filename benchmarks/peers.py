"""Third-party peers, one coroutine function per system (same contract as ``systems.py``).

Peers have no retry of their own, so they always run ``jobs.emulated`` (an in-job retry loop
for the retry workload).  Imports are local so that a missing peer only affects its own run.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from .systems import Outcome
from .workloads import JobSet

#: Upper bound on jobs per run for peers whose per-job cost would make a run take minutes.
JOB_CAPS: dict[str, int] = {"taskiq": 20_000}


async def run_aiojobs(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """``aiojobs.Scheduler(limit=W, pending_limit=maxsize)``; ``spawn`` then ``job.wait()``."""
    import aiojobs

    fn = jobs.emulated
    scheduler = aiojobs.Scheduler(limit=workers, pending_limit=maxsize or 0, wait_timeout=None)
    async with scheduler:
        start = perf_counter()
        handles: list[aiojobs.Job[int]] = [await scheduler.spawn(fn(i)) for i in range(jobs.n)]
        results: list[object] = [await handle.wait() for handle in handles]
        seconds = perf_counter() - start
    return Outcome(results, seconds)


async def run_asyncio_pool(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """``asyncio_pool.AioPool(size=W)``; ``await pool.spawn(coro)`` returns a future.

    ``spawn`` waits until one of the W slots is free, so the backpressure bound is W rather
    than ``maxsize`` (the library has no separate waiting queue).
    """
    from asyncio_pool import AioPool  # type: ignore[import-untyped,unused-ignore]

    fn = jobs.emulated
    async with AioPool(size=workers) as pool:
        start = perf_counter()
        futures = [await pool.spawn(fn(i)) for i in range(jobs.n)]
        results: list[object] = [await fut for fut in futures]
        seconds = perf_counter() - start
    return Outcome(results, seconds)


async def run_anyio_streams(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """anyio memory object stream of ``maxsize`` + W workers in a task group.

    Results are written into a list by index (no per-job future), so this is the anyio
    counterpart of ``bare-nofuture``; the timed phase ends when the task group exits.
    """
    import anyio

    fn = jobs.emulated
    send, receive = anyio.create_memory_object_stream[int](maxsize or 0)
    results: list[object] = [None] * jobs.n

    async def worker(stream: Any) -> None:
        async with stream:
            async for i in stream:
                results[i] = await fn(i)

    start = perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(workers):
            group.start_soon(worker, receive.clone())
        receive.close()
        async with send:
            for i in range(jobs.n):
                await send.send(i)
    seconds = perf_counter() - start
    return Outcome(results, seconds)


async def run_taskiq(jobs: JobSet, workers: int, maxsize: int | None) -> Outcome:
    """taskiq ``InMemoryBroker(max_async_tasks=W)``; ``kiq`` then ``wait_result``.

    The in-memory broker starts a task per message as soon as it is kicked, so there is no
    backpressure (``maxsize`` is unused).  Results are polled every millisecond.
    """
    from taskiq import InMemoryBroker

    fn = jobs.emulated
    broker = InMemoryBroker(max_stored_results=-1, max_async_tasks=workers)

    async def bench_job(i: int) -> object:
        return await fn(i)

    task = broker.register_task(bench_job, task_name="bench_job")
    await broker.startup()
    try:
        start = perf_counter()
        handles = [await task.kiq(i) for i in range(jobs.n)]
        results: list[object] = []
        for handle in handles:
            res = await handle.wait_result(check_interval=0.001)
            if res.is_err:
                raise RuntimeError(f"taskiq job failed: {res.error!r}")
            results.append(res.return_value)
        seconds = perf_counter() - start
    finally:
        await broker.shutdown()
    return Outcome(results, seconds)
