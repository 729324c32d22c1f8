"""Retry policy: how many attempts a job gets, which errors earn another, how long to wait."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncq._errors import RetryLater
from asyncq._validate import check_int, check_number, check_seconds

#: Error classes a policy remembers for its fast path (more are checked every time).
_AT_ONCE_MAX = 64

RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class Retry:
    """How a failing job is retried.

    ``attempts`` is the total number of tries (1 means no retry). After failed attempt *n*
    the job waits ``min(max_delay, delay * factor ** (n - 1))`` seconds on the pool's timer
    before it is queued again; with ``jitter`` (the default, "full jitter") the wait is drawn
    uniformly from ``[0, that]`` with the pool's seedable random generator, so that many jobs
    failing together do not retry together. A waiting retry holds no worker.

    ``retry_on`` chooses which errors are retried: exception types (the default retries any
    ``Exception``) or a predicate ``exc -> bool``. A job that raises ``asyncq.RetryLater``
    is retried after the delay it names whatever ``retry_on`` says, while attempts remain.
    A job timeout counts as a failed attempt with ``TimeoutError``.
    """

    attempts: int = 3
    delay: float = 0.1
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True
    retry_on: RetryOn = field(default=(Exception,))
    #: The pool's fast path (see ``Core.fail``): for a plain ``Retry`` with no delay whose
    #: ``retry_on`` types run no user code when checked (their metaclass is ``type``), the
    #: error classes found retryable so far (see :meth:`_retries_at_once`); else ``None``.
    #: A cache of what the fields decide: not an argument, not compared.
    _at_once: set[type[BaseException]] | None = field(
        default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("attempts", self.attempts, minimum=1)
        object.__setattr__(self, "delay", check_seconds("delay", self.delay))
        object.__setattr__(self, "factor", check_number("factor", self.factor, minimum=1.0))
        object.__setattr__(self, "max_delay", check_seconds("max_delay", self.max_delay))
        if not isinstance(self.jitter, bool):
            raise TypeError(f"jitter must be a bool, got {type(self.jitter).__name__}")
        retry_on = _check_retry_on(self.retry_on)
        object.__setattr__(self, "retry_on", retry_on)
        if (type(self) is Retry and self.delay == 0.0 and isinstance(retry_on, tuple)
                and all(type(t) is type for t in retry_on)):
            object.__setattr__(self, "_at_once", set())

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` earns another attempt (attempts left aside)."""
        retry_on = self.retry_on
        if isinstance(retry_on, tuple):
            return isinstance(exc, retry_on)
        return bool(retry_on(exc))

    def _retries_at_once(self, cls: type[BaseException]) -> bool:
        """Whether an error of class ``cls`` takes the pool's fast path: retried, and not
        a ``RetryLater`` (which names its own delay). Remembered in ``_at_once``.

        Only called when ``_at_once`` is a set. ``issubclass`` against types whose
        metaclass is ``type`` calls no user code, unlike ``isinstance`` (which may look
        up the error's ``__class__``); it agrees with :meth:`retryable` whenever it says
        yes, and a no goes the slow way, which asks :meth:`retryable` itself.
        """
        at_once, retry_on = self._at_once, self.retry_on
        assert at_once is not None
        assert isinstance(retry_on, tuple)
        if not issubclass(cls, retry_on) or issubclass(cls, RetryLater):
            return False
        if len(at_once) < _AT_ONCE_MAX:
            at_once.add(cls)
        return True

    def backoff(self, failed_attempts: int, rng: random.Random) -> float:
        """Seconds to wait after ``failed_attempts`` failures (1 after the first)."""
        return backoff(self, failed_attempts, rng)


def backoff(policy: Retry, failed_attempts: int, rng: random.Random) -> float:
    """Exponential backoff capped at ``max_delay``, with full jitter when asked."""
    if policy.delay == 0.0:
        return 0.0
    exponent = min(failed_attempts - 1, 1024)
    try:
        ceiling = min(policy.max_delay, policy.delay * policy.factor**exponent)
    except OverflowError:
        ceiling = policy.max_delay
    return rng.uniform(0.0, ceiling) if policy.jitter else ceiling


def _check_retry_on(value: object) -> RetryOn:
    if isinstance(value, type):
        if issubclass(value, BaseException):
            return (value,)
    elif isinstance(value, tuple):
        if all(isinstance(t, type) and issubclass(t, BaseException) for t in value):
            return value
    elif callable(value):
        return value
    raise TypeError(
        "retry_on must be an exception type, a tuple of exception types or a predicate "
        f"exc -> bool, got {value!r}"
    )
