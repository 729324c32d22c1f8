"""The benchmark systems that are not a pool: what they run and what they return."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import systems, workloads


@pytest.mark.parametrize("workload", ["noop", "io", "retry"])
def test_slices_runs_every_job_once_in_w_tasks(workload: str) -> None:
    """The no-queue system: every job runs exactly once (twice for retry, failing first),
    at most W at a time, and its results pass the runner's check."""
    jobs = workloads.make_jobset(workload, 103)
    inner = jobs.native  # for retry: fails on the first attempt; else the job itself
    calls: list[int] = []
    running = peak = 0

    async def counted(i: int) -> object:
        nonlocal running, peak
        calls.append(i)
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0)
            return await inner(i)
        finally:
            running -= 1

    jobs.emulated = workloads.with_retries(counted, jobs.retry_attempts)
    outcome = asyncio.run(systems.run_slices(jobs, 8, 1000))
    assert jobs.check(outcome.results) is None
    assert sorted(calls) == sorted(list(range(103)) * jobs.retry_attempts)
    assert peak == 8
