"""Balancing: keys, priorities, fair share, dependencies and live resize."""

from __future__ import annotations

import asyncio

import pytest

import asyncq
from tests.conftest import Gate, assert_conserved, settle, time_no_job, until


async def echo(value: object) -> object:
    return value


async def test_jobs_of_a_key_never_overlap_and_start_in_submission_order() -> None:
    """Jobs sharing a key run one at a time, in submission order, on a many-worker pool."""
    inside: dict[str, int] = {}
    order: dict[str, list[int]] = {}
    overlap = False

    async def deploy(env: str, n: int) -> None:
        nonlocal overlap
        inside[env] = inside.get(env, 0) + 1
        overlap = overlap or inside[env] > 1
        order.setdefault(env, []).append(n)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        inside[env] -= 1

    async with asyncq.Pool(workers=8) as pool:
        for n in range(30):
            for env in ("prod", "staging", "qa"):
                await pool.options(key=env).submit(deploy, env, n)
    assert not overlap
    assert all(seq == list(range(30)) for seq in order.values())


async def test_a_busy_key_does_not_block_other_keys(gate: Gate) -> None:
    """With one slow key holding many queued jobs, jobs of other keys start at once."""
    async with asyncq.Pool(workers=2, maxsize=100) as pool:
        slow = [await pool.options(key="slow").submit(gate.wait, i) for i in range(20)]
        await gate.entered.wait()
        others = [await pool.options(key=f"k{i}").submit(echo, i) for i in range(10)]
        assert [await job for job in others] == list(range(10))
        assert gate.inside == 1  # the slow key still runs one job at a time
        assert all(job.state is asyncq.JobState.WAITING for job in slow[1:])
        stats = pool.stats()
        assert stats.keys_busy == 1
        assert stats.queued_behind_keys == 19
        gate.open()
        assert [await job for job in slow] == list(range(20))


@pytest.mark.parametrize("delay", [0.0, 0.01])
async def test_retry_of_a_keyed_job_keeps_its_place_in_the_key_order(delay: float) -> None:
    """A keyed job that fails and is retried holds its key: later jobs of the key wait,
    with a backoff and without one (no zero-delay shortcut may skip the key's lane)."""
    log: list[str] = []
    failed = False

    async def step(name: str) -> None:
        nonlocal failed
        log.append(name)
        if name == "first" and not failed:
            failed = True
            raise ConnectionError("flaky")

    retry = asyncq.Retry(attempts=2, delay=delay, jitter=False)
    async with asyncq.Pool(workers=4, retry=retry) as pool:
        keyed = pool.options(key="svc")
        first = await keyed.submit(step, "first")
        second = await keyed.submit(step, "second")
        await asyncio.gather(first, second)
    assert log == ["first", "first", "second"]


async def test_cancelling_a_keyed_job_hands_the_key_on(gate: Gate) -> None:
    """A cancelled holder (or a cancelled queued job) never stalls its key."""
    async with asyncq.Pool(workers=2) as pool:
        keyed = pool.options(key="k")
        holder = await keyed.submit(gate.wait, "h")
        queued = await keyed.submit(echo, "q")
        last = await keyed.submit(echo, "l")
        await gate.entered.wait()
        queued.cancel()
        holder.cancel()
        assert await last == "l"
        assert queued.state is holder.state is asyncq.JobState.CANCELLED
        assert_conserved(pool.stats())


async def test_priority_higher_first_fifo_within(gate: Gate) -> None:
    """Higher priority starts first; equal priorities start in submission order."""
    started: list[str] = []

    async def record(name: str) -> None:
        started.append(name)

    async with asyncq.Pool(workers=1) as pool:
        await pool.submit(gate.wait)
        await gate.entered.wait()
        for name, priority in [("low1", -1), ("plain1", 0), ("high1", 5), ("mid", 2),
                               ("high2", 5), ("plain2", 0), ("low2", -1)]:
            await pool.options(priority=priority).submit(record, name)
        gate.open()
    assert started == ["high1", "high2", "mid", "plain1", "plain2", "low1", "low2"]


async def test_a_zero_delay_retry_keeps_its_priority(gate: Gate) -> None:
    """A high-priority job retried at once goes back to its priority, ahead of plain jobs
    that waited longer (no zero-delay shortcut may drop it into the plain queue)."""
    started: list[str] = []
    failed: set[str] = set()

    async def record(name: str) -> None:
        started.append(name)
        if name == "high" and name not in failed:
            failed.add(name)
            raise ConnectionError("flaky")

    async with asyncq.Pool(workers=1, retry=asyncq.Retry(attempts=2, delay=0)) as pool:
        time_no_job(pool)
        await pool.submit(gate.wait)
        await gate.entered.wait()
        high = await pool.options(priority=5).submit(record, "high")
        for name in ("plain1", "plain2"):
            await pool.submit(record, name)
        gate.open()
        await high
    assert started == ["high", "high", "plain1", "plain2"]


async def test_priority_aging_prevents_starvation() -> None:
    """With priority_aging, a job's priority rises by one per aging interval it waits, so
    a low-priority job that waited long starts before fresh high-priority ones; without
    aging it waits for all of them."""
    for aging, expected_first in ((None, "high"), (0.01, "low")):
        started: list[str] = []

        async def record(name: str) -> None:
            started.append(name)  # noqa: B023 - each round has its own list

        round_gate = Gate()
        async with asyncq.Pool(workers=1, priority_aging=aging) as pool:
            await pool.submit(round_gate.wait)
            await round_gate.entered.wait()
            await pool.options(priority=0).submit(record, "low")
            await asyncio.sleep(0.06)  # six aging intervals: effective priority about 6
            for _ in range(5):
                await pool.options(priority=2).submit(record, "high")
            round_gate.open()
        assert started[0] == expected_first, (aging, started)


async def test_a_retry_put_in_front_of_an_aged_lane_keeps_the_lane_s_age(gate: Gate) -> None:
    """With priority_aging, a lane ages by its oldest job. A job retried with no delay goes
    back to the front of its lane and takes that age: the low-priority jobs that had waited
    long enough to run before fresh high-priority ones still do (the clock stands still)."""
    now = [0.0]
    started: list[str] = []
    failed: set[str] = set()

    async def record(name: str) -> None:
        started.append(name)
        if name == "low1" and name not in failed:
            failed.add(name)
            raise ConnectionError(name)

    async with asyncq.Pool(workers=1, priority_aging=1.0,
                           retry=asyncq.Retry(attempts=2, delay=0)) as pool:
        assert pool._core is not None
        pool._core.balancer.clock = lambda: now[0]
        await pool.submit(gate.wait)
        await gate.entered.wait()
        jobs = [await pool.options(priority=0).submit(record, name) for name in ("low1", "low2")]
        now[0] = 3.0  # the low lane has waited 3 s: effective priority 3
        jobs += [await pool.options(priority=2).submit(record, name)
                 for name in ("high1", "high2")]
        gate.open()
        await asyncio.gather(*jobs)
    assert started == ["low1", "low1", "low2", "high1", "high2"]
    assert_conserved(pool.stats())


async def test_fair_share_between_groups(gate: Gate) -> None:
    """A flood from one group does not starve another: groups take turns, by weight."""
    started: list[str] = []

    async def record(group: str) -> None:
        started.append(group)

    async with asyncq.Pool(workers=1, maxsize=None, group_weights={"big": 2}) as pool:
        await pool.submit(gate.wait)
        await gate.entered.wait()
        for _ in range(100):
            await pool.options(group="big").submit(record, "big")
        for _ in range(5):
            await pool.options(group="small").submit(record, "small")
        gate.open()
    # turns of 2 "big" then 1 "small" until "small" runs out
    assert started[:15] == ["big", "big", "small"] * 5
    assert started.count("small") == 5


async def test_after_runs_only_when_dependencies_succeed() -> None:
    """A job with after= starts only when every dependency has succeeded."""
    log: list[str] = []

    async def step(name: str) -> str:
        await asyncio.sleep(0)
        log.append(name)
        return name

    async with asyncq.Pool(workers=4) as pool:
        build = await pool.submit(step, "build")
        test = await pool.options(after=[build]).submit(step, "test")
        lint = await pool.options(after=build).submit(step, "lint")
        deploy = await pool.options(after=[test, lint]).submit(step, "deploy")
        assert await deploy == "deploy"
    assert log[0] == "build"
    assert log[-1] == "deploy"
    assert set(log[1:3]) == {"test", "lint"}


async def test_failed_dependency_cancels_dependents_transitively() -> None:
    """If a dependency dies, its dependents never run: they end CANCELLED and awaiting
    them raises DependencyFailed naming the failed job; dependents of dependents follow;
    none of them goes to the dead letters."""
    ran: list[str] = []

    async def broken() -> None:
        raise ValueError("build broke")

    async def step(name: str) -> None:
        ran.append(name)

    async with asyncq.Pool(workers=2) as pool:
        build = await pool.submit(broken)
        test = await pool.options(after=[build]).submit(step, "test")
        deploy = await pool.options(after=[test]).submit(step, "deploy")
        with pytest.raises(asyncq.DependencyFailed) as caught:
            await test
        assert caught.value.dependency_id == build.id
        with pytest.raises(asyncq.DependencyFailed) as caught:
            await deploy
        assert caught.value.dependency_id == test.id
        late = await pool.options(after=[build]).submit(step, "late")
        with pytest.raises(asyncq.JobCancelled):
            await late
    assert ran == []
    assert len(pool.dead_letters) == 1
    assert_conserved(pool.stats())


async def test_jobs_waiting_on_dependencies_count_toward_the_bound(gate: Gate) -> None:
    """Jobs waiting on dependencies are held jobs: they use maxsize slots."""
    async with asyncq.Pool(workers=1, maxsize=3) as pool:
        first = await pool.submit(gate.wait)
        await gate.entered.wait()
        for _ in range(3):
            await pool.options(after=[first]).submit(echo, 1)
        assert pool.stats().waiting == 3
        with pytest.raises(asyncq.QueueFull):
            pool.submit_nowait(echo, 2)
        gate.open()


async def test_after_rejects_jobs_of_another_pool() -> None:
    """after= must name jobs of the same pool (checked at the call)."""
    async with asyncq.Pool() as one, asyncq.Pool() as two:
        job = await one.submit(echo, 1)
        with pytest.raises(ValueError, match="after"):
            await two.options(after=[job]).submit(echo, 2)
        with pytest.raises(TypeError, match="after"):
            two.options(after=[1])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="priority"):
            two.options(priority=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key"):
            two.options(key=[1])


async def test_resize_grows_and_shrinks_live(gate: Gate) -> None:
    """resize(n) adds workers at once; shrinking lets running jobs finish."""
    async with asyncq.Pool(workers=1, maxsize=None) as pool:
        jobs = [await pool.submit(gate.wait, i) for i in range(6)]
        await until(lambda: gate.inside == 1)
        pool.resize(4)
        await until(lambda: gate.inside == 4)
        pool.resize(2)
        assert pool.workers == 2
        assert gate.inside == 4  # running jobs are never interrupted
        gate.open()
        assert [await j for j in jobs] == list(range(6))
        await settle()
        assert pool.stats().workers == 2
        core = pool._core
        assert core is not None
        assert len(core.workers) == 2
        with pytest.raises(ValueError, match="workers"):
            pool.resize(0)


async def test_conservation_with_balancing_under_close(gate: Gate) -> None:
    """Keys, priorities, groups and dependencies all resolve on a cancelling close."""
    pool = asyncq.Pool(workers=2, maxsize=None)
    await pool.start()
    jobs = [await pool.submit(gate.wait)]
    for i in range(30):
        options = pool.options(key=f"k{i % 3}", priority=i % 4, group=f"g{i % 2}")
        if i % 5 == 0:
            options = options.options(after=[jobs[-1]])
        jobs.append(await options.submit(gate.wait))
    await gate.entered.wait()
    await pool.close(drain=False)
    assert all(job.done() for job in jobs)
    stats = pool.stats()
    assert_conserved(stats)
    assert stats.waiting == stats.running == stats.delayed == 0
