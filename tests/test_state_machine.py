"""Conservation under random operations: a hypothesis state machine.

It submits jobs that succeed, fail, hang, time out or are slow; cancels jobs; lets the
loop run; and closes the pool (draining or not), checking after every step that
``submitted == succeeded + dead + cancelled + waiting + delayed + running``, that each
handle's state agrees with the counters, and at the end that every handle resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import asyncq
from tests.conftest import LOOP_FACTORIES

KINDS = ["ok", "fail", "flaky", "hang", "slow", "timeout", "retry_later"]


class PoolMachine(RuleBasedStateMachine):
    """Drives one pool on its own event loop, one rule at a time."""

    loop_name = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.loop = LOOP_FACTORIES[self.loop_name]()
        self.release = asyncio.Event()
        self.pool = asyncq.Pool(workers=2, maxsize=4, seed=1,
                                retry=asyncq.Retry(attempts=2, delay=0.001))
        self.jobs: list[asyncq.Job[Any]] = []
        self.flaky_seen: set[int] = set()
        self.closed = False
        self.max_workers = 2
        self.run(self.pool.start())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def job(self, kind: str, tag: int) -> str:
        if kind == "fail":
            raise ValueError(tag)
        if kind == "flaky" and tag not in self.flaky_seen:
            self.flaky_seen.add(tag)
            raise ConnectionError(tag)
        if kind == "retry_later":
            raise asyncq.RetryLater(0.0005)
        if kind in ("hang", "timeout"):
            await self.release.wait()
        if kind == "slow":
            await asyncio.sleep(0.001)
        return kind

    @precondition(lambda self: not self.closed)
    @rule(kind=st.sampled_from(KINDS), delay=st.sampled_from([0, 0, 0.001]))
    def submit(self, kind: str, delay: float) -> None:
        self.submit_nowait(self.pool.options(delay=delay), kind)

    @precondition(lambda self: not self.closed)
    @rule(kind=st.sampled_from(KINDS), key=st.sampled_from([None, "a", "b"]),
          priority=st.sampled_from([0, 0, 1, -1]), group=st.sampled_from([None, "x", "y"]),
          depends=st.booleans())
    def submit_balanced(self, kind: str, key: str | None, priority: int, group: str | None,
                        depends: bool) -> None:
        after = [self.jobs[-1]] if depends and self.jobs else []
        self.submit_nowait(
            self.pool.options(key=key, priority=priority, group=group, after=after), kind)

    def submit_nowait(self, options: asyncq.Submitter, kind: str) -> None:
        if kind == "timeout":
            options = options.options(timeout=0.001)

        async def submit() -> None:
            with contextlib.suppress(asyncq.QueueFull):
                self.jobs.append(options.submit_nowait(self.job, kind, len(self.jobs)))

        self.run(submit())

    @precondition(lambda self: not self.closed)
    @rule(workers=st.integers(min_value=1, max_value=3))
    def resize(self, workers: int) -> None:
        async def resize() -> None:
            self.pool.resize(workers)

        self.run(resize())
        self.max_workers = max(self.max_workers, workers)

    @precondition(lambda self: not self.closed)
    @rule(kind=st.sampled_from(KINDS))
    def submit_waiting_for_room(self, kind: str) -> None:
        async def submit() -> None:
            try:
                async with asyncio.timeout(0.005):
                    self.jobs.append(await self.pool.submit(self.job, kind, len(self.jobs)))
            except TimeoutError:
                pass  # the producer gave up waiting for room; nothing was admitted

        self.run(submit())

    @precondition(lambda self: bool(self.jobs))
    @rule(index=st.integers(min_value=0))
    def cancel(self, index: int) -> None:
        async def cancel() -> None:
            self.jobs[index % len(self.jobs)].cancel()

        self.run(cancel())

    @rule(steps=st.integers(min_value=1, max_value=5))
    def run_loop(self, steps: int) -> None:
        async def spin() -> None:
            for _ in range(steps):
                await asyncio.sleep(0)

        self.run(spin())

    @rule()
    def wait_a_little(self) -> None:
        self.run(asyncio.sleep(0.002))

    @rule()
    def release_hung_jobs(self) -> None:
        self.release.set()
        self.release = asyncio.Event()

    @precondition(lambda self: not self.closed)
    @rule(drain=st.booleans())
    def close(self, drain: bool) -> None:
        self.closed = True
        self.run(self.pool.close(drain=drain, timeout=0.01))
        assert all(job.done() for job in self.jobs)

    @invariant()
    def conservation(self) -> None:
        s = self.pool.stats()
        assert s.submitted == s.succeeded + s.dead + s.cancelled + s.waiting + s.delayed \
            + s.running
        assert s.submitted == len(self.jobs)
        states = [job.state for job in self.jobs]
        assert states.count(asyncq.JobState.SUCCEEDED) == s.succeeded
        assert states.count(asyncq.JobState.DEAD) == s.dead == len(self.pool.dead_letters)
        assert states.count(asyncq.JobState.CANCELLED) == s.cancelled
        assert states.count(asyncq.JobState.RUNNING) == s.running <= self.max_workers
        assert states.count(asyncq.JobState.WAITING) == s.waiting
        assert states.count(asyncq.JobState.DELAYED) == s.delayed
        assert s.waiting + s.delayed <= 4 + self.max_workers  # maxsize + workers
        running_keys = [job for job in self.jobs if job.state is asyncq.JobState.RUNNING
                        and job.options.key is not None]
        assert len({job.options.key for job in running_keys}) == len(running_keys)

    def teardown(self) -> None:
        try:
            if not self.closed:
                self.run(self.pool.close(drain=False))
            assert all(job.done() for job in self.jobs)
            s = self.pool.stats()
            assert s.waiting == s.delayed == s.running == 0
        finally:
            self.loop.close()


machine_settings = settings(max_examples=80, stateful_step_count=40, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])


class AsyncioPoolMachine(PoolMachine):
    loop_name = "asyncio"


class UvloopPoolMachine(PoolMachine):
    loop_name = "uvloop"


TestConservationAsyncio = AsyncioPoolMachine.TestCase
TestConservationAsyncio.settings = machine_settings
TestConservationUvloop = UvloopPoolMachine.TestCase
TestConservationUvloop.settings = machine_settings
