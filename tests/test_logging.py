"""structlog events: lifecycle, dead jobs, per-job debug events, and ``job_id`` in context.

``structlog.testing.capture_logs()`` swaps the configured processors for a capturing one
(through ``structlog.configure(processors=...)``, which also marks structlog configured) and
keeps the wrapper class, so a level-filtering logger configured beforehand still filters.
Every test starts and ends with ``structlog.reset_defaults()``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
import structlog.contextvars
from structlog.testing import capture_logs

import asyncq
from tests.conftest import Flaky, Gate, settle

NO_WAIT_RETRY = asyncq.Retry(attempts=2, delay=0, jitter=False)
JOB_DEBUG_EVENTS = {"job.started", "job.succeeded", "job.retry_scheduled", "job.cancelled"}


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults and leaves them behind."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def configure_level(level: int) -> None:
    """Configure structlog with a level-filtering logger, as an application would."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))


def events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The captured entries of one event."""
    return [entry for entry in entries if entry["event"] == name]


async def ok(value: int) -> int:
    return value


async def always_fails(value: int) -> None:
    raise ConnectionError(f"down {value}")


def predicate_that_raises(error: BaseException) -> bool:
    raise KeyError("predicate broke")


class BrokenBackoff(asyncq.Retry):
    """A policy whose ``backoff`` raises."""

    def backoff(self, failed_attempts: int, rng: random.Random) -> float:
        raise KeyError("backoff broke")


async def fail_two_retry_decisions(
        pool: asyncq.Pool) -> tuple[asyncq.Job[None], asyncq.Job[None]]:
    """A job whose ``retry_on`` predicate raises and one whose ``backoff`` raises, both
    awaited: each goes to the dead letters, in that order."""
    by_predicate = await pool.options(retry=asyncq.Retry(retry_on=predicate_that_raises)) \
        .submit(always_fails, 1)
    by_backoff = await pool.options(retry=BrokenBackoff(delay=0.01)).submit(always_fails, 2)
    await asyncio.gather(by_predicate, by_backoff, return_exceptions=True)
    assert [letter.reason for letter in pool.dead_letters] == ["not_retryable", "backoff_failed"]
    return by_predicate, by_backoff


async def run_mixed_workload(gate: Gate) -> dict[str, asyncq.Job[Any]]:
    """A pool that sees a success, a retry then success, a dead job and a cancelled job."""
    flaky = Flaky(1, "second time lucky", message="first attempt fails")
    async with asyncq.Pool(workers=1, retry=NO_WAIT_RETRY) as pool:
        jobs: dict[str, asyncq.Job[Any]] = {}
        jobs["ok"] = await pool.submit(ok, 1)
        jobs["flaky"] = await pool.submit(flaky.run)
        jobs["dead"] = await pool.submit(always_fails, 2)
        await asyncio.gather(jobs["ok"], jobs["flaky"], jobs["dead"], return_exceptions=True)
        jobs["blocker"] = await pool.submit(gate.wait)
        await gate.entered.wait()
        jobs["cancelled"] = await pool.submit(ok, 3)
        assert jobs["cancelled"].cancel()
        gate.open()
    return jobs


async def test_pool_lifecycle_events() -> None:
    """``pool.started``, ``pool.closing`` and ``pool.closed`` are logged once each, in order,
    with the pool's size, the close mode and the final counters."""
    with capture_logs() as entries:
        async with asyncq.Pool(workers=3, maxsize=7) as pool:
            await (await pool.submit(ok, 1))
    names = [e["event"] for e in entries if e["event"].startswith("pool.")]
    assert names == ["pool.started", "pool.closing", "pool.closed"]
    (started,) = events(entries, "pool.started")
    assert started["workers"] == 3
    assert started["maxsize"] == 7
    assert started["log_level"] == "info"
    (closing,) = events(entries, "pool.closing")
    assert closing["drain"] is True
    assert closing["timeout"] is None
    (closed,) = events(entries, "pool.closed")
    assert closed["submitted"] == 1
    assert closed["succeeded"] == 1
    assert closed["dead"] == 0
    assert closed["cancelled"] == 0


async def test_job_dead_event_carries_job_fn_attempt_and_reason() -> None:
    """``job.dead`` is a warning naming the job, its function, its last attempt and why."""
    retry = asyncq.Retry(attempts=2, delay=0, retry_on=(ConnectionError,))
    with capture_logs() as entries:
        async with asyncq.Pool(workers=1, retry=retry) as pool:
            exhausted = await pool.submit(always_fails, 1)
            refused = await pool.options(retry=asyncq.Retry(attempts=3, retry_on=KeyError)) \
                .submit(always_fails, 2)
            await asyncio.gather(exhausted, refused, return_exceptions=True)
    dead = {e["job_id"]: e for e in events(entries, "job.dead")}
    assert set(dead) == {exhausted.id, refused.id}
    assert dead[exhausted.id]["fn"].endswith("always_fails")
    assert dead[exhausted.id]["attempt"] == 2
    assert dead[exhausted.id]["reason"] == "attempts_exhausted"
    assert dead[exhausted.id]["log_level"] == "warning"
    assert "down 1" in dead[exhausted.id]["error"]
    assert dead[refused.id]["attempt"] == 1
    assert dead[refused.id]["reason"] == "not_retryable"


async def test_failed_retry_decisions_log_an_error_each() -> None:
    """A retry_on predicate that raises and a Retry subclass's backoff that raises each log
    an error event naming the job and what went wrong; both jobs go to the dead letters."""
    with capture_logs() as entries:
        async with asyncq.Pool(workers=1) as pool:
            by_predicate, by_backoff = await fail_two_retry_decisions(pool)
    (predicate,) = events(entries, "job.retry_on_failed")
    (backoff,) = events(entries, "job.retry_backoff_failed")
    assert (predicate["job_id"], predicate["log_level"]) == (by_predicate.id, "error")
    assert "predicate broke" in predicate["error"]
    assert (backoff["job_id"], backoff["log_level"]) == (by_backoff.id, "error")
    assert "backoff raised" in backoff["error"]
    assert "backoff broke" in backoff["error"]


@pytest.mark.parametrize("delay", [0.0, 0.01])
async def test_cancel_from_the_retry_event_cancels_the_scheduled_retry(delay: float) -> None:
    """The ``job.retry_scheduled`` event renders the error with its own ``__repr__``, user
    code that may cancel the job. The retry is queued (or on its timer) by then, so the
    cancel takes effect there: the job ends CANCELLED and never runs again."""
    configure_level(logging.DEBUG)
    routed: list[asyncq.Job[Any]] = []
    answers: list[bool] = []

    class CancelsWhenShown(ConnectionError):
        def __repr__(self) -> str:
            if routed and not answers:
                answers.append(routed[0].cancel())
            return "CancelsWhenShown()"

    calls: list[int] = []

    async def fails_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise CancelsWhenShown
        return "ran again"

    retry = asyncq.Retry(attempts=3, delay=delay, jitter=False)
    with capture_logs():
        async with asyncq.Pool(workers=1, retry=retry) as pool:
            job = await pool.submit(fails_once)
            routed.append(job)
            with pytest.raises(asyncq.JobCancelled):
                await job
            await asyncio.sleep(2 * delay)  # a retry left on the timer would have run now
            stats = pool.stats()
    assert answers == [True]
    assert calls == [1]
    assert job.state is asyncq.JobState.CANCELLED
    assert (stats.retried, stats.cancelled, stats.succeeded) == (1, 1, 0)


async def test_per_job_debug_events_when_debug_is_enabled(gate: Gate) -> None:
    """With a DEBUG filtering logger, each job logs ``job.started`` per attempt and then
    ``job.succeeded``, ``job.retry_scheduled`` or ``job.cancelled``, with its id, function
    and attempt."""
    configure_level(logging.DEBUG)
    with capture_logs() as entries:
        jobs = await run_mixed_workload(gate)
    started = events(entries, "job.started")
    assert sorted((e["job_id"], e["attempt"]) for e in started) == [
        (jobs["ok"].id, 1), (jobs["flaky"].id, 1), (jobs["flaky"].id, 2),
        (jobs["dead"].id, 1), (jobs["dead"].id, 2), (jobs["blocker"].id, 1)]
    assert all(e["log_level"] == "debug" for e in started)
    assert all(e["fn"].endswith(".ok") for e in started if e["job_id"] == jobs["ok"].id)
    succeeded = events(entries, "job.succeeded")
    assert sorted((e["job_id"], e["attempt"]) for e in succeeded) == [
        (jobs["ok"].id, 1), (jobs["flaky"].id, 2), (jobs["blocker"].id, 1)]
    retried = events(entries, "job.retry_scheduled")
    assert sorted((e["job_id"], e["attempt"]) for e in retried) == [
        (jobs["flaky"].id, 1), (jobs["dead"].id, 1)]
    (flaky_retry,) = (e for e in retried if e["job_id"] == jobs["flaky"].id)
    assert flaky_retry["fn"].endswith("Flaky.run")
    assert "first attempt fails" in flaky_retry["error"]
    cancelled = events(entries, "job.cancelled")
    assert [e["job_id"] for e in cancelled] == [jobs["cancelled"].id]
    assert cancelled[0]["attempt"] == 0
    assert [e["job_id"] for e in events(entries, "job.dead")] == [jobs["dead"].id]


async def test_no_per_job_debug_events_at_info_level(gate: Gate) -> None:
    """With an INFO filtering logger the per-job debug events are not emitted, while the
    info and warning events still are."""
    configure_level(logging.INFO)
    with capture_logs() as entries:
        jobs = await run_mixed_workload(gate)
    names = {e["event"] for e in entries}
    assert not names & JOB_DEBUG_EVENTS
    assert {"pool.started", "pool.closing", "pool.closed", "job.dead"} <= names
    assert [e["job_id"] for e in events(entries, "job.dead")] == [jobs["dead"].id]


async def test_pool_uses_the_logger_it_is_given() -> None:
    """A ``logger=`` passed to the pool is used, with its bound context."""
    logger = structlog.get_logger("custom").bind(service="deployer")
    with capture_logs() as entries:
        async with asyncq.Pool(workers=1, logger=logger) as pool:
            await (await pool.submit(ok, 1))
    (started,) = events(entries, "pool.started")
    assert started["service"] == "deployer"


async def test_bind_job_id_puts_each_jobs_id_in_structlogs_context() -> None:
    """With ``bind_job_id=True``, code inside a job that logs through structlog (with
    ``merge_contextvars``) carries ``job_id`` equal to ``job.id``, each job its own, a task
    the job spawns carries it too, and it does not leak to the caller."""
    gate = Gate()

    async def child(tag: str) -> None:
        structlog.get_logger().info("inside.child", tag=tag)

    async def work(tag: str) -> None:
        await gate.wait()
        structlog.get_logger().info("inside.job", tag=tag)
        await asyncio.create_task(child(tag))

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
        async with asyncq.Pool(workers=3, bind_job_id=True) as pool:
            jobs = {tag: await pool.submit(work, tag) for tag in ("a", "b", "c", "d")}
            gate.open()
            await asyncio.gather(*jobs.values())
            structlog.get_logger().info("outside.job")
    inside = events(entries, "inside.job")
    assert {e["tag"]: e["job_id"] for e in inside} == {tag: j.id for tag, j in jobs.items()}
    children = events(entries, "inside.child")
    assert {e["tag"]: e["job_id"] for e in children} == {tag: j.id for tag, j in jobs.items()}
    (outside,) = events(entries, "outside.job")
    assert "job_id" not in outside
    assert "job_id" not in structlog.contextvars.get_contextvars()


async def test_job_id_is_not_bound_by_default() -> None:
    """Binding costs time on every job, so by default nothing is bound."""

    async def work() -> None:
        structlog.get_logger().info("inside.job")

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
        async with asyncq.Pool(workers=1) as pool:
            await (await pool.submit(work))
    (inside,) = events(entries, "inside.job")
    assert "job_id" not in inside


async def test_add_job_id_processor_names_the_running_job() -> None:
    """``asyncq.add_job_id`` adds the running job's id to events logged by its code (each
    job its own, across suspensions), keeps an explicit ``job_id``, and adds nothing
    outside a job or in a task the job spawned."""
    gate = Gate()

    async def child() -> None:
        structlog.get_logger().info("inside.child")

    async def work(tag: str) -> None:
        structlog.get_logger().info("before.wait", tag=tag)
        await gate.wait()
        structlog.get_logger().info("after.wait", tag=tag)
        structlog.get_logger().info("explicit", tag=tag, job_id="mine")
        await asyncio.create_task(child())

    with capture_logs(processors=[asyncq.add_job_id]) as entries:
        async with asyncq.Pool(workers=3) as pool:
            jobs = {tag: await pool.submit(work, tag) for tag in ("a", "b", "c", "d")}
            await settle()
            gate.open()
            await asyncio.gather(*jobs.values())
            structlog.get_logger().info("outside.job")
    expected = {tag: j.id for tag, j in jobs.items()}
    for name in ("before.wait", "after.wait"):
        assert {e["tag"]: e["job_id"] for e in events(entries, name)} == expected
    assert {e["job_id"] for e in events(entries, "explicit")} == {"mine"}
    assert all("job_id" not in e for e in events(entries, "inside.child"))
    (outside,) = events(entries, "outside.job")
    assert "job_id" not in outside


async def test_current_job_is_the_running_jobs_handle() -> None:
    """``asyncq.current_job()`` is the job's own handle inside its code, on every attempt,
    and ``None`` outside any job."""
    seen: list[tuple[asyncq.Job[Any] | None, int]] = []

    async def flaky() -> None:
        job = asyncq.current_job()
        seen.append((job, job.attempts if job is not None else 0))
        if len(seen) == 1:
            raise ConnectionError("first attempt fails")

    assert asyncq.current_job() is None
    async with asyncq.Pool(workers=2, retry=NO_WAIT_RETRY) as pool:
        job = await pool.submit(flaky)
        await job
        assert asyncq.current_job() is None
    assert seen == [(job, 1), (job, 2)]


def test_current_job_outside_a_loop_is_none() -> None:
    assert asyncq.current_job() is None


async def test_jobs_run_in_their_workers_context_as_documented() -> None:
    """Jobs run inline in their worker's task (README, "Semantics worth knowing"): each job
    logs its own job_id, and a variable one job binds is still bound for the next job on
    that worker. If this ever changes, the README must change with it."""

    async def binds_user() -> None:
        structlog.contextvars.bind_contextvars(user="alice")
        structlog.get_logger().info("first.job")

    async def logs_plainly() -> None:
        structlog.get_logger().info("second.job")

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
        async with asyncq.Pool(workers=1, bind_job_id=True) as pool:
            first = await pool.submit(binds_user)
            second = await pool.submit(logs_plainly)
            await asyncio.gather(first, second)
    (first_entry,) = events(entries, "first.job")
    assert first_entry["user"] == "alice"
    assert first_entry["job_id"] == first.id
    (second_entry,) = events(entries, "second.job")
    assert second_entry["job_id"] == second.id
    assert second_entry["user"] == "alice"


async def test_library_never_configures_structlog() -> None:
    """Running a pool through starts, successes, retries, deaths and a close leaves structlog
    unconfigured: the library only logs, the application configures."""
    assert not structlog.is_configured()
    flaky = Flaky(1, "second time lucky", message="first attempt fails")
    async with asyncq.Pool(workers=2, retry=NO_WAIT_RETRY) as pool:
        results = await asyncio.gather(
            await pool.submit(ok, 1), await pool.submit(flaky.run),
            await pool.submit(always_fails, 2), return_exceptions=True)
    assert results[0] == 1
    assert results[1] == "second time lucky"
    assert isinstance(results[2], ConnectionError)
    assert not structlog.is_configured()


def refuse_every_event(logger: Any, method_name: str, event_dict: Any) -> Any:
    """A structlog processor that raises: an application's logging set-up gone wrong."""
    raise RuntimeError(f"cannot log {event_dict['event']}")


async def test_an_event_structlog_cannot_log_never_ends_a_worker_or_strands_a_job(
        gate: Gate, caplog: pytest.LogCaptureFixture) -> None:
    """With a processor that raises on every event (debug ones included), jobs still
    succeed, retry, die, get cancelled, and go to the dead letters when a retry decision
    fails; no worker is lost; each event that failed is reported to the standard
    library's ``asyncq`` logger with its traceback."""
    structlog.configure(processors=[refuse_every_event],
                        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    with caplog.at_level(logging.ERROR, logger="asyncq"):
        jobs = await run_mixed_workload(gate)
        async with asyncq.Pool(workers=1) as pool:
            await fail_two_retry_decisions(pool)
            assert pool.stats().workers == 1
    assert await jobs["ok"] == 1
    assert await jobs["flaky"] == "second time lucky"
    assert jobs["dead"].state is asyncq.JobState.DEAD
    assert jobs["cancelled"].state is asyncq.JobState.CANCELLED
    reported = set()
    for record in caplog.records:
        if record.name == "asyncq":
            assert isinstance(record.args, tuple)  # (level, event)
            reported.add(record.args[1])
    assert reported >= {"pool.started", "job.started", "job.retry_scheduled", "job.dead",
                        "job.cancelled", "job.retry_on_failed", "job.retry_backoff_failed",
                        "pool.closed"}
    assert all(record.exc_info and "cannot log" in str(record.exc_info[1])
               for record in caplog.records if record.name == "asyncq")


class Unprintable:
    """An argument whose ``repr`` raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


async def refuses(value: object) -> None:
    raise ValueError("refused")


async def test_a_job_function_whose_name_cannot_be_rendered_still_dies_in_order() -> None:
    """A ``functools.partial`` renders as its arguments; one whose argument's ``repr``
    raises is named by a placeholder in every event, and its job still reaches the dead
    letters (the pool then closes, drained)."""
    configure_level(logging.DEBUG)
    fn = functools.partial(refuses, Unprintable())
    with capture_logs() as entries:
        async with asyncq.Pool(workers=1) as pool:
            job = await pool.submit(fn)
            with pytest.raises(ValueError, match="refused"):
                await job
            assert [letter.job_id for letter in pool.dead_letters] == [job.id]
    names = {e["event"]: e["fn"] for e in entries if e["event"] in ("job.started", "job.dead")}
    assert names == {"job.started": "<partial object (repr failed)>",
                     "job.dead": "<partial object (repr failed)>"}
    assert pool.stats().dead == 1


class Refuse(logging.Filter):
    """A standard-library filter that raises."""

    def filter(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("filter down")


async def test_when_the_fallback_logger_fails_too_the_pool_goes_on(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A structlog processor and the standard library's ``asyncq`` logger both raise:
    jobs still end, and the failure is printed to standard error."""
    structlog.configure(processors=[refuse_every_event])
    fallback = logging.getLogger("asyncq")
    refuse = Refuse()
    fallback.addFilter(refuse)
    try:
        async with asyncq.Pool(workers=1, retry=NO_WAIT_RETRY) as pool:
            flaky = await pool.submit(Flaky(1).run)
            dead = await pool.submit(always_fails, 1)
            assert await flaky == "ok"
            with pytest.raises(ConnectionError):
                await dead
    finally:
        fallback.removeFilter(refuse)
    assert "filter down" in capsys.readouterr().err
