"""Per-job options: the value object behind ``pool.options(...)``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from asyncq._retry import Retry
from asyncq._validate import check_seconds, check_timeout

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class JobOptions:
    """How the jobs of one submitter are run: start ``delay``, attempt ``timeout``, ``retry``.

    ``delay`` is seconds before the first attempt may start (0 = at once); ``timeout``
    bounds each attempt (``None`` = no bound); ``retry`` is the :class:`asyncq.Retry` policy.
    """

    delay: float = 0.0
    timeout: float | None = None
    retry: Retry = Retry(attempts=1, delay=0.0, jitter=False)  # noqa: RUF009 - immutable

    def derive(
        self, *, delay: Any = _UNSET, timeout: Any = _UNSET, retry: Any = _UNSET
    ) -> JobOptions:
        """A copy with the given fields validated and replaced."""
        changes: dict[str, Any] = {}
        if delay is not _UNSET:
            changes["delay"] = check_seconds("delay", delay)
        if timeout is not _UNSET:
            changes["timeout"] = check_timeout("timeout", timeout)
        if retry is not _UNSET:
            changes["retry"] = check_retry(retry)
        return replace(self, **changes) if changes else self


def check_retry(value: object) -> Retry:
    """A :class:`Retry`, or ``None`` for "no retry" (a single attempt)."""
    if value is None:
        return Retry(attempts=1, delay=0.0, jitter=False)
    if not isinstance(value, Retry):
        raise TypeError(f"retry must be an asyncq.Retry or None, got {type(value).__name__}")
    return value
