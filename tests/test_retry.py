"""Retry policy: backoff, jitter, retry_on, RetryLater."""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import itertools
import random
from typing import Any, cast

import pytest

import asyncq
from asyncq._core import Core
from asyncq._outcomes import AT_ONCE_MAX
from tests.conftest import Flaky, assert_conserved, time_no_job, until


def test_backoff_is_exponential_and_capped() -> None:
    """Without jitter the waits are delay * factor**(n-1), capped at max_delay."""
    policy = asyncq.Retry(attempts=10, delay=0.5, factor=2.0, max_delay=3.0, jitter=False)
    rng = random.Random(0)
    assert [policy.backoff(n, rng) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    huge = asyncq.Retry(attempts=10**6, delay=1.0, factor=10.0, max_delay=7.0, jitter=False)
    assert huge.backoff(10**6, rng) == 7.0  # no overflow for very late attempts


def test_full_jitter_is_seedable_and_bounded() -> None:
    """Full jitter draws from [0, ceiling]; the same seed gives the same waits."""
    policy = asyncq.Retry(attempts=5, delay=1.0, factor=2.0, max_delay=10.0)
    first = [asyncq.backoff(policy, n, random.Random(42)) for n in range(1, 5)]
    again = [asyncq.backoff(policy, n, random.Random(42)) for n in range(1, 5)]
    assert first == again
    for n, wait in enumerate(first, start=1):
        assert 0.0 <= wait <= min(10.0, 2.0 ** (n - 1))
    spread = {round(policy.backoff(3, random.Random(s)), 6) for s in range(50)}
    assert len(spread) > 40


def test_retry_on_types_and_predicate() -> None:
    """retry_on accepts a type, a tuple of types, or a predicate."""
    by_type = asyncq.Retry(retry_on=ConnectionError)
    assert by_type.retryable(ConnectionResetError())
    assert not by_type.retryable(ValueError())
    by_tuple = asyncq.Retry(retry_on=(ValueError, KeyError))
    assert by_tuple.retryable(KeyError())
    assert not by_tuple.retryable(OSError())
    by_predicate = asyncq.Retry(retry_on=lambda exc: "again" in str(exc))
    assert by_predicate.retryable(RuntimeError("try again"))
    assert not by_predicate.retryable(
        RuntimeError("fatal"))


async def test_not_retryable_error_goes_to_dead_letters_at_once() -> None:
    """An error refused by retry_on is not retried: one attempt, reason not_retryable."""
    async def bad() -> None:
        raise ValueError("bad input")

    async with asyncq.Pool(workers=1, retry=asyncq.Retry(attempts=5, delay=0,
                                                         retry_on=ConnectionError)) as pool:
        job = await pool.submit(bad)
        with pytest.raises(ValueError, match="bad input"):
            await job
        assert job.attempts == 1
        assert next(iter(pool.dead_letters)).reason == "not_retryable"


async def test_retry_waits_on_the_timer_with_backoff() -> None:
    """Retries of a failing job are spaced by the backoff on the loop's clock."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def flaky() -> str:
        starts.append(loop.time())
        if len(starts) < 3:
            raise ConnectionError("flaky")
        return "ok"

    policy = asyncq.Retry(attempts=3, delay=0.01, factor=2.0, jitter=False)
    async with asyncq.Pool(workers=1, retry=policy) as pool:
        job = await pool.submit(flaky)
        assert job.state is asyncq.JobState.WAITING
        assert await job == "ok"
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    tolerance = 0.002  # uvloop's clock ticks in milliseconds
    assert gaps[0] >= 0.01 - tolerance
    assert gaps[1] >= 0.02 - tolerance
    assert pool.stats().retried == 2
    assert pool.stats().failed == 2


async def test_a_retry_subclass_chooses_its_own_backoff() -> None:
    """The pool asks the policy for its backoff, so a subclass of ``Retry`` that overrides
    ``backoff`` (here: a fixed schedule) is obeyed."""
    calls: list[int] = []

    @dataclasses.dataclass(frozen=True, slots=True)
    class Scheduled(asyncq.Retry):
        def backoff(self, failed_attempts: int, rng: random.Random) -> float:
            calls.append(failed_attempts)
            return (0.0, 0.5)[failed_attempts - 1]  # the second retry would wait 0.5 s

    flaky = Flaky(2)
    async with asyncq.Pool(workers=1, retry=Scheduled(attempts=3, delay=0.01)) as pool:
        job = await pool.submit(flaky.run)
        await until(lambda: pool.stats().delayed == 1)  # on the timer for its 0.5 s
        assert calls == [1, 2]
        assert flaky.calls == 2
        job.cancel()


async def test_retry_later_signal_sets_the_delay_and_uses_an_attempt() -> None:
    """A job raising RetryLater(delay) is retried after that delay regardless of
    retry_on, and dies when its attempts are used up."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def not_ready() -> None:
        starts.append(loop.time())
        raise asyncq.RetryLater(0.01, "resource busy")

    async with asyncq.Pool(workers=1, retry=asyncq.Retry(attempts=3, delay=5,
                                                         retry_on=KeyError)) as pool:
        job = await pool.submit(not_ready)
        with pytest.raises(asyncq.RetryLater, match="resource busy"):
            await job
    assert job.attempts == 3
    assert all(0.008 <= b - a < 1 for a, b in itertools.pairwise(starts))


async def test_retry_of_admitted_job_never_waits_for_room() -> None:
    """A full pool whose every job fails once still completes: retries skip admission."""
    seen: set[int] = set()

    async def fail_first(i: int) -> int:
        if i not in seen:
            seen.add(i)
            raise ConnectionError("once")
        return i

    async with asyncq.Pool(workers=2, maxsize=2,
                           retry=asyncq.Retry(attempts=2, delay=0.001)) as pool:
        results = await pool.map(fail_first, range(200))
    assert results == list(range(200))
    assert pool.stats().retried == 200


@dataclasses.dataclass(frozen=True, slots=True)
class SameRetry(asyncq.Retry):
    """A ``Retry`` subclass that changes nothing, so the pool asks it the long way."""


def attempt_now() -> int:
    """The number of the running job's current attempt (called from a job's code)."""
    job = asyncq.current_job()
    assert job is not None
    return job.attempts


def spy_on_the_long_way(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the jobs whose retry went the long way (through ``schedule_retry``)."""
    calls: list[int] = []
    schedule_retry = Core.schedule_retry

    def spy(core: Core, job: asyncq.Job[Any], delay: float, error: BaseException) -> None:
        calls.append(job.id)
        schedule_retry(core, job, delay, error)

    monkeypatch.setattr(Core, "schedule_retry", spy)
    return calls


#: What became of each job (state, attempts, result or error class name), the counters
#: (succeeded, failed, retried, dead) and the dead letters (job id, attempts, reason, error
#: class name, first and last failure time).
MixedOutcome = tuple[list[tuple[asyncq.JobState, int, int | str]], tuple[int, int, int, int],
                     list[tuple[int, int, str, str, float, float]]]


async def run_mixed_failures(policy: asyncq.Retry, clock: list[float]) -> MixedOutcome:
    """Jobs that fail 0-3 times, refuse to retry, or ask for a retry later; what became of
    each (state, attempts, outcome), the counters and the dead letters. Each attempt sets
    the wall clock (``clock[0]``) to ``10 * i + attempt``."""
    async def job(i: int) -> int:
        attempt = attempt_now()
        clock[0] = 10.0 * i + attempt
        if i % 5 == 0:
            raise ValueError(f"bad {i}")  # not in retry_on
        if i % 7 == 1 and attempt == 1:
            raise asyncq.RetryLater(0.0, f"later {i}")
        if attempt <= i % 4:  # i % 4 == 3 fails every one of its 3 attempts
            raise ConnectionResetError(f"flaky {i}")
        return i

    async with asyncq.Pool(workers=3, maxsize=4, retry=policy) as pool:
        time_no_job(pool)
        jobs = [await pool.submit(job, i) for i in range(40)]
        done = await asyncio.gather(*jobs, return_exceptions=True)
        stats = pool.stats()
        letters = sorted((d.job_id, d.attempts, d.reason, type(d.error).__name__,
                          d.first_failed_at.timestamp(), d.last_failed_at.timestamp())
                         for d in pool.dead_letters)
    assert_conserved(stats)
    ends = [(j.state, j.attempts, r if isinstance(r, int) else type(r).__name__)
            for j, r in zip(jobs, done, strict=True)]
    return ends, (stats.succeeded, stats.failed, stats.retried, stats.dead), letters


async def test_zero_delay_retries_end_the_same_on_the_short_path_and_the_long_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain ``Retry`` with no delay retries a plain job without the full routing; a
    subclass goes the long way. Every job ends the same, with the same attempts, counters
    and dead letters, whose first failure is the time of the job's first attempt."""
    clock = [0.0]
    monkeypatch.setattr("time.time", lambda: clock[0])
    monkeypatch.setattr("asyncq._worker.wall_clock", lambda: clock[0])  # bound at import
    long_way = spy_on_the_long_way(monkeypatch)
    short = asyncq.Retry(attempts=3, delay=0, retry_on=ConnectionError)
    long = SameRetry(attempts=3, delay=0, retry_on=ConnectionError)
    outcome = await run_mixed_failures(short, clock)
    later = [i + 1 for i in range(40) if i % 7 == 1 and i % 5]  # job ids of RetryLater
    assert long_way == later  # only those: the 37 others took the short path
    assert outcome == await run_mixed_failures(long, clock)
    assert len(long_way) == len(later) + 42  # every retry
    _, counters, letters = outcome
    assert counters == (24, 58, 42, 16)  # a check on the workload itself
    assert {reason for _, _, reason, *_ in letters} == {"not_retryable", "attempts_exhausted"}
    for job_id, attempts, _, _, first, last in letters:  # job i has id i + 1
        assert (first, last) == (10.0 * (job_id - 1) + 1, 10.0 * (job_id - 1) + attempts)


class Transient(Exception, metaclass=abc.ABCMeta):
    """An error type that claims others as virtual subclasses."""


Transient.register(KeyError)


def disguised_as(name: str, real: type[Exception], **attributes: Any) -> type[Exception]:
    """An error class whose instances pass for ``real`` through a ``__class__`` property
    (what ``isinstance`` consults when the real class does not match)."""
    namespace = {"__class__": property(lambda self: real), **attributes}
    return cast("type[Exception]", type(name, (Exception,), namespace))


#: An error that passes for a ``ConnectionError``.
Disguised = disguised_as("Disguised", ConnectionError)


@pytest.mark.parametrize(("retry_on", "error"), [
    (Transient, KeyError),  # a metaclass of its own: isinstance runs its __instancecheck__
    (ConnectionError, Disguised),  # isinstance says yes through __class__, issubclass no
])
async def test_zero_delay_retry_asks_isinstance_when_the_short_check_cannot(
        retry_on: type[BaseException], error: type[Exception]) -> None:
    """What ``isinstance`` would retry is retried, even where the short path's check
    (``issubclass`` on the error's real class) says no or may not be used."""
    flaky = Flaky(2, error=error)
    policy = asyncq.Retry(attempts=3, delay=0, retry_on=retry_on)
    async with asyncq.Pool(workers=1, retry=policy) as pool:
        job = await pool.submit(flaky.run)
        assert await job == "ok"
    assert job.attempts == 3
    assert pool.stats().retried == 2


async def test_retry_later_keeps_its_delay_under_a_zero_delay_policy() -> None:
    """``RetryLater`` names its own delay, even under a policy whose ``retry_on`` covers it
    and which would retry at once: the job waits on the timer."""
    class Later(asyncq.RetryLater):
        pass

    async def later() -> None:
        raise Later(60.0, "busy")

    policy = asyncq.Retry(attempts=2, delay=0)
    async with asyncq.Pool(workers=1, retry=policy) as pool:
        time_no_job(pool)
        job = await pool.submit(later)
        await until(lambda: job.state is asyncq.JobState.DELAYED)
        assert pool.stats().delayed == 1
        job.cancel()


async def test_the_short_path_remembers_a_bounded_number_of_error_classes() -> None:
    """Each error class is checked once and remembered, up to a bound (past it the pool
    forgets them all and starts again); every job is retried."""
    classes = [type(f"E{i}", (ConnectionError,), {}) for i in range(100)]

    async def fail_once(i: int) -> int:
        if attempt_now() == 1:
            raise classes[i]("once")
        return i

    policy = asyncq.Retry(attempts=2, delay=0)
    async with asyncq.Pool(workers=2, retry=policy) as pool:
        assert await pool.map(fail_once, range(100)) == list(range(100))
        assert pool.stats().retried == 100
        assert pool._core is not None
        assert 0 < len(pool._core.at_once) <= AT_ONCE_MAX


class Unhashable(type):
    """A metaclass whose classes cannot be hashed (``__eq__`` without ``__hash__``)."""

    def __eq__(cls, other: object) -> bool:
        return cls is other


class AlwaysEqual(type):
    """A metaclass whose classes claim to equal any class of the same hash."""

    def __hash__(cls) -> int:
        return hash(ConnectionResetError)

    def __eq__(cls, other: object) -> bool:
        return True


class PoisonousError(ValueError, metaclass=Unhashable):
    """An error the short path cannot look up."""


class PretenderError(ValueError, metaclass=AlwaysEqual):
    """An error that would pass for a ``ConnectionResetError`` in a set or a dict."""


#: An error that passes for a ``RetryLater``, with its delay.
LaterInDisguise = disguised_as("LaterInDisguise", asyncq.RetryLater, delay=60.0)


async def test_error_classes_with_their_own_metaclass_or_class_go_the_long_way() -> None:
    """Under zero-delay policies: an unhashable error class is retried, not a crash; one
    whose metaclass equals every class is judged by ``retry_on`` (no retry), not taken
    for the class the pool already retried at once; one that passes for ``RetryLater``
    waits its delay, as ``isinstance`` says."""
    connection = asyncq.Retry(attempts=2, delay=0, retry_on=ConnectionError)
    values = asyncq.Retry(attempts=2, delay=0, retry_on=ValueError)
    anything = asyncq.Retry(attempts=2, delay=0)
    async with asyncq.Pool(workers=1) as pool:
        time_no_job(pool)  # a timed job would go the long way whatever its error

        async def run(policy: asyncq.Retry, error: type[Exception]) -> asyncq.Job[Any]:
            job = await pool.options(retry=policy).submit(Flaky(1, error=error).run)
            await until(lambda: job.state in (asyncq.JobState.SUCCEEDED, asyncq.JobState.DEAD,
                                              asyncq.JobState.DELAYED))
            return job

        assert (await run(connection, ConnectionResetError)).attempts == 2  # now known
        pretender = await run(connection, PretenderError)
        assert (pretender.state, pretender.attempts) == (asyncq.JobState.DEAD, 1)
        assert (await run(values, PoisonousError)).state is asyncq.JobState.SUCCEEDED
        disguised = await run(anything, LaterInDisguise)
        assert disguised.state is asyncq.JobState.DELAYED
        assert pool.stats().workers == 1
        disguised.cancel()
    assert pool.stats().retried == 3


@pytest.mark.parametrize("route", ["short", "subclass", "lane", "retry_later"])
async def test_a_retry_with_no_delay_runs_before_the_jobs_queued_behind_it(
        route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker, jobs a, b, c queued, a fails twice: a's retries run at once (a, a, a,
    b, c), whichever way the retry is routed: the worker's short path, the long one (a
    ``Retry`` subclass; ``RetryLater(0)``), or a priority lane."""
    long_way = spy_on_the_long_way(monkeypatch)
    policy = (SameRetry if route == "subclass" else asyncq.Retry)(attempts=3, delay=0)
    ran: list[str] = []

    async def step(name: str) -> str:
        ran.append(name)
        if name == "a" and ran.count("a") < 3:
            raise (asyncq.RetryLater(0) if route == "retry_later" else ConnectionError(name))
        return name

    async with asyncq.Pool(workers=1, retry=policy) as pool:
        time_no_job(pool)
        submit = pool.options(priority=1) if route == "lane" else pool
        jobs = [await submit.submit(step, name) for name in "abc"]
        assert await asyncio.gather(*jobs) == ["a", "b", "c"]
    assert ran == ["a", "a", "a", "b", "c"]
    assert long_way == ([] if route == "short" else [1, 1])
    assert jobs[0].attempts == 3
    assert_conserved(pool.stats())


async def test_retries_at_once_still_yield_to_the_loop_every_64_attempts() -> None:
    """A job that fails 150 times with no delay runs its attempts back to back, but the
    worker yields to the loop after each 64 (guarantee 7), and the job behind it waits
    for all of them."""
    ran: list[str] = []

    async def always_fails() -> None:
        ran.append("attempt")
        raise ConnectionError("down")

    async def other() -> None:
        ran.append("other")

    async def heartbeat() -> None:
        while True:
            ran.append("tick")
            await asyncio.sleep(0)

    async with asyncq.Pool(workers=1, retry=asyncq.Retry(attempts=150, delay=0)) as pool:
        time_no_job(pool)
        failing = await pool.submit(always_fails)
        behind = await pool.submit(other)
        beating = asyncio.create_task(heartbeat())
        with pytest.raises(ConnectionError):
            await failing
        await behind
        beating.cancel()
    jobs = [entry for entry in ran if entry != "tick"]
    assert jobs == ["attempt"] * 150 + ["other"]
    runs = [len(run) for run in "".join("x" if e == "attempt" else " " for e in ran).split()]
    assert max(runs) <= 64
    assert failing.attempts == 150
    assert pool.stats().retried == 149
    assert_conserved(pool.stats())


async def test_a_retiring_worker_leaves_a_retry_with_no_delay_to_another() -> None:
    """A worker retired (``resize``) while an attempt runs stops after that attempt, even
    when the attempt fails and its retry would run at once: the retry goes to the front of
    the queue, another worker runs it."""
    release = asyncio.Event()
    attempts: list[tuple[str, asyncio.Task[Any] | None]] = []

    async def flaky(name: str) -> str:
        attempts.append((name, asyncio.current_task()))
        if len(attempts) <= 2:
            await release.wait()
            raise ConnectionError(name)
        return name

    async with asyncq.Pool(workers=2, retry=asyncq.Retry(attempts=2, delay=0)) as pool:
        time_no_job(pool)
        jobs = [await pool.submit(flaky, name) for name in "ab"]
        await until(lambda: len(attempts) == 2)
        pool.resize(1)  # both workers are busy: one of them retires
        core = pool._core
        assert core is not None
        retiring = next(worker for worker in core.workers if worker.retiring)
        release.set()
        assert await asyncio.gather(*jobs) == ["a", "b"]
        assert len(core.workers) == 1
        assert not core.workers[0].retiring
    assert [task for _, task in attempts].count(retiring.task) == 1
    assert sorted(name for name, _ in attempts) == ["a", "a", "b", "b"]
    assert_conserved(pool.stats())
