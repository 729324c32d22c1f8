"""Dead letters: every job whose attempts ran out (or whose error was not retryable).

Letters are kept in memory, in the order the jobs died, until they are redriven or purged.
An optional JSON Lines file keeps a copy of each letter so failures survive a restart.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncq._job import Job


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that finally failed, with everything needed to inspect and replay it.

    ``reason`` is ``"attempts_exhausted"`` (the error was retryable but no attempt was
    left), ``"not_retryable"`` (``retry_on`` refused the error), ``"backoff_failed"`` (a
    ``Retry`` subclass's ``backoff`` raised or gave no usable delay) or ``"fatal"`` (the job
    raised ``KeyboardInterrupt`` or ``SystemExit``). ``error`` is the final
    exception object and ``traceback`` its formatted traceback. Times are UTC.
    """

    job_id: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    attempts: int
    error: BaseException
    traceback: str
    first_failed_at: datetime
    last_failed_at: datetime
    reason: str
    options: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, job: Job[Any], args: tuple[Any, ...], kwargs: dict[str, Any],
           error: BaseException, reason: str) -> DeadLetter:
        """The letter for a job that dies now with ``error``, called with its arguments."""
        now = time.time()
        first = job.first_failed_at
        assert job.fn is not None  # a job that dies has not succeeded: it kept its function
        return cls(
            job_id=job.id, fn=job.fn, args=args, kwargs=dict(kwargs),
            attempts=job.attempts,
            error=error, traceback=format_error(error),
            first_failed_at=datetime.fromtimestamp(now if first is None else first, UTC),
            last_failed_at=datetime.fromtimestamp(now, UTC), reason=reason,
            options=job.options.derive(delay=0.0),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record; arguments that JSON cannot hold are kept as their ``repr``."""
        return {
            "job_id": self.job_id,
            "fn": qualified_name(self.fn),
            "args": [_jsonable(a) for a in self.args],
            "kwargs": {str(k): _jsonable(v) for k, v in self.kwargs.items()},
            "attempts": self.attempts,
            "error_type": qualified_name(type(self.error)),
            "error": str(self.error),
            "traceback": self.traceback,
            "first_failed_at": self.first_failed_at.isoformat(),
            "last_failed_at": self.last_failed_at.isoformat(),
            "reason": self.reason,
        }


def qualified_name(obj: object) -> str:
    """``module.qualname`` of a function or class, else its ``repr``; a placeholder when
    that raises (the ``repr`` of a ``functools.partial`` is that of its arguments)."""
    try:
        qualname = getattr(obj, "__qualname__", None)
        if qualname is None:
            return repr(obj)
        module = getattr(obj, "__module__", None)
        return f"{module}.{qualname}" if module else str(qualname)
    except Exception:
        return f"<{type(obj).__name__} object (repr failed)>"


def format_error(error: BaseException) -> str:
    """The exception's traceback as text."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return repr(value)
    return value


class JsonlSink:
    """Appends each dead letter as one JSON line to ``path`` and flushes it at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, letter: DeadLetter) -> None:
        """Append one letter."""
        self._file.write(json.dumps(letter.to_json(), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def read_dead_letters(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read back the records a pool's ``dead_letter_file`` holds, oldest first."""
    with Path(path).open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


Resubmit = Callable[[DeadLetter], Awaitable[Job[Any]]]


class DeadLetterQueue:
    """The pool's dead letters: sized, iterable (oldest first), redrivable, purgeable.

    The queue is not bounded: letters stay until :meth:`redrive` or :meth:`purge` takes
    them, since dropping one would lose a failed job.
    """

    def __init__(self, resubmit: Resubmit,
                 on_dead: Callable[[DeadLetter], object] | None = None) -> None:
        self._letters: dict[int, DeadLetter] = {}
        self._redriving: set[int] = set()
        self._resubmit = resubmit
        self._on_dead = on_dead
        self._sink: JsonlSink | None = None

    def open_sink(self, path: str | os.PathLike[str] | None) -> None:
        """Append every new letter to this JSON Lines file too (``None``: no file)."""
        self._sink = JsonlSink(path) if path is not None else None

    def close_sink(self) -> None:
        """Close the file opened by :meth:`open_sink`."""
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def __len__(self) -> int:
        return len(self._letters)

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(list(self._letters.values()))

    def __bool__(self) -> bool:
        return bool(self._letters)

    def __repr__(self) -> str:
        return f"<DeadLetterQueue letters={len(self._letters)}>"

    def add(self, letter: DeadLetter, log: Any) -> None:
        """Keep a letter, write it to the file and call ``on_dead`` (called by the pool).

        The letter is safe in the queue before the hooks run; a hook that raises is
        reported as ``dead_letter.hook_failed`` and never takes the worker down.
        """
        self._letters[letter.job_id] = letter
        for name, hook in (("sink", self._sink.write if self._sink else None),
                           ("on_dead", self._on_dead)):
            if hook is None:
                continue
            try:
                hook(letter)
            except Exception as exc:
                log.error("dead_letter.hook_failed", hook=name, job_id=letter.job_id,
                          error=repr(exc), exc_info=exc)

    async def redrive(self, letters: Iterable[DeadLetter] | None = None) -> list[Job[Any]]:
        """Submit the letters again (all of them by default) as new jobs; return the jobs.

        Each new job gets the original function, arguments and options, and a fresh set of
        attempts. A letter leaves the queue only when its new job is admitted, so a redrive
        interrupted by backpressure, cancellation or ``PoolClosed`` leaves the rest in place.
        Letters no longer in the queue are ignored.
        """
        chosen = list(self._letters.values()) if letters is None else list(letters)
        for letter in chosen:
            if not isinstance(letter, DeadLetter):
                raise TypeError(f"letters must be DeadLetter items, got {type(letter).__name__}")
        jobs: list[Job[Any]] = []
        for letter in chosen:
            key = letter.job_id
            if self._letters.get(key) is not letter or key in self._redriving:
                continue  # gone already, or another redrive is submitting it now
            self._redriving.add(key)
            try:
                jobs.append(await self._resubmit(letter))
            finally:
                self._redriving.discard(key)
            self._letters.pop(key, None)  # a purge may have taken it meanwhile
        return jobs

    def purge(self, letters: Iterable[DeadLetter] | None = None) -> int:
        """Drop the letters (all by default); return how many were dropped."""
        if letters is None:
            count = len(self._letters)
            self._letters.clear()
            return count
        count = 0
        for letter in letters:
            if self._letters.get(letter.job_id) is letter:
                del self._letters[letter.job_id]
                count += 1
        return count
