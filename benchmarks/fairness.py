"""Fair share under a flood: how long group B's jobs wait while group A floods the pool.

The producer submits ``FLOOD_RATIO`` (100) A jobs, then one B job, then yields once to the
loop (``await asyncio.sleep(0)``), and repeats, so B's jobs arrive spread over the whole
flood while the backlog keeps growing (the workers drain far fewer than 101 jobs per loop
iteration).  The pool is unbounded (``maxsize=None``), so nothing waits for room and the
flood is queued.  Every job records ``perf_counter()`` when it starts and then does
``await asyncio.sleep(0)``; its queue wait is start minus the moment just before its
``submit`` call.

* ``fairness-off``: every job is plain (``pool.submit``): one FIFO, so a B job waits for
  the whole A backlog queued ahead of it.
* ``fairness-on``: ``pool.options(group="A")`` and ``pool.options(group="B")``, default
  weights (1 each): the groups take turns, so a B job waits about one turn.

``perf_counter()`` is used rather than ``loop.time()`` because uvloop's ``loop.time()``
has a resolution of 1 ms, coarser than the waits measured in the ``on`` case.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from .systems import require_option
from .workloads import FLOOD_RATIO

#: A jobs in the warm-up run (B jobs: one per ``FLOOD_RATIO`` of them).
WARMUP_A_JOBS = 1_000


def _rank(data: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted ``data`` (0.0 when empty)."""
    if not data:
        return 0.0
    return data[min(len(data) - 1, int(q * len(data)))]


def b_jobs_for(a_jobs: int) -> int:
    """Number of B jobs that go with ``a_jobs`` A jobs (at least one)."""
    return max(1, a_jobs // FLOOD_RATIO)


async def flood(fair: bool, a_jobs: int, workers: int) -> dict[str, Any]:
    """Run one flood and return seconds, job counts and the queue-wait percentiles."""
    import asyncq

    if fair:
        require_option(asyncq.Pool, "group")
    b_jobs = b_jobs_for(a_jobs)
    total = a_jobs + b_jobs
    submitted = [0.0] * total
    started = [0.0] * total
    is_b = bytearray(total)

    async def job(i: int) -> int:
        started[i] = perf_counter()
        await asyncio.sleep(0)
        return i

    handles: list[Any] = [None] * total
    async with asyncq.Pool(workers=workers, maxsize=None) as pool:
        group_a = pool.options(group="A") if fair else pool
        group_b = pool.options(group="B") if fair else pool
        i = 0
        a_left = a_jobs
        start = perf_counter()
        for _ in range(b_jobs):
            for _ in range(min(FLOOD_RATIO, a_left)):
                submitted[i] = perf_counter()
                handles[i] = await group_a.submit(job, i)
                i += 1
            a_left -= min(FLOOD_RATIO, a_left)
            is_b[i] = 1
            submitted[i] = perf_counter()
            handles[i] = await group_b.submit(job, i)
            i += 1
            await asyncio.sleep(0)  # B's arrivals are spread over the flood
        for _ in range(a_left):
            submitted[i] = perf_counter()
            handles[i] = await group_a.submit(job, i)
            i += 1
        results = [await handle for handle in handles]
        seconds = perf_counter() - start
    if results != list(range(total)):
        raise RuntimeError("fairness: results missing or out of place")
    b_waits = sorted(started[j] - submitted[j] for j in range(total) if is_b[j])
    a_waits = sorted(started[j] - submitted[j] for j in range(total) if not is_b[j])
    return {
        "seconds": seconds,
        "jobs": total,
        "a_jobs": a_jobs,
        "b_jobs": b_jobs,
        "b_wait_p50_ms": round(_rank(b_waits, 0.50) * 1e3, 3),
        "b_wait_p99_ms": round(_rank(b_waits, 0.99) * 1e3, 3),
        "b_wait_max_ms": round(b_waits[-1] * 1e3, 3),
        "a_wait_p50_ms": round(_rank(a_waits, 0.50) * 1e3, 3),
        "a_wait_p99_ms": round(_rank(a_waits, 0.99) * 1e3, 3),
    }


async def measure(workload: str, a_jobs: int, workers: int, warmup: bool) -> dict[str, Any]:
    """The child's entry point for ``fairness-off`` / ``fairness-on`` (warm-up, then run)."""
    fair = workload == "fairness-on"
    if warmup:
        await flood(fair, min(a_jobs, WARMUP_A_JOBS), workers)
        gc.collect()
    return await flood(fair, a_jobs, workers)


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_fairness(records: list[dict[str, Any]]) -> str:
    """A small table: per loop, system and case, the medians over rounds of the waits."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["loop"], rec["system"], rec["workload"]), []).append(rec)
    first = next((r for r in records if r.get("a_jobs")), None)
    counts = (
        f"A {first['a_jobs']:,} jobs, B {first['b_jobs']:,} jobs" if first else "A/B jobs"
    )
    lines = [
        f"fairness: {counts} (one B after every {FLOOD_RATIO} A), "
        f"W={records[0]['workers']}, maxsize=None; queue wait in ms, median over rounds",
        f"  {'loop':<8} {'system':<16} {'case':<13} {'B p50':>8} {'B p99':>8} {'B max':>8} "
        f"{'A p50':>8} {'jobs/s':>9} {'runs':>4}",
    ]
    for (loop, system, workload), recs in groups.items():
        good = [r for r in recs if not r.get("error") and not r.get("skipped")]
        head = f"  {loop:<8} {system:<16} {workload:<13}"
        if not good:
            bad = next((r for r in recs if r.get("skipped") or r.get("error")), {})
            status = f"skipped ({bad['skipped']})" if bad.get("skipped") else "ERROR"
            if bad.get("error"):
                status = f"ERROR: {bad['error']}"
            lines.append(f"{head} {status}")
            continue
        jps = _median(r.get("jobs_per_s") for r in good)
        lines.append(
            f"{head} {_ms(_median(r.get('b_wait_p50_ms') for r in good)):>8} "
            f"{_ms(_median(r.get('b_wait_p99_ms') for r in good)):>8} "
            f"{_ms(_median(r.get('b_wait_max_ms') for r in good)):>8} "
            f"{_ms(_median(r.get('a_wait_p50_ms') for r in good)):>8} "
            f"{'-' if jps is None else format(jps, ',.0f'):>9} {len(good):>4}"
        )
    return "\n".join(lines) + "\n"
