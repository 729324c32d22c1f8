"""Per-job options: the value object behind ``pool.options(...)``."""

from __future__ import annotations

import gc
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import Any

from asyncq._native import untrack_inert
from asyncq._retry import Retry
from asyncq._validate import check_seconds, check_timeout

_UNSET: Any = object()
_new = object.__new__


@dataclass(frozen=True, slots=True)
class JobOptions:
    """How the jobs of one submitter are run and balanced.

    ``delay``: seconds before the first attempt may start (0 = at once). ``timeout``: bound
    on each attempt (``None`` = no bound). ``retry``: the :class:`asyncq.Retry` policy.
    ``key``: jobs sharing a key never overlap and start in submission order. ``priority``:
    higher starts first (an int; 0 by default). ``group``: the fair-share group the job is
    accounted to (see ``Pool(group_weights=...)``). ``after``: jobs that must all succeed
    before this one may start.
    """

    delay: float = 0.0
    timeout: float | None = None
    retry: Retry = Retry(attempts=1, delay=0.0, jitter=False)  # noqa: RUF009 - immutable
    key: Hashable | None = None
    priority: int = 0
    group: Hashable | None = None
    after: tuple[Any, ...] = ()  # asyncq.Job handles (checked by the submitter)
    plain: bool = field(init=False, repr=False, compare=False)
    key_only: bool = field(init=False, repr=False, compare=False)
    #: Nothing these options hold can refer back to a job, now or later: no dependencies,
    #: every other field :func:`atomic`, and a plain ``Retry`` (see :func:`inert_retry`).
    #: A succeeded job with inert options and an atomic result leaves the garbage
    #: collector's lists (``asyncq._job.finish``), and so do inert options themselves
    #: (``asyncq._native.untrack_inert``): per-job options cost the collector nothing.
    inert: bool = field(init=False, repr=False, compare=False)
    #: :func:`inert_retry` of ``retry``, kept for :meth:`derive`.
    retry_inert: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.after) is not tuple:  # a list, say: keep a copy that cannot change
            object.__setattr__(self, "after", tuple(self.after))
        self._settle(inert_retry(self.retry))

    def _settle(self, retry_inert: bool) -> None:
        """Set the derived flags (``retry_inert``: :func:`inert_retry` of ``retry``)."""
        lane_free = self.priority == 0 and self.group is None and not self.after
        set_field = object.__setattr__
        set_field(self, "plain", lane_free and self.key is None)
        set_field(self, "key_only", lane_free and self.key is not None and not self.delay)
        set_field(self, "retry_inert", retry_inert)
        # A subclass may add fields, or a __dict__ that takes any attribute: never inert.
        inert = (type(self) is JobOptions and retry_inert and not self.after
                 and atomic(self.delay) and atomic(self.timeout) and atomic(self.key)
                 and atomic(self.priority) and atomic(self.group))
        set_field(self, "inert", inert)
        if inert:  # it can be part of no cycle: the collector need not visit it
            untrack_inert(self)

    def derive(
        self,
        *,
        delay: Any = _UNSET,
        timeout: Any = _UNSET,
        retry: Any = _UNSET,
        key: Any = _UNSET,
        priority: Any = _UNSET,
        group: Any = _UNSET,
        after: Any = _UNSET,
    ) -> JobOptions:
        """A copy with the given fields validated and replaced (these options themselves
        when no field is given).

        Written out rather than through ``dataclasses.replace``: a program may derive
        options for every job it submits (``pool.options(delay=d).submit(...)``), and this
        costs half as much (2.3 against 4.6 µs for ``derive(delay=0.5)``).
        """
        changes: dict[str, Any] = {}
        if delay is not _UNSET:
            changes["delay"] = check_seconds("delay", delay)
        if timeout is not _UNSET:
            changes["timeout"] = check_timeout("timeout", timeout)
        if retry is not _UNSET:
            changes["retry"] = check_retry(retry)
        if key is not _UNSET:
            changes["key"] = check_hashable("key", key)
        if priority is not _UNSET:
            changes["priority"] = check_priority(priority)
        if group is not _UNSET:
            changes["group"] = check_hashable("group", group)
        if after is not _UNSET:
            changes["after"] = tuple(after)  # checked by the submitter (check_after)
        if not changes:  # pool.options() with no arguments: frozen, so share these
            return self
        if type(self) is not JobOptions:  # a subclass: its own fields and __post_init__
            return replace(self, **changes)
        new: JobOptions = _new(JobOptions)
        set_field = object.__setattr__
        for name in _FIELDS:
            set_field(new, name, changes[name] if name in changes else getattr(self, name))
        new._settle(inert_retry(new.retry) if "retry" in changes else self.retry_inert)
        return new


#: The fields a caller sets (the others are derived from them by ``_settle``).
_FIELDS = ("delay", "timeout", "retry", "key", "priority", "group", "after")

#: ``type.__flags__`` bit of types whose objects the garbage collector can track.
_HAVE_GC = 1 << 14


def atomic(value: object, depth: int = 0) -> bool:
    """Whether ``value`` can never refer, now or later, to an object the garbage
    collector tracks: CPython's own rule for untracking containers (the C storage's
    ``atomic()`` applies the same rule to a job's result).

    Yes for objects of types without collector support (None, bools, ints, floats,
    strings, bytes, and subclasses of these that add no ``__dict__``), for exact tuples
    the collector has untracked, and for small exact tuples (at most 8 items, nested at
    most 4 deep) of atomic objects. No for everything else, even a dict the collector does
    not track yet: one could be given a reference to a job later.
    """
    if not type(value).__flags__ & _HAVE_GC:
        return True
    if type(value) is not tuple:
        return False
    if not gc.is_tracked(value):
        return True
    return (len(value) <= 8 and depth < 4
            and all(atomic(item, depth + 1) for item in value))


def inert_retry(policy: Retry) -> bool:
    """A plain ``Retry`` with atomic numbers and a ``retry_on`` tuple of built-in (static,
    hence untracked and unchangeable) exception types."""
    retry_on = policy.retry_on
    return (type(policy) is Retry and type(retry_on) is tuple
            and not any(gc.is_tracked(cls) for cls in retry_on)
            and all(atomic(value) for value in (policy.attempts, policy.delay, policy.factor,
                                                policy.max_delay, policy.jitter)))


def check_retry(value: object) -> Retry:
    """A :class:`Retry`, or ``None`` for "no retry" (a single attempt)."""
    if value is None:
        return Retry(attempts=1, delay=0.0, jitter=False)
    if not isinstance(value, Retry):
        raise TypeError(f"retry must be an asyncq.Retry or None, got {type(value).__name__}")
    return value


def check_hashable(name: str, value: object) -> Hashable | None:
    """``None`` or a hashable value (a key or a group name)."""
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"{name} must be hashable (a str, an int, a tuple...) or None, "
                        f"got {type(value).__name__}") from None
    return value


def check_priority(value: object) -> int:
    """An int (never a bool); any sign."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"priority must be an int (higher starts first), got {value!r}")
    return value
