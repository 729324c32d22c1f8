"""Memory cases: bytes per waiting job, and RSS growth over a long bounded run.

* ``waiting-mem``: one worker is blocked on a gate while ``n`` more jobs are submitted with no
  queue bound; the caller keeps every handle, as real callers do.  Two passes in the same
  child: first the RSS delta (no tracing), then the ``tracemalloc`` delta.  Both are divided
  by ``n``.
* ``bounded-rss``: ``n`` (default 1,000,000) noop jobs through ``maxsize=1000`` and 8 workers
  without keeping handles; reports peak RSS minus the RSS right before the first submit.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import tracemalloc
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any


def current_rss_bytes() -> int:
    """Resident set size of this process right now (Linux ``/proc``; falls back to peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: the high-water mark of this
    program's own memory. ``ru_maxrss`` is not used there, because Linux carries it across
    ``exec``: a child started by a parent that had grown to 50 MiB reports at least 50 MiB
    whatever it does itself. Elsewhere ``ru_maxrss`` is the fallback (KiB on Linux and
    BSD, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


async def _asyncq_waiting(n: int, traced: bool) -> tuple[float, list[object]]:
    import asyncq

    gate = asyncio.Event()
    entered = asyncio.Event()

    async def gated(i: int) -> int:
        entered.set()
        await gate.wait()
        return i

    handles: list[Any] = [None] * (n + 1)
    async with asyncq.Pool(workers=1, maxsize=None) as pool:
        handles[0] = await pool.submit(gated, 0)
        await entered.wait()
        delta = await _fill(n, traced, lambda i: pool.submit(gated, i), handles)
        gate.set()
        results = [await h for h in handles]
    return delta, results


async def _bare_waiting(n: int, traced: bool) -> tuple[float, list[object]]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Event()
    entered = asyncio.Event()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def gated(i: int) -> int:
        entered.set()
        await gate.wait()
        return i

    async def worker() -> None:
        while True:
            i, fut = await queue.get()
            fut.set_result(await gated(i))

    async def submit(i: int) -> asyncio.Future[int]:
        fut = loop.create_future()
        await queue.put((i, fut))
        return fut

    task = loop.create_task(worker())
    handles: list[Any] = [None] * (n + 1)
    handles[0] = await submit(0)
    await entered.wait()
    delta = await _fill(n, traced, submit, handles)
    gate.set()
    results = [await h for h in handles]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return delta, results


async def _fill(
    n: int, traced: bool, submit: Callable[[int], Awaitable[Any]], handles: list[Any]
) -> float:
    """Submit jobs 1..n into ``handles`` and return the memory growth in bytes."""
    gc.collect()
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = current_rss_bytes()
    for i in range(1, n + 1):
        handles[i] = await submit(i)
    if traced:
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        after = current_rss_bytes()
    return float(after - before)


async def waiting_memory(system: str, n: int) -> dict[str, Any]:
    """Bytes per waiting job for ``system`` (``asyncq`` or ``bare``); raises on wrong results."""
    run = {"asyncq": _asyncq_waiting, "bare": _bare_waiting}[system]
    extras: dict[str, Any] = {}
    for traced, key in ((False, "bytes_per_job_rss"), (True, "bytes_per_job_traced")):
        delta, results = await run(n, traced)
        if results != list(range(n + 1)):
            raise RuntimeError(f"{system}: gated jobs returned wrong results")
        extras[key] = round(delta / n, 1)
        del results
        gc.collect()
    return extras


async def long_run_rss(system: str, n: int, workers: int, maxsize: int) -> dict[str, Any]:
    """Run ``n`` noop jobs without keeping handles; report seconds and RSS growth in MiB."""
    done = bytearray(n)

    async def mark(i: int) -> int:
        done[i] = 1
        return i

    loop = asyncio.get_running_loop()
    if system == "asyncq":
        import asyncq

        async with asyncq.Pool(workers=workers, maxsize=maxsize) as pool:
            gc.collect()
            rss0 = current_rss_bytes()
            start = perf_counter()
            for i in range(n):
                await pool.submit(mark, i)
        seconds = perf_counter() - start
    elif system == "bare":
        queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue(maxsize)

        async def worker() -> None:
            while True:
                i, fut = await queue.get()
                fut.set_result(await mark(i))
                queue.task_done()

        tasks = [loop.create_task(worker()) for _ in range(workers)]
        gc.collect()
        rss0 = current_rss_bytes()
        start = perf_counter()
        for i in range(n):
            await queue.put((i, loop.create_future()))
        await queue.join()
        seconds = perf_counter() - start
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    else:
        raise ValueError(f"memory case not defined for {system!r}")
    missing = n - sum(done)
    if missing:
        raise RuntimeError(f"{system}: {missing} of {n} jobs never ran")
    growth = (peak_rss_bytes() - rss0) / 2**20
    return {"seconds": seconds, "rss_growth_mib": round(max(growth, 0.0), 2)}
