"""Counters, gauges and latency percentiles, and the immutable :class:`Stats` snapshot."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

#: The newest ``SAMPLE_SIZE`` timed jobs (queue wait and run time) feed the percentiles.
SAMPLE_SIZE = 4096
#: Jobs are timed by count: job ``n`` is timed when ``n & mask == 0``, and the mask adapts
#: (see :func:`next_sample_mask`) so that samples come about once a millisecond or less
#: often. While jobs are few every one is timed; at full speed one in up to
#: ``SAMPLE_MASK_MAX + 1``. Timing every job would cost the hot path three clock reads
#: and a record per job for numbers that a sample estimates just as well.
SAMPLE_MASK_MAX = 1023
SAMPLE_GAP_MIN = 0.001  # samples closer than this (seconds): time half as many jobs
SAMPLE_GAP_MAX = 0.01  # farther apart than this: time twice as many


def next_sample_mask(mask: int, gap: float) -> int:
    """The sampling mask after a sample that came ``gap`` seconds after the previous one."""
    if gap < SAMPLE_GAP_MIN:
        return min(mask * 2 + 1, SAMPLE_MASK_MAX)
    if gap > SAMPLE_GAP_MAX:
        return mask >> 1
    return mask


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles in seconds over the sampled jobs (all zero before any sample)."""

    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    samples: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a pool, taken by ``pool.stats()``.

    Counters since the pool started: ``submitted`` (jobs admitted), ``succeeded``,
    ``failed`` (failed attempts, retried or not), ``retried`` (attempts scheduled again),
    ``dead`` (jobs that went to the dead letters), ``cancelled``. Gauges now: ``waiting``,
    ``delayed``, ``running``, ``workers``, ``dead_letters`` (letters held). At every moment
    ``submitted == succeeded + dead + cancelled + waiting + delayed + running``.
    ``queue_wait`` and ``run_time`` are latency percentiles of a sample of jobs.

    Balancing state: ``keys_busy`` (keys held by a job), ``queued_behind_keys`` (jobs
    waiting for their key), ``waiting_on_dependencies``, and ``lanes``: jobs waiting per
    ``(priority, group)`` lane (plain jobs are not listed; they are in ``waiting``), and
    ``throttled``: jobs held back by a group or key rate limit.
    """

    submitted: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    cancelled: int
    waiting: int
    delayed: int
    running: int
    workers: int
    dead_letters: int
    queue_wait: Latency
    run_time: Latency
    keys_busy: int = 0
    queued_behind_keys: int = 0
    waiting_on_dependencies: int = 0
    lanes: Mapping[tuple[int, Hashable | None], int] = field(default_factory=dict)
    throttled: int = 0

    @property
    def in_flight(self) -> int:
        """Jobs admitted and not yet terminal."""
        return self.waiting + self.delayed + self.running


class Samples:
    """A bounded window of latency samples."""

    __slots__ = ("_window",)

    def __init__(self) -> None:
        self._window: deque[float] = deque(maxlen=SAMPLE_SIZE)

    def add(self, seconds: float) -> None:
        """Record one sample."""
        self._window.append(seconds)

    def latency(self) -> Latency:
        """Nearest-rank percentiles over the window."""
        data = sorted(self._window)
        if not data:
            return Latency()
        last = len(data) - 1

        def rank(q: float) -> float:
            return data[min(last, int(q * len(data)))]

        return Latency(p50=rank(0.50), p95=rank(0.95), p99=rank(0.99), samples=len(data))
