"""One timer structure for a whole pool: delayed jobs and retry backoffs.

A heap of ``(deadline, seq, job)`` on the event loop's monotonic clock, with a single loop
timer armed for the earliest deadline. Nothing sleeps per job and no worker is held while a
job waits. Entries of jobs cancelled while waiting are dropped lazily when they surface, and
the heap is rebuilt when they make up most of it, so it never holds more than twice the
number of live delayed jobs (plus a small constant).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Any

from asyncq._job import DELAYED, Job

_COMPACT_MIN = 64


class TimerQueue:
    """Jobs on a timer; ``release(job)`` is called for each one whose deadline has come."""

    __slots__ = ("_armed_at", "_early", "_handle", "_heap", "_loop", "_release", "_seq", "_stale")

    def __init__(self, loop: asyncio.AbstractEventLoop, release: Callable[[Job[Any]], None]):
        self._loop = loop
        self._release = release
        self._heap: list[tuple[float, int, Job[Any]]] = []
        self._seq = 0
        self._stale = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        # The loop may wake a hair before a deadline (its clock resolution); what is due
        # within that margin is released rather than re-armed.
        # uvloop keeps time in whole milliseconds and says nothing: allow a millisecond.
        self._early: float = getattr(loop, "_clock_resolution", None) or 1e-3

    def __len__(self) -> int:
        return len(self._heap) - self._stale

    def schedule(self, delay: float, job: Job[Any]) -> None:
        """Hold ``job`` (already ``DELAYED``) until ``delay`` seconds from now."""
        when = self._loop.time() + delay
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, job))
        if self._handle is None or when < self._armed_at:
            self._arm(when)

    def discard(self, job: Job[Any]) -> None:
        """Forget a job that left ``DELAYED`` other than by firing (it was cancelled)."""
        self._stale += 1
        if self._stale > _COMPACT_MIN and self._stale * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].state is DELAYED]
            heapq.heapify(self._heap)
            self._stale = 0
            if not self._heap:
                self.stop()

    def release_all(self) -> list[Job[Any]]:
        """Empty the queue and return its live jobs (for shutdown)."""
        jobs = [entry[2] for entry in self._heap if entry[2].state is DELAYED]
        self._heap.clear()
        self._stale = 0
        self.stop()
        return jobs

    def stop(self) -> None:
        """Disarm the loop timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        heap = self._heap
        now = self._loop.time() + self._early
        while heap and heap[0][0] <= now:
            job = heapq.heappop(heap)[2]
            if job.state is DELAYED:
                self._release(job)
            else:
                self._stale -= 1
        if heap:
            self._arm(heap[0][0])
