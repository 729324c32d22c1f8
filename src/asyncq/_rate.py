"""Rate limits: token buckets on the loop's clock."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from asyncq._validate import check_int, check_number


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``starts`` job starts every ``per`` seconds, with bursts of up to ``burst``.

    A token bucket: it holds up to ``burst`` tokens (default: ``starts``) and refills at
    ``starts / per`` tokens a second; each job start takes one. A job that finds no token
    waits on a timer, holding no worker, and other jobs not under the same limit go on.
    """

    starts: int
    per: float = 1.0
    burst: int | None = None

    def __post_init__(self) -> None:
        check_int("starts", self.starts, minimum=1)
        object.__setattr__(self, "per", check_number("per", self.per, minimum=1e-9))
        if self.burst is not None:
            check_int("burst", self.burst, minimum=1)

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.starts / self.per

    @property
    def capacity(self) -> int:
        """The largest burst."""
        return self.burst if self.burst is not None else self.starts


class TokenBucket:
    """The running state of one :class:`RateLimit` (full when created)."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.rate = limit.rate
        self.capacity = float(limit.capacity)
        self.tokens = self.capacity
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0.0: one is available now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def consume(self) -> None:
        """Take the token :meth:`wait` found."""
        self.tokens -= 1.0

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (it can be forgotten)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.capacity


def check_limits(pool: object, groups: object, key: object) -> dict[str, Any]:
    """Validate the rate-limit arguments of ``Pool``; return them as ``Core`` keywords."""
    for name, value in (("rate_limit", pool), ("key_rate_limit", key)):
        if value is not None and not isinstance(value, RateLimit):
            raise TypeError(f"{name} must be an asyncq.RateLimit or None, got {value!r}")
    if groups is not None:
        if not isinstance(groups, Mapping) or not all(
                isinstance(v, RateLimit) for v in groups.values()):
            raise TypeError("group_rate_limits must map group names to asyncq.RateLimit, "
                            f"got {groups!r}")
        groups = dict[Hashable, RateLimit](groups)
    return {"rate_limit": pool, "group_rate_limits": groups, "key_rate_limit": key}
