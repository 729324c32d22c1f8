"""Argument checks shared by every public entry point.

Each check returns the accepted value or raises ``TypeError``/``ValueError`` with a message
that names the argument and the accepted range.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any


def check_int(name: str, value: object, *, minimum: int) -> int:
    """An ``int`` (never a ``bool``) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_optional_int(name: str, value: object, *, minimum: int) -> int | None:
    """Like :func:`check_int`, with ``None`` meaning "no limit"."""
    if value is None:
        return None
    return check_int(name, value, minimum=minimum)


def _real(name: str, value: object, accepted: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {accepted}, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return number


def check_seconds(name: str, value: object) -> float:
    """A finite number of seconds >= 0 (delays may be zero)."""
    accepted = "a finite number of seconds >= 0"
    number = _real(name, value, accepted)
    if number < 0:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return number


def check_timeout(name: str, value: object) -> float | None:
    """``None`` (no timeout) or a finite number of seconds > 0."""
    if value is None:
        return None
    accepted = "None or a finite number of seconds > 0"
    number = _real(name, value, accepted)
    if number <= 0:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return number


def check_number(name: str, value: object, *, minimum: float) -> float:
    """A finite number of at least ``minimum``."""
    accepted = f"a finite number >= {minimum:g}"
    number = _real(name, value, accepted)
    if number < minimum:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return number


def check_job_function(fn: object) -> Callable[..., Any]:
    """An ``async def`` function (or a callable returning an awaitable).

    A coroutine *object* is refused (and closed, so it never warns "never awaited"); so is a
    plain function, which would block the event loop: wrap it with ``asyncq.in_thread``.
    """
    if inspect.iscoroutine(fn):
        fn.close()
        raise TypeError(
            "fn must be an async function, got a coroutine object; "
            "pass the function and its arguments: submit(fn, *args) instead of submit(fn(*args))"
        )
    if not callable(fn):
        raise TypeError(f"fn must be an async function, got {type(fn).__name__} {fn!r}")
    if _is_async_callable(fn) or getattr(fn, "__asyncq_async__", False):
        return fn
    raise TypeError(
        f"fn must be an async function, got the plain function {_describe(fn)}; it would block "
        "the event loop. Use asyncq.in_thread(fn) to run it in a worker thread"
    )


def _is_async_callable(fn: object) -> bool:
    while True:
        if inspect.iscoroutinefunction(fn):
            return True
        inner = getattr(fn, "func", None)  # functools.partial
        if inner is None:
            break
        fn = inner
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - a class with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _describe(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def check_weights(value: object) -> dict[Any, int]:
    """``None`` or a mapping of group name to an int weight >= 1."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"group_weights must be a mapping of group to int weight, got {value!r}")
    return {group: check_int(f"group_weights[{group!r}]", weight, minimum=1)
            for group, weight in value.items()}
