"""A CI/CD runner that executes pipeline jobs one at a time, in the order they arrived.

Some pipeline steps must never overlap: two deploys to the same environment, two jobs that
share a build directory, a database migration. A pool with a single worker gives exactly
that: jobs start in submission order (FIFO) and each one finishes before the next starts,
while pushes keep arriving and simply queue up behind the running job.

The script queues the pipelines of five pushes, then a sixth push arrives late while the
runner is busy; one pipeline fails its tests and the runner carries on with the next. It
prints when each job starts and ends and a timeline, then checks that no two jobs
overlapped, that they ran in arrival order and that every job is accounted for.

Run it with ``python examples/ci_pipeline_queue.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

import structlog

import asyncq

BEGAN = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - BEGAN:5.2f}s] {message}", flush=True)


@dataclass
class Run:
    """When a pipeline job actually ran (seconds since the script began)."""

    commit: str
    start: float
    end: float = 0.0


class TestsFailed(Exception):
    """The pipeline ran, and its test stage reported failures."""


runs: list[Run] = []
arrivals: list[str] = []


async def pipeline(commit: str, *, seconds: float, failing_tests: int = 0) -> str:
    """Build, test and package one commit (the work is simulated by a sleep)."""
    run = Run(commit, time.monotonic() - BEGAN)
    runs.append(run)
    say(f"  start  {commit}")
    try:
        await asyncio.sleep(seconds)
        if failing_tests:
            raise TestsFailed(f"{commit}: {failing_tests} tests failed")
        return f"{commit}: build passed, artifact published"
    finally:
        run.end = time.monotonic() - BEGAN
        say(f"  end    {commit}")


async def push(pool: asyncq.Pool, commit: str, *, seconds: float,
               failing_tests: int = 0) -> asyncq.Job[str]:
    """A push to the repository: queue its pipeline behind whatever is already there."""
    before = pool.stats()
    arrivals.append(commit)
    job = await pool.submit(pipeline, commit, seconds=seconds, failing_tests=failing_tests)
    say(f"push {commit} -> job {job.id}, {before.running + before.waiting} job(s) ahead of it")
    return job


async def late_push(pool: asyncq.Pool) -> asyncq.Job[str]:
    """A developer pushes while the runner is busy with the earlier pipelines."""
    await asyncio.sleep(0.09)
    job = await push(pool, "e5f6a7 (late)", seconds=0.03)
    assert job.state is asyncq.JobState.WAITING, "the runner is busy: a new job must wait"
    return job


async def main() -> None:
    async with asyncq.Pool(workers=1, maxsize=20) as runner:
        say("CI runner up: 1 worker, so pipelines never overlap")
        jobs = [
            await push(runner, "a1b2c3", seconds=0.04),
            await push(runner, "d4e5f6", seconds=0.03),
            await push(runner, "0badc0de", seconds=0.02, failing_tests=2),
            await push(runner, "c0ffee", seconds=0.04),
            await push(runner, "facade", seconds=0.02),
        ]
        late = asyncio.create_task(late_push(runner))
        for job in jobs:
            await report(job)
        jobs.append(await late)
        await report(jobs[-1])
        stats = runner.stats()

    print()
    print_timeline(runs)
    check(jobs, stats)
    say(f"ok: {len(runs)} jobs ran one at a time, in arrival order; "
        f"{stats.succeeded} passed, {stats.dead} failed")


async def report(job: asyncq.Job[str]) -> None:
    """Wait for a pipeline job and say how it ended."""
    try:
        say(f"job {job.id}: {await job}")
    except TestsFailed as exc:
        say(f"job {job.id}: FAILED ({exc}); the runner goes on with the next job")


def print_timeline(runs: list[Run], width: int = 60) -> None:
    """One row per job, a bar from its start to its end on a shared time axis."""
    origin = runs[0].start
    span = max(run.end for run in runs) - origin
    for run in runs:
        left = round((run.start - origin) / span * width)
        right = max(left + 1, round((run.end - origin) / span * width))
        bar = " " * left + "#" * (right - left)
        print(f"  {run.commit:>14} |{bar:<{width}}| {run.start - origin:.3f}-"
              f"{run.end - origin:.3f}s")
    print()


def check(jobs: list[asyncq.Job[str]], stats: asyncq.Stats) -> None:
    """The guarantees this example demonstrates."""
    assert [run.commit for run in runs] == arrivals, "jobs must start in arrival order"
    for earlier, later in itertools.pairwise(runs):
        assert earlier.end <= later.start, f"{earlier.commit} overlapped {later.commit}"
    assert all(job.done() for job in jobs)
    assert sum(job.state is asyncq.JobState.SUCCEEDED for job in jobs) == 5
    assert sum(job.state is asyncq.JobState.DEAD for job in jobs) == 1
    assert stats.submitted == len(jobs) == len(runs)
    assert stats.submitted == (stats.succeeded + stats.dead + stats.cancelled + stats.waiting
                               + stats.delayed + stats.running)


if __name__ == "__main__":
    # The narrative tells the story; keep only the pool's warnings (such as job.dead).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncq.run(main())
