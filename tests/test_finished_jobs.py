"""What a succeeded job keeps, and that letting go of the rest leaks nothing.

A succeeded handle keeps its id, state, attempts, options and result. It drops its
arguments, its function and its pool (its class becomes ``asyncq.Job``). With the C storage
it also leaves the garbage collector's lists when nothing it still holds could refer back
to it (see ``asyncq._job.finish``). The tests below build the reference cycles a program
makes through a job: its function, its pool's ``on_dead``, its key, its result, its retry
policy. Each cycle must still be collected once the program drops it.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any, ClassVar

import pytest

import asyncq
from asyncq import _job
from asyncq._options import JobOptions, atomic
from tests.test_speedups import speedups_with_states


async def double(i: int) -> int:
    return 2 * i


async def test_a_succeeded_job_keeps_its_result_and_lets_go_of_the_rest() -> None:
    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(double, 21)
        assert type(job) is not asyncq.Job  # until it ends: the pool's own subclass
        assert isinstance(job, asyncq.Job)
        assert job.fn is double
        options = job.options
        assert await job == 42
        assert type(job) is asyncq.Job
        dropped: tuple[object, ...] = (job.fn, job.args, job.kwargs)
        assert dropped == (None, None, None)
        assert job.options is options
        assert (job.state, job.attempts, job.error) == (asyncq.JobState.SUCCEEDED, 1, None)
        assert repr(job) == f"<Job {job.id} SUCCEEDED attempts=1>"
        assert not job.cancel()
        assert await job == 42  # awaiting again still gives the result
    # with the C storage, out of the collector's lists; pure Python cannot untrack
    assert gc.is_tracked(job) is not _job.SPEEDUPS


async def test_every_path_to_success_lets_go() -> None:
    """The worker's inline path, and Outcomes.succeed (a latency sample, a key, a retry)."""
    retry = asyncq.Retry(attempts=2, delay=0.0, jitter=False)
    failed: set[int] = set()

    async def flaky(i: int) -> int:
        if i not in failed:
            failed.add(i)
            raise ValueError(i)
        return i

    async with asyncq.Pool(workers=2, retry=retry) as pool:
        jobs = [await pool.submit(double, i) for i in range(50)]  # some are timed samples
        jobs += [await pool.options(key="k").submit(double, i) for i in range(5)]
        jobs += [await pool.submit(flaky, i) for i in range(5)]  # first_failed_at was set
        await pool.map(double, range(3))
        for job in jobs:
            await job
    for job in jobs:
        assert type(job) is asyncq.Job
        assert job.fn is None
        assert gc.is_tracked(job) is not _job.SPEEDUPS
    assert all(job.attempts == 2 and job.first_failed_at is None for job in jobs[-5:])


async def test_a_job_that_did_not_succeed_keeps_what_it_ran() -> None:
    async def boom() -> None:
        raise ValueError("no")

    async with asyncq.Pool(workers=1) as pool:
        dead = await pool.submit(boom)
        with pytest.raises(ValueError, match="no"):
            await dead
        assert dead.state is asyncq.JobState.DEAD
        assert dead.fn is boom
        assert type(dead) is not asyncq.Job
        assert gc.is_tracked(dead)


class Holder:
    """Something that keeps handles, and is reached from a job."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []

    async def work(self, i: int) -> int:
        return i

    def alert(self, letter: asyncq.DeadLetter) -> None:
        pass


async def collected(make: Any) -> None:
    """Run ``make()`` (it returns what must be collected), drop it, and check it goes."""
    alive = weakref.ref(await make())
    gc.collect()
    assert alive() is None, "a cycle through a finished job was not collected"


async def test_a_cycle_through_the_function_is_collected() -> None:
    async def make() -> Holder:
        holder = Holder()
        async with asyncq.Pool(workers=1) as pool:
            holder.jobs.append(await pool.submit(holder.work, 1))  # job -> fn -> holder
            assert await holder.jobs[0] == 1
        return holder

    await collected(make)


async def test_a_cycle_through_a_closure_is_collected() -> None:
    class Box:
        pass

    async def make() -> Box:
        box = Box()
        handles: list[Any] = []

        async def work() -> int:
            return len(handles) + (box is not None)  # job -> fn -> cells -> handles, box

        async with asyncq.Pool(workers=1) as pool:
            handles.append(await pool.submit(work))
            await handles[0]
        return box

    await collected(make)


async def test_a_cycle_through_the_pool_is_collected() -> None:
    class Orchestrator(Holder):
        def __init__(self) -> None:
            super().__init__()
            self.pool = asyncq.Pool(workers=1, on_dead=self.alert)  # pool -> self

    async def make() -> Orchestrator:
        orchestrator = Orchestrator()
        async with orchestrator.pool:
            # job -> (its pool's class) -> core -> on_dead -> orchestrator -> job
            orchestrator.jobs.append(await orchestrator.pool.submit(double, 1))
            await orchestrator.jobs[0]
        return orchestrator

    await collected(make)


async def test_a_cycle_through_the_key_is_collected() -> None:
    async def make() -> Holder:
        key = Holder()
        async with asyncq.Pool(workers=1) as pool:
            key.jobs.append(await pool.options(key=key).submit(double, 1))  # job -> key
            await key.jobs[0]
            assert not key.jobs[0].options.inert
        return key

    await collected(make)


async def test_a_cycle_through_the_result_is_collected() -> None:
    class Result:
        job: Any = None

    async def me() -> Result:
        result = Result()
        result.job = asyncq.current_job()  # the result refers to its own job
        return result

    async def make() -> Result:
        async with asyncq.Pool(workers=1) as pool:
            job = await pool.submit(me)
            result = await job
            assert gc.is_tracked(job)  # its result is tracked: so is the job
        return result

    await collected(make)


async def test_a_cycle_through_the_retry_policy_is_collected() -> None:
    async def make() -> type[Exception]:
        class Flaky(Exception):
            jobs: ClassVar[list[Any]] = []  # job -> options -> retry -> Flaky -> jobs -> job

        retry = asyncq.Retry(attempts=2, delay=0.0, retry_on=(Flaky,))
        async with asyncq.Pool(workers=1, retry=retry) as pool:
            Flaky.jobs.append(await pool.submit(double, 1))
            await Flaky.jobs[0]
        return Flaky

    await collected(make)


async def test_a_cycle_made_later_through_a_plain_dict_result_is_collected() -> None:
    """A dict of atoms is not tracked by CPython until something tracked goes in: a job
    whose result it is must stay tracked, or the cycle made below could not be found."""

    class Marker:
        pass

    async def record() -> dict[str, Any]:
        return {"status": "ok", "n": 1}

    async def make() -> Marker:
        async with asyncq.Pool(workers=1) as pool:
            job = await pool.submit(record)
            result = await job
        assert gc.is_tracked(job)
        marker = Marker()
        result["job"], result["marker"] = job, marker  # job -> result -> job
        return marker

    await collected(make)


class Level(int):
    """An int that can hold references (it has a ``__dict__``)."""

    holder: Holder


async def test_a_cycle_through_an_int_subclass_option_is_collected() -> None:
    """``priority`` and ``Retry.attempts`` accept int subclasses, which may hold references."""

    async def make_priority() -> Holder:
        high = Level(5)
        high.holder = Holder()  # job -> options -> high -> holder -> job
        async with asyncq.Pool(workers=1) as pool:
            high.holder.jobs.append(await pool.options(priority=high).submit(double, 1))
            await high.holder.jobs[0]
            assert not high.holder.jobs[0].options.inert
        return high.holder

    async def make_attempts() -> Holder:
        attempts = Level(2)
        attempts.holder = Holder()
        async with asyncq.Pool(workers=1) as pool:
            retry = asyncq.Retry(attempts=attempts)
            attempts.holder.jobs.append(await pool.options(retry=retry).submit(double, 1))
            await attempts.holder.jobs[0]
        return attempts.holder

    await collected(make_priority)
    await collected(make_attempts)


@pytest.mark.parametrize("field", ["fn", "args", "kwargs", "first_failed_at"])
async def test_a_job_that_deletes_a_field_of_its_own_handle_still_succeeds(field: str) -> None:
    async def vandal() -> int:
        job = asyncq.current_job()
        assert job is not None
        delattr(job, field)
        return 7

    async with asyncq.Pool(workers=1) as pool:
        job = await pool.submit(vandal)
        assert await job == 7
        assert job.state is asyncq.JobState.SUCCEEDED


async def test_a_result_is_judged_by_the_same_rule_as_the_options() -> None:
    """The C storage's check of a result and ``asyncq._options.atomic`` agree."""
    deep: object = 1
    for _ in range(6):
        deep = (deep,)  # made now, so still tracked: the collector is off below
    values: list[object] = [None, 3, "s", b"b", 1.5, (), tuple([1, "a"]),
                            tuple([1, tuple([2, tuple("x")])]), tuple(range(8)),
                            tuple(range(9)), deep, (1, []), {}, [], {"a": 1}, Holder()]

    async def give(value: object) -> object:
        return value

    gc.disable()  # a collection could untrack a tuple of atoms between the two checks
    try:
        assert [atomic(v) for v in values] == [True] * 9 + [False] * 7
        async with asyncq.Pool(workers=1) as pool:
            for value in values:
                job = await pool.submit(give, value)
                assert await job is value
                if _job.SPEEDUPS:
                    assert gc.is_tracked(job) is not atomic(value), value
    finally:
        gc.enable()


def test_options_are_inert_when_nothing_they_hold_is_tracked() -> None:
    class Custom(Exception):
        pass

    assert JobOptions().inert
    assert JobOptions(key="env:prod", group=3, priority=5, timeout=1.0).inert
    assert JobOptions(retry=asyncq.Retry(retry_on=(ValueError, OSError))).inert
    assert JobOptions(key=("deploy", "prod", 3), group=(("a", 1), None)).inert
    assert not JobOptions(key=Holder()).inert
    assert not JobOptions(key=("deploy", Holder())).inert
    assert not JobOptions(priority=Level(1)).inert
    assert not JobOptions(retry=asyncq.Retry(attempts=Level(2))).inert
    assert not JobOptions(group=Holder()).inert
    assert not JobOptions(retry=asyncq.Retry(retry_on=(Custom,))).inert
    assert not JobOptions(retry=asyncq.Retry(retry_on=lambda exc: True)).inert
    assert not JobOptions(after=(object(),)).inert
    assert JobOptions().derive(key="a").inert
    assert not JobOptions().derive(key=Holder()).inert


FLAGS = ("plain", "key_only", "inert", "retry_inert")


@pytest.mark.parametrize("changes", [
    {}, {"delay": 2}, {"timeout": 1.5}, {"timeout": None}, {"retry": None},
    {"retry": asyncq.Retry(retry_on=lambda exc: True)}, {"key": "k"}, {"key": Holder()},
    {"priority": -3}, {"group": ("g", 1)}, {"after": [object()]},
    {"delay": 0.25, "key": "k", "priority": 2, "group": "g", "retry": asyncq.Retry()},
], ids=repr)
@pytest.mark.parametrize("base", [
    JobOptions(), JobOptions(delay=1.0, key="base", priority=1, group="a", timeout=3.0),
    JobOptions(retry=asyncq.Retry(retry_on=lambda exc: True)), JobOptions(after=(object(),)),
], ids=["default", "full", "predicate", "after"])
def test_derive_is_the_dataclass_copy_with_validated_changes(
        base: JobOptions, changes: dict[str, Any]) -> None:
    # derive() is written out for speed: it must agree with building the options anew
    derived = base.derive(**changes)
    fields = {name: getattr(base, name) for name in
              ("delay", "timeout", "retry", "key", "priority", "group", "after")}
    fields.update(changes)
    if "delay" in changes:
        fields["delay"] = float(changes["delay"])
    if "retry" in changes and changes["retry"] is None:
        fields["retry"] = JobOptions().retry
    if "after" in changes:
        fields["after"] = tuple(changes["after"])
    built = JobOptions(**fields)
    assert derived == built
    assert [getattr(derived, flag) for flag in FLAGS] == [getattr(built, flag) for flag in FLAGS]
    assert gc.is_tracked(derived) == gc.is_tracked(built)
    assert type(derived.delay) is float
    assert (derived is base) == (not changes)  # nothing to change: the same frozen object


def test_options_of_a_subclass_stay_tracked_and_a_list_of_dependencies_is_copied() -> None:
    class Tagged(JobOptions):  # gets a __dict__: any attribute may refer back to it
        pass

    tagged = Tagged(delay=1.0)
    assert not tagged.inert
    assert gc.is_tracked(tagged)
    derived = tagged.derive(key="k")
    assert type(derived) is Tagged
    assert (derived.delay, derived.key) == (1.0, "k")
    given: list[Any] = []
    kept = JobOptions(after=given)  # type: ignore[arg-type]  # what the type says not to pass
    given.append(object())
    assert kept.after == ()  # a copy: the list growing later changes nothing
    assert kept.inert

    def make() -> weakref.ref[Tagged]:
        cyclic = Tagged()
        object.__setattr__(cyclic, "me", cyclic)  # its __dict__ takes any attribute
        return weakref.ref(cyclic)

    gone = make()
    gc.collect()
    assert gone() is None


def test_inert_options_leave_the_collectors_lists() -> None:
    # with the C storage; pure Python cannot untrack (the options are the same otherwise)
    assert gc.is_tracked(JobOptions(delay=0.5, key="env:prod")) is not _job.SPEEDUPS
    assert gc.is_tracked(JobOptions().derive(timeout=2.0)) is not _job.SPEEDUPS
    assert gc.is_tracked(JobOptions(key=Holder()))
    assert gc.is_tracked(JobOptions(retry=asyncq.Retry(retry_on=lambda exc: True)))


async def test_per_job_options_cost_the_collector_nothing_once_their_jobs_succeed() -> None:
    # pool.options(delay=...) for each job makes one options object per job
    async with asyncq.Pool(workers=4) as pool:
        jobs = [await pool.options(delay=i / 1e6, timeout=30.0).submit(double, i)
                for i in range(200)]
        assert [await job for job in jobs] == [2 * i for i in range(200)]
    tracked = {id(obj) for obj in gc.get_objects()}
    kept = [job for job in jobs if id(job.options) in tracked or id(job) in tracked]
    assert len({id(job.options) for job in jobs}) == 200
    assert len(kept) == (0 if _job.SPEEDUPS else 200)


def test_untrack_inert_takes_only_options_that_say_they_are_inert() -> None:
    module = speedups_with_states()

    class Says:
        __slots__ = ("inert",)

        def __init__(self, inert: object) -> None:
            self.inert = inert

    for value, tracked in ((True, False), (False, True), (1, True), (None, True)):
        obj = Says(value)
        assert module.untrack_inert(obj) is None
        assert gc.is_tracked(obj) is tracked, value
    with pytest.raises(AttributeError):
        module.untrack_inert(object())


async def test_after_takes_a_succeeded_job_of_another_pool_but_not_a_waiting_one() -> None:
    async with asyncq.Pool(workers=1) as first, asyncq.Pool(workers=1) as second:
        done = await first.submit(double, 1)
        assert await done == 2
        follower = await second.options(after=[done]).submit(double, 2)
        assert await follower == 4
        release = asyncio.Event()

        async def hold() -> None:
            await release.wait()

        blocker = await first.submit(hold)
        with pytest.raises(ValueError, match=r"after: job \d+ belongs to another pool"):
            await second.options(after=[blocker]).submit(double, 3)
        release.set()
        await blocker


def test_the_c_functions_check_their_arguments() -> None:
    module = speedups_with_states()
    base: Any = module.JobBase
    job = module.make_job(base, 1, double, (1,), {}, None)
    with pytest.raises(TypeError, match="3 arguments"):
        module.finish(job, 1)
    with pytest.raises(TypeError, match="needs a job"):
        module.finish(object(), 1, True)
    with pytest.raises(ValueError, match="succeeded job"):
        module.let_go(job, True)  # still WAITING
    with pytest.raises(TypeError, match="adopted subclass"):
        module.set_states(asyncq.JobState.WAITING, asyncq.JobState.SUCCEEDED, base)
    assert module.finish(job, 5, True) is None  # nobody awaited it
    assert (job.state, job._outcome, job.fn, job.args) == (asyncq.JobState.SUCCEEDED, 5, None,
                                                           None)
    assert type(job) is base  # not a subclass of the finished class: left as it is
    assert gc.is_tracked(job)
