"""Deploy tasks spread over a pool of workers: an idle worker takes the next task at once.

A release has sixteen deploy tasks of uneven length (a big database takes longer than a
small cache). Handed to a pool of four workers, the tasks are not split into four fixed
batches: whichever worker finishes first takes the next task in the queue, so a long task
on one worker never leaves the others idle while work is waiting.

Jobs run inline in the worker's own task, so ``asyncio.current_task()`` inside a job names
the worker running it; the script uses that to attribute each task to its worker. It prints
the per-worker load and a timeline, then checks that every task ran exactly once, that no
worker stood idle while tasks were waiting, and that the whole release took close to the
ideal time (total work divided by the number of workers).

Run it with ``python examples/task_distribution.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import string
import time
from dataclasses import dataclass

import structlog

import asyncq

WORKERS = 4
rng = random.Random(7)
TASKS = {f"{kind}-{n}": round(rng.uniform(0.02, 0.12), 3)
         for kind in ("api", "web", "db", "cache") for n in (1, 2, 3, 4)}
LABELS = dict(zip(TASKS, string.ascii_uppercase, strict=False))


@dataclass(frozen=True)
class Done:
    """Where and when one deploy task ran (seconds since the release began)."""

    task: str
    worker: str
    start: float
    end: float


workers_seen: dict[asyncio.Task[object], str] = {}
began = 0.0


def worker_name() -> str:
    """A readable name for the worker running the current job."""
    task = asyncio.current_task()
    assert task is not None
    return workers_seen.setdefault(task, f"worker-{len(workers_seen) + 1}")


async def deploy(task: str) -> Done:
    """Deploy one service (simulated by a sleep of the task's length)."""
    worker, start = worker_name(), time.monotonic() - began
    await asyncio.sleep(TASKS[task])
    return Done(task, worker, start, time.monotonic() - began)


async def main() -> None:
    global began
    total = sum(TASKS.values())
    ideal = max(total / WORKERS, max(TASKS.values()))
    print(f"{len(TASKS)} deploy tasks, {total:.2f}s of work, {WORKERS} workers: "
          f"ideal time {ideal:.2f}s")
    async with asyncq.Pool(workers=WORKERS, maxsize=len(TASKS)) as pool:
        began = time.monotonic()
        done = await pool.map(deploy, TASKS)  # results in input order
        elapsed = time.monotonic() - began

    print_load(done)
    print_timeline(done, elapsed)
    print(f"release took {elapsed:.2f}s; ideal {ideal:.2f}s; one worker would take "
          f"{total:.2f}s ({total / elapsed:.1f}x speed-up)")
    check(done, elapsed, ideal)
    print("ok: every task ran once, no worker idled while tasks waited, close to ideal time")


def print_load(done: list[Done]) -> None:
    """How many tasks, and how much work, each worker took."""
    for worker in sorted({d.worker for d in done}):
        mine = [d for d in done if d.worker == worker]
        busy = sum(d.end - d.start for d in mine)
        names = ", ".join(d.task for d in sorted(mine, key=lambda d: d.start))
        print(f"  {worker}: {len(mine)} tasks, busy {busy:.2f}s  ({names})")
    print()


def print_timeline(done: list[Done], elapsed: float, width: int = 64) -> None:
    """One row per worker; each task drawn with its letter from its start to its end."""
    scale = width / elapsed
    for worker in sorted({d.worker for d in done}):
        row = [" "] * width
        mine = sorted((d for d in done if d.worker == worker), key=lambda d: d.start)
        for d, following in itertools.zip_longest(mine, mine[1:]):
            # a task taken straight after this one starts where this one's bar ends
            end = following.start if following and following.start - d.end < 0.002 else d.end
            left, right = round(d.start * scale), round(end * scale)
            for i in range(left, min(max(right, left + 1), width)):
                row[i] = LABELS[d.task]
        print(f"  {worker} |{''.join(row)}|")
    legend = [f"{label}={task}" for task, label in LABELS.items()]
    for row_start in range(0, len(legend), 8):
        print("  " + "  ".join(legend[row_start:row_start + 8]))
    print()


def check(done: list[Done], elapsed: float, ideal: float) -> None:
    """The guarantees this example demonstrates."""
    assert [d.task for d in done] == list(TASKS), "map returns results in input order"
    assert len({d.worker for d in done}) == WORKERS, "every worker took part"
    last_start = max(d.start for d in done)
    for worker in {d.worker for d in done}:
        mine = sorted((d for d in done if d.worker == worker), key=lambda d: d.start)
        assert mine[0].start < 0.02, f"{worker} started late"
        for previous, following in itertools.pairwise(mine):
            gap = following.start - previous.end
            assert gap < 0.02, f"{worker} idled {gap:.3f}s while tasks were waiting"
        # a worker may rest only once the last task has left the queue
        assert mine[-1].end >= last_start - 0.02, f"{worker} stopped while tasks waited"
    assert elapsed < ideal * 1.5 + 0.05, f"took {elapsed:.2f}s, ideal {ideal:.2f}s"


if __name__ == "__main__":
    # The narrative tells the story; keep only the pool's warnings.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncq.run(main())
