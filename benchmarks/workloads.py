"""Workload definitions: the job coroutine, the expected results and per-run bookkeeping.

A :class:`JobSet` is built fresh for every run inside the child process.  It carries two
variants of the job function:

* ``native`` is handed to a system that retries by itself (asyncq with ``Retry``);
* ``emulated`` wraps ``native`` in an in-job retry loop for systems that have no retry.

For every workload except ``retry`` both variants behave identically.  ``keyed`` is ``noop``
with ``key_count`` set: asyncq submits job ``i`` with ``key=i % key_count``.  The
``fairness-*`` workloads are listed here for the command line but run by
:mod:`benchmarks.fairness`.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

JobFn = Callable[[int], Coroutine[Any, Any, int]]

#: Seed for the random delays of the ``delayed`` workload, so every system sees the same plan.
DELAY_SEED = 20240611
#: Default upper bound of the uniform random delay of the ``delayed`` workload, in seconds.
MAX_DELAY_S = 0.1
#: Sleep used by the ``io`` workload, in seconds.
IO_SLEEP_S = 0.001


#: Distinct keys of the ``keyed`` workload (job ``i`` gets key ``i % KEY_COUNT``).
KEY_COUNT = 1_000
#: ``fairness-*`` workloads: one group-B job is submitted after every ``FLOOD_RATIO`` A jobs.
FLOOD_RATIO = 100
#: Workloads measured by :mod:`benchmarks.fairness` (queue waits, not a throughput race).
FAIRNESS_WORKLOADS = ("fairness-off", "fairness-on")


class FlakyError(Exception):
    """Raised by the ``retry`` workload on the first attempt of every job."""


class Unsupported(Exception):
    """The system (e.g. asyncq at an old ref) lacks a feature the workload needs.

    The child reports the measurement as skipped for this workload only.
    """


@dataclass(frozen=True)
class Workload:
    """Static description of one workload."""

    name: str
    default_jobs: int
    quick_jobs: int
    workers: tuple[int, ...] | None  # None: use the --workers list
    systems: frozenset[str] | None  # None: every system supports it
    description: str
    #: When set, every selected system outside ``systems`` gets a "skipped" row saying this.
    skip_note: str | None = None


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("noop", 200_000, 2_000, None, None, "async def f(i): return i"),
        Workload("sleep0", 200_000, 2_000, None, None, "await asyncio.sleep(0); return i"),
        Workload("io", 50_000, 2_000, (512,), None, "await asyncio.sleep(0.001); return i"),
        Workload("retry", 100_000, 2_000, None, None, "raises once per job, succeeds on attempt 2"),
        Workload(
            "delayed",
            100_000,
            2_000,
            None,
            frozenset({"asyncq", "bare"}),
            "noop started after a random delay uniform in [0, 0.1] s",
        ),
        Workload(
            "heartbeat",
            200_000,
            2_000,
            (8,),
            frozenset({"asyncq", "bare"}),
            "noop at full speed while a 1 ms heartbeat task records its lateness",
        ),
        Workload(
            "keyed",
            200_000,
            2_000,
            None,
            frozenset({"asyncq"}),
            "noop submitted with pool.options(key=i % 1000); compared with asyncq's noop",
            "keyed is asyncq-only: this system has no per-key ordering",
        ),
        Workload(
            "fairness-off",
            20_000,
            2_000,
            (8,),
            frozenset({"asyncq"}),
            "A floods 100x more sleep0 jobs than B, no groups; B's queue wait",
        ),
        Workload(
            "fairness-on",
            20_000,
            2_000,
            (8,),
            frozenset({"asyncq"}),
            "as fairness-off, with options(group='A') / options(group='B')",
        ),
    )
}


@dataclass
class JobSet:
    """Everything a system needs to run ``n`` jobs of one workload, plus result checking."""

    workload: str
    n: int
    native: JobFn
    emulated: JobFn
    retry_attempts: int = 1
    key_count: int = 0  # > 0: submit job i with key i % key_count (asyncq only)
    delays: list[float] | None = None
    due: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)

    def check(self, results: list[object]) -> str | None:
        """Return a description of the first problem with ``results``, or None if all correct."""
        if len(results) != self.n:
            return f"expected {self.n} results, got {len(results)}"
        for i, value in enumerate(results):
            if value != i:
                return f"result {i} is {value!r}, expected {i}"
        return None

    def extras(self) -> dict[str, float]:
        """Workload-specific extra fields for the JSON record (e.g. ``lateness_p50_ms``)."""
        if self.delays is None or not self.started:
            return {}
        lateness = [s - d for s, d in zip(self.started, self.due, strict=True)]
        return {
            "lateness_p50_ms": round(statistics.median(lateness) * 1e3, 3),
            "lateness_max_ms": round(max(lateness) * 1e3, 3),
        }


def with_retries(fn: JobFn, attempts: int) -> JobFn:
    """Wrap ``fn`` in an in-job loop that retries :class:`FlakyError` up to ``attempts`` times."""

    async def retrying(i: int) -> int:
        for attempt in range(1, attempts + 1):
            try:
                return await fn(i)
            except FlakyError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    return retrying


def make_jobset(workload: str, n: int, max_delay: float = MAX_DELAY_S) -> JobSet:
    """Build a fresh :class:`JobSet` (fresh state, fresh delay plan) for one run."""
    if workload == "heartbeat":
        last_run: list[float] = []

        async def noop_marking_the_end(i: int) -> int:
            if i == n - 1:
                last_run.append(perf_counter())  # the heartbeat window ends here
            return i

        return JobSet(workload, n, noop_marking_the_end, noop_marking_the_end,
                      started=last_run)

    if workload in ("noop", "keyed"):

        async def noop(i: int) -> int:
            return i

        keys = KEY_COUNT if workload == "keyed" else 0
        return JobSet(workload, n, noop, noop, key_count=keys)

    if workload == "sleep0":

        async def sleep0(i: int) -> int:
            await asyncio.sleep(0)
            return i

        return JobSet(workload, n, sleep0, sleep0)

    if workload == "io":

        async def io(i: int) -> int:
            await asyncio.sleep(IO_SLEEP_S)
            return i

        return JobSet(workload, n, io, io)

    if workload == "retry":
        failed = bytearray(n)

        async def flaky(i: int) -> int:
            if not failed[i]:
                failed[i] = 1
                raise FlakyError(i)
            return i

        return JobSet(workload, n, flaky, with_retries(flaky, 2), retry_attempts=2)

    if workload == "delayed":
        rng = random.Random(DELAY_SEED)
        delays = [rng.uniform(0.0, max_delay) for _ in range(n)]
        due = [0.0] * n
        started = [0.0] * n

        async def timed(i: int) -> int:
            started[i] = perf_counter()
            return i

        return JobSet(workload, n, timed, timed, delays=delays, due=due, started=started)

    raise ValueError(f"unknown workload {workload!r}")
