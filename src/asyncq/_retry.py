"""Retry policy: how many attempts a job gets, which errors earn another, how long to wait."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncq._errors import RetryLater
from asyncq._validate import check_int, check_number, check_seconds

#: ``type.__flags__`` bit of classes made at run time (written in Python, among others).
_HEAPTYPE = 1 << 9

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

    def __post_init__(self) -> None:
        check_int("attempts", self.attempts, minimum=1)
        object.__setattr__(self, "delay", check_seconds("delay", self.delay))
        object.__setattr__(self, "factor", check_number("factor", self.factor, minimum=1.0))
        object.__setattr__(self, "max_delay", check_seconds("max_delay", self.max_delay))
        if not isinstance(self.jitter, bool):
            raise TypeError(f"jitter must be a bool, got {type(self.jitter).__name__}")
        object.__setattr__(self, "retry_on", _check_retry_on(self.retry_on))

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` earns another attempt (attempts left aside)."""
        retry_on = self.retry_on
        if isinstance(retry_on, tuple):
            return isinstance(exc, retry_on)
        return bool(retry_on(exc))

    def backoff(self, failed_attempts: int, rng: random.Random) -> float:
        """Seconds to wait after ``failed_attempts`` failures (1 after the first)."""
        return backoff(self, failed_attempts, rng)


def retries_at_once(policy: Retry, cls: type[BaseException]) -> bool:
    """Whether an error of class ``cls`` is retried with no wait under ``policy``, decided
    without calling user code, so that the pool may take its short retry path.

    Yes only for a plain ``Retry`` (a subclass may decide otherwise) with no delay and
    ``retry_on`` types whose metaclass is ``type``, and an error class of metaclass
    ``type`` that is a subclass of one of them, not a ``RetryLater`` (which names its own
    delay), and none of whose classes written in Python defines ``__class__`` or
    ``__getattribute__`` (``isinstance`` may read an error's ``__class__``: a class that
    redefines it could answer otherwise). ``issubclass`` between such types calls no
    user code. Every other case is left to :meth:`Retry.retryable` and ``backoff``.
    """
    retry_on = policy.retry_on
    return (type(policy) is Retry and policy.delay == 0.0 and type(retry_on) is tuple
            and all(type(t) is type for t in retry_on) and type(cls) is type
            and all(not c.__flags__ & _HEAPTYPE
                    or ("__class__" not in vars(c) and "__getattribute__" not in vars(c))
                    for c in cls.__mro__)
            and issubclass(cls, retry_on) and not issubclass(cls, RetryLater))


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
