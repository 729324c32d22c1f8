"""The dead-letter queue: what a letter records, redrive, purge, hooks and the JSON Lines file."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import asyncq
from tests.conftest import Gate, assert_conserved, settle, until

NO_WAIT_RETRY = asyncq.Retry(attempts=3, delay=0, jitter=False)


class Flaky:
    """Job functions that fail while ``failing`` is set, recording every error they raise."""

    def __init__(self) -> None:
        self.failing = True
        self.errors: list[BaseException] = []

    async def work(self, value: Any, *, tag: str = "") -> str:
        if self.failing:
            error = ConnectionError(f"no route to {value}")
            self.errors.append(error)
            raise error
        return f"{value}{tag}"


async def explode_with_value_error(value: int) -> None:
    """Always raises ``ValueError``."""
    raise ValueError(f"bad value {value}")


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Captured structlog events; structlog's configuration is restored afterwards."""
    structlog.reset_defaults()
    with capture_logs() as entries:
        yield entries
    structlog.reset_defaults()


async def make_letters(pool: asyncq.Pool, flaky: Flaky, count: int) -> list[asyncq.DeadLetter]:
    """Let ``count`` jobs of ``flaky.work`` die and return their letters, oldest first."""
    jobs = [await pool.submit(flaky.work, i, tag="!") for i in range(count)]
    for job in jobs:
        with pytest.raises(ConnectionError):
            await job
    letters = list(pool.dead_letters)
    assert len(letters) == count
    return letters


# -- what a letter holds -----------------------------------------------------------------


async def test_letter_records_the_job_and_its_final_error() -> None:
    """A letter has the job's id, function, arguments, attempts, the very exception object
    it raised last, a traceback naming the raising function, and ordered UTC failure times."""
    flaky = Flaky()
    async with asyncq.Pool(workers=1, retry=NO_WAIT_RETRY) as pool:
        job = await pool.submit(flaky.work, "db", tag="?")
        with pytest.raises(ConnectionError) as raised:
            await job
        (letter,) = pool.dead_letters
        assert letter.job_id == job.id
        assert letter.fn == flaky.work
        assert letter.args == ("db",)
        assert letter.kwargs == {"tag": "?"}
        assert letter.attempts == 3 == job.attempts
        assert len(flaky.errors) == 3
        assert letter.error is flaky.errors[-1]
        assert raised.value is letter.error
        assert "work" in letter.traceback
        assert "ConnectionError: no route to db" in letter.traceback
        assert letter.first_failed_at.tzinfo is UTC
        assert letter.first_failed_at <= letter.last_failed_at
        assert letter.reason == "attempts_exhausted"
        assert job.state is asyncq.JobState.DEAD


async def test_letter_reason_not_retryable_when_retry_on_refuses_the_error() -> None:
    """An error that ``retry_on`` does not list goes straight to the DLQ as "not_retryable",
    after a single attempt although more were allowed."""
    retry = asyncq.Retry(attempts=5, delay=0, retry_on=(ConnectionError,))
    async with asyncq.Pool(workers=1, retry=retry) as pool:
        job = await pool.submit(explode_with_value_error, 3)
        with pytest.raises(ValueError, match="bad value 3"):
            await job
        (letter,) = pool.dead_letters
        assert letter.reason == "not_retryable"
        assert letter.attempts == 1
        assert isinstance(letter.error, ValueError)
        assert "explode_with_value_error" in letter.traceback
        assert letter.first_failed_at <= letter.last_failed_at


async def test_queue_is_sized_iterable_and_falsy_when_empty() -> None:
    """``len``, ``iter`` (oldest first) and ``bool`` of the dead letters."""
    flaky = Flaky()
    async with asyncq.Pool(workers=1) as pool:
        assert len(pool.dead_letters) == 0
        assert not pool.dead_letters
        assert list(pool.dead_letters) == []
        letters = await make_letters(pool, flaky, 3)
        assert pool.dead_letters
        assert len(pool.dead_letters) == 3
        assert [letter.args for letter in pool.dead_letters] == [(0,), (1,), (2,)]
        assert [letter.error for letter in letters] == flaky.errors
        assert pool.stats().dead_letters == 3


# -- redrive -----------------------------------------------------------------------------


async def test_redrive_all_resubmits_every_letter_as_a_new_job() -> None:
    """``redrive()`` returns one new job per letter, the letters leave as soon as their jobs
    are admitted, and the replayed jobs succeed once the cause is gone."""
    flaky = Flaky()
    async with asyncq.Pool(workers=2) as pool:
        letters = await make_letters(pool, flaky, 3)
        flaky.failing = False
        jobs = await pool.dead_letters.redrive()
        assert len(pool.dead_letters) == 0
        assert len(jobs) == 3
        assert {job.id for job in jobs}.isdisjoint(letter.job_id for letter in letters)
        assert [await job for job in jobs] == ["0!", "1!", "2!"]
        assert all(job.state is asyncq.JobState.SUCCEEDED for job in jobs)
        assert all(job.attempts == 1 for job in jobs)
        stats = pool.stats()
        assert stats.dead == 3
        assert stats.succeeded == 3
        assert_conserved(stats)


async def test_redrive_selected_letters_leaves_the_others() -> None:
    """``redrive([letter])`` replays only that letter; a letter already gone is ignored."""
    flaky = Flaky()
    async with asyncq.Pool(workers=1) as pool:
        first, second, third = await make_letters(pool, flaky, 3)
        flaky.failing = False
        jobs = await pool.dead_letters.redrive([second])
        assert len(jobs) == 1
        assert await jobs[0] == "1!"
        assert list(pool.dead_letters) == [first, third]
        assert await pool.dead_letters.redrive([second]) == []
        assert list(pool.dead_letters) == [first, third]


async def test_redrive_keeps_the_jobs_options_and_gives_fresh_attempts() -> None:
    """A redriven job keeps its original retry policy, with a fresh set of attempts."""
    flaky = Flaky()
    async with asyncq.Pool(workers=1) as pool:
        job = await pool.options(retry=asyncq.Retry(attempts=2, delay=0)).submit(flaky.work, 1)
        with pytest.raises(ConnectionError):
            await job
        (letter,) = pool.dead_letters
        assert letter.attempts == 2
        (again,) = await pool.dead_letters.redrive()
        with pytest.raises(ConnectionError):
            await again
        (new_letter,) = pool.dead_letters
        assert new_letter.job_id == again.id
        assert new_letter.attempts == 2
        assert len(flaky.errors) == 4


async def test_redrive_rejects_things_that_are_not_letters() -> None:
    """``redrive`` takes ``DeadLetter`` items only, and checks before submitting any."""
    flaky = Flaky()
    async with asyncq.Pool(workers=1) as pool:
        (letter,) = await make_letters(pool, flaky, 1)
        with pytest.raises(TypeError, match="letters must be DeadLetter items"):
            await pool.dead_letters.redrive([letter, "job 1"])  # type: ignore[list-item]
        assert list(pool.dead_letters) == [letter]


async def test_redrive_waits_for_room_and_unadmitted_letters_stay(gate: Gate) -> None:
    """Under backpressure ``redrive`` waits; a letter leaves the DLQ only once its new job is
    admitted, so while it waits the rest stay in place."""
    flaky = Flaky()
    async with asyncq.Pool(workers=1, maxsize=1) as pool:
        _first, second, third = await make_letters(pool, flaky, 3)
        flaky.failing = False
        blocker = pool.submit_nowait(gate.wait, "blocker")
        await gate.entered.wait()
        redrive = asyncio.create_task(pool.dead_letters.redrive())
        await until(lambda: len(pool.dead_letters) == 2)
        await settle()
        assert not redrive.done()
        assert list(pool.dead_letters) == [second, third]
        assert pool.stats().waiting == 1
        gate.open()
        jobs = await redrive
        assert len(pool.dead_letters) == 0
        assert await blocker == "blocker"
        assert [await job for job in jobs] == ["0!", "1!", "2!"]
        assert_conserved(pool.stats())


async def test_cancelled_redrive_leaves_unadmitted_letters(gate: Gate) -> None:
    """Cancelling a redrive that waits for room keeps every letter not yet admitted."""
    flaky = Flaky()
    async with asyncq.Pool(workers=1, maxsize=1) as pool:
        _first, second = await make_letters(pool, flaky, 2)
        flaky.failing = False
        pool.submit_nowait(gate.wait)
        await gate.entered.wait()
        redrive = asyncio.create_task(pool.dead_letters.redrive())
        await until(lambda: len(pool.dead_letters) == 1)
        await settle()
        redrive.cancel()
        with pytest.raises(asyncio.CancelledError):
            await redrive
        assert list(pool.dead_letters) == [second]
        gate.open()
        (job,) = await pool.dead_letters.redrive()
        assert await job == "1!"
        assert not pool.dead_letters


async def test_redrive_interrupted_by_close_leaves_unadmitted_letters(gate: Gate) -> None:
    """A pool closing while a redrive waits for room raises ``PoolClosed`` in the redrive and
    leaves the letters it had not yet resubmitted."""
    flaky = Flaky()
    pool = asyncq.Pool(workers=1, maxsize=1)
    async with pool:
        _first, second, third = await make_letters(pool, flaky, 3)
        flaky.failing = False
        pool.submit_nowait(gate.wait)
        await gate.entered.wait()
        redrive = asyncio.create_task(pool.dead_letters.redrive())
        await until(lambda: len(pool.dead_letters) == 2)
        closing = asyncio.create_task(pool.close())
        with pytest.raises(asyncq.PoolClosed):
            await redrive
        gate.open()
        await closing
    assert list(pool.dead_letters) == [second, third]
    stats = pool.stats()
    assert stats.succeeded == 2
    assert_conserved(stats)


# -- purge -------------------------------------------------------------------------------


async def test_purge_all_and_selected_return_counts() -> None:
    """``purge(letters)`` drops those present and counts them; ``purge()`` drops the rest."""
    flaky = Flaky()
    async with asyncq.Pool(workers=1) as pool:
        first, second, third, fourth = await make_letters(pool, flaky, 4)
        assert pool.dead_letters.purge([second, fourth]) == 2
        assert list(pool.dead_letters) == [first, third]
        assert pool.dead_letters.purge([second]) == 0
        assert pool.dead_letters.purge() == 2
        assert not pool.dead_letters
        assert pool.dead_letters.purge() == 0
        assert pool.stats().dead == 4


# -- hooks -------------------------------------------------------------------------------


async def test_on_dead_is_called_once_per_letter() -> None:
    """``on_dead`` gets each letter exactly once, retries notwithstanding."""
    seen: list[asyncq.DeadLetter] = []
    flaky = Flaky()
    async with asyncq.Pool(workers=2, retry=NO_WAIT_RETRY, on_dead=seen.append) as pool:
        letters = await make_letters(pool, flaky, 3)
        assert len(flaky.errors) == 9
        assert sorted(seen, key=lambda letter: letter.job_id) == letters
        assert all(a is b for a, b in zip(sorted(seen, key=lambda x: x.job_id), letters,
                                           strict=True))


async def test_failing_on_dead_hook_does_not_break_the_pool(logs: list[dict[str, Any]]) -> None:
    """A hook that raises is logged as ``dead_letter.hook_failed``; the job is still DEAD in
    the DLQ, its handle raises its own error, and the pool keeps working."""
    calls: list[int] = []

    def broken_hook(letter: asyncq.DeadLetter) -> None:
        calls.append(letter.job_id)
        raise RuntimeError("hook is broken")

    async def ok(value: int) -> int:
        return value

    async with asyncq.Pool(workers=1, on_dead=broken_hook) as pool:
        job = await pool.submit(explode_with_value_error, 1)
        with pytest.raises(ValueError, match="bad value 1"):
            await job
        assert job.state is asyncq.JobState.DEAD
        assert [letter.job_id for letter in pool.dead_letters] == [job.id]
        assert calls == [job.id]
        assert await (await pool.submit(ok, 5)) == 5
        second = await pool.submit(explode_with_value_error, 2)
        with pytest.raises(ValueError, match="bad value 2"):
            await second
        assert calls == [job.id, second.id]
    failures = [e for e in logs if e["event"] == "dead_letter.hook_failed"]
    assert [e["job_id"] for e in failures] == [job.id, second.id]
    assert all(e["hook"] == "on_dead" for e in failures)
    assert all(e["log_level"] == "error" for e in failures)
    assert "hook is broken" in failures[0]["error"]
    stats = pool.stats()
    assert stats.dead == 2
    assert stats.succeeded == 1
    assert_conserved(stats)


# -- the JSON Lines file -----------------------------------------------------------------


async def test_dead_letter_file_has_one_json_line_per_letter(tmp_path: Path) -> None:
    """Each letter is appended (and flushed at once) as one JSON line matching ``to_json``;
    ``asyncq.read_dead_letters`` reads the records back, oldest first."""
    path = tmp_path / "nested" / "dead.jsonl"
    flaky = Flaky()
    async with asyncq.Pool(workers=1, retry=NO_WAIT_RETRY, dead_letter_file=path) as pool:
        letters = await make_letters(pool, flaky, 3)
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 3
        records = asyncq.read_dead_letters(path)
        assert records == [letter.to_json() for letter in letters]
    record = records[0]
    assert set(record) == {"job_id", "fn", "args", "kwargs", "attempts", "error_type", "error",
                           "traceback", "first_failed_at", "last_failed_at", "reason"}
    assert record["job_id"] == letters[0].job_id
    assert record["fn"].endswith("Flaky.work")
    assert record["args"] == [0]
    assert record["kwargs"] == {"tag": "!"}
    assert record["attempts"] == 3
    assert record["error_type"] == "builtins.ConnectionError"
    assert record["error"] == "no route to 0"
    assert "work" in record["traceback"]
    assert record["reason"] == "attempts_exhausted"
    assert record["first_failed_at"] <= record["last_failed_at"]
    assert json.loads(lines[0]) == record


async def test_dead_letter_file_records_unserialisable_arguments_by_repr(tmp_path: Path) -> None:
    """Arguments JSON cannot hold (an object, a set, NaN, infinity) are kept as their repr,
    while plain values stay as they are; nothing crashes and the letter is written."""
    path = tmp_path / "dead.jsonl"
    marker = object()
    flaky = Flaky()
    async with asyncq.Pool(workers=1, dead_letter_file=path) as pool:
        job = await pool.submit(flaky.work, marker, tag="t")
        with pytest.raises(ConnectionError):
            await job
        job = await pool.submit(
            explode_with_odd_arguments, 1, {1, 2}, math.nan, "text",
            odd=frozenset({"a"}), ratio=math.inf, fine=[1, "two"],
        )
        with pytest.raises(ValueError, match="odd arguments"):
            await job
    first, second = asyncq.read_dead_letters(path)
    assert first["args"] == [repr(marker)]
    assert first["kwargs"] == {"tag": "t"}
    assert second["args"] == [1, repr({1, 2}), "nan", "text"]
    assert second["kwargs"] == {"odd": repr(frozenset({"a"})), "ratio": "inf",
                                "fine": [1, "two"]}
    assert len(pool.dead_letters) == 2


async def explode_with_odd_arguments(*args: Any, **kwargs: Any) -> None:
    """Fails whatever it is given."""
    raise ValueError("odd arguments")


async def test_dead_letter_file_survives_a_new_pool_appending(tmp_path: Path) -> None:
    """Records written by one pool stay when a later pool appends to the same file."""
    path = tmp_path / "dead.jsonl"
    flaky = Flaky()
    async with asyncq.Pool(workers=1, dead_letter_file=path) as pool:
        await make_letters(pool, flaky, 2)
    assert len(asyncq.read_dead_letters(path)) == 2
    async with asyncq.Pool(workers=1, dead_letter_file=path) as pool:
        job = await pool.submit(explode_with_value_error, 9)
        with pytest.raises(ValueError, match="bad value 9"):
            await job
    records = asyncq.read_dead_letters(path)
    assert [r["args"] for r in records] == [[0], [1], [9]]
    assert [r["error_type"] for r in records] == ["builtins.ConnectionError"] * 2 + [
        "builtins.ValueError"]
    assert records[2]["fn"].endswith("explode_with_value_error")
    assert records[2]["reason"] == "attempts_exhausted"
