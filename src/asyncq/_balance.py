"""Balancing: per-key order, dependencies, priorities and fair share across groups.

A job that is not plain (it has a ``key``, ``after``, a ``priority`` or a ``group``) passes
three gates on its way to a worker, in this order:

1. **Key** — jobs sharing a key hold it one at a time, in submission order. The key is
   claimed at admission and held until the job is terminal (through its retries), so later
   jobs of the key queue behind it. A busy key blocks only its own jobs.
2. **Dependencies** — the job waits until every job in ``after`` has succeeded; if one
   dies or is cancelled, the job is cancelled with ``DependencyFailed``.
3. **Lanes** — one FIFO lane per ``(priority, group)``. Workers serve the highest
   priority first; within a priority, groups take turns, ``weight`` jobs a turn (deficit
   round robin), so a flood in one group cannot starve another. Plain jobs are the lane
   ``(0, None)``: the pool's fast ready queue.

With ``aging`` (seconds), a lane's priority rises by one for every ``aging`` seconds its
oldest job has waited, so low priorities are never starved by a steady stream of high ones.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from asyncq._job import SUCCEEDED, Job

Ready = deque[Job[Any]]

#: The turn of the plain ready queue among the groups of priority 0.
PLAIN: Hashable = ("asyncq", "plain")


class Level:
    """The lanes of one priority and the turn order of their groups."""

    __slots__ = ("credit", "lanes", "ring", "size")

    def __init__(self) -> None:
        self.lanes: dict[Hashable | None, Ready] = {}
        self.ring: deque[Hashable | None] = deque()
        self.credit = 0
        self.size = 0  # jobs in this level's lanes


class KeyHold:
    """Who holds a key now, and the jobs queued behind it in submission order."""

    __slots__ = ("holder", "queue")

    def __init__(self, holder: Job[Any]) -> None:
        self.holder = holder
        self.queue: Ready = deque()


class Balancer:
    """The gates and lanes of one pool (see the module docstring)."""

    def __init__(self, weights: Mapping[Hashable, int], aging: float | None,
                 clock: Callable[[], float]) -> None:
        self.weights = dict(weights)
        self.aging = aging
        self.clock = clock
        self.levels: dict[int, Level] = {}
        self.priorities: list[int] = []  # ascending: the levels whose lanes hold jobs
        self.count = 0  # jobs in lanes (the plain ready queue not included)
        self.keys: dict[Hashable, KeyHold] = {}
        self.blocked: dict[Job[Any], int] = {}  # job -> dependencies not yet succeeded
        self.dependents: dict[Job[Any], list[Job[Any]]] = {}
        self.enqueued_at: dict[Job[Any], float] = {}

    def uses_lane(self, job: Job[Any]) -> bool:
        """Whether the job queues in a lane (else in the plain ready queue)."""
        options = job.options
        return options.priority != 0 or options.group is not None or self.aging is not None

    # -- gate 1: keys -------------------------------------------------------------------
    def claim_key(self, job: Job[Any]) -> bool:
        """Claim the job's key; False when the job must queue behind the key's holder."""
        key = job.options.key
        hold = self.keys.get(key)
        if hold is None:
            self.keys[key] = KeyHold(job)
            return True
        hold.queue.append(job)
        return False

    def release_key(self, job: Job[Any]) -> Job[Any] | None:
        """The holder ended: hand the key to the next waiting job (returned) or free it."""
        key = job.options.key
        hold = self.keys.get(key)
        if hold is None or hold.holder is not job:
            return None
        while hold.queue:
            successor = hold.queue.popleft()
            if not successor.done():
                hold.holder = successor
                return successor
        del self.keys[key]
        return None

    # -- gate 2: dependencies -----------------------------------------------------------
    def wait_for(self, job: Job[Any]) -> Job[Any] | None:
        """Register the job's dependencies; return one that already failed, if any."""
        pending = []
        for dependency in job.options.after:
            if dependency.state is SUCCEEDED:
                continue
            if dependency.done():
                return dependency
            pending.append(dependency)
        for dependency in pending:
            self.dependents.setdefault(dependency, []).append(job)
        if pending:
            self.blocked[job] = len(pending)
        return None

    def resolved(self, dependency: Job[Any]) -> list[Job[Any]]:
        """A job ended: the dependents it released. If it succeeded they may go on (those
        with no other dependency left); if not, each of them must be cancelled."""
        released = []
        for job in self.dependents.pop(dependency, ()):
            left = self.blocked.get(job)
            if left is None:
                continue  # cancelled meanwhile
            if dependency.state is SUCCEEDED and left > 1:
                self.blocked[job] = left - 1
                continue
            del self.blocked[job]
            released.append(job)
        return released

    # -- gate 3: lanes ------------------------------------------------------------------
    def place(self, job: Job[Any]) -> None:
        """Queue a job that passed its gates in its ``(priority, group)`` lane."""
        options = job.options
        level = self.levels.get(options.priority)
        if level is None:
            level = self.levels[options.priority] = Level()
        if not level.size:
            bisect.insort(self.priorities, options.priority)
        lane = level.lanes.get(options.group)
        if lane is None:
            lane = level.lanes[options.group] = deque()
        if not lane:
            level.ring.append(options.group)
        lane.append(job)
        level.size += 1
        self.count += 1
        if self.aging is not None:
            self.enqueued_at[job] = self.clock()

    def take(self, ready: Ready) -> Job[Any] | None:
        """The next job a worker should run, from the lanes or the plain ready queue."""
        priority = self.best_priority(bool(ready))
        level = self.levels.get(priority) if priority is not None else None
        if level is None or not level.size:
            return ready.popleft() if ready else None
        if priority == 0 and ready and PLAIN not in level.ring:
            level.ring.append(PLAIN)  # plain jobs take turns with the groups of priority 0
        return self.take_turn(priority, level, ready)  # type: ignore[arg-type]

    def best_priority(self, plain_waiting: bool) -> int | None:
        """The priority to serve now (with aging, the highest effective one)."""
        if self.aging is None:
            top = self.priorities[-1] if self.priorities else None
            if plain_waiting and (top is None or top < 0):
                return 0
            return top
        now = self.clock()
        best, best_score = None, float("-inf")
        for priority in self.priorities:
            oldest = min(self.enqueued_at.get(lane[0], now)
                         for lane in self.levels[priority].lanes.values() if lane)
            score = priority + (now - oldest) / self.aging
            if score > best_score:
                best, best_score = priority, score
        return best

    def take_turn(self, priority: int, level: Level, ready: Ready) -> Job[Any] | None:
        """Deficit round robin over the groups of one level (``weight`` jobs a turn)."""
        ring = level.ring
        while ring:
            group = ring[0]
            lane = ready if group == PLAIN else level.lanes[group]
            if not lane:
                ring.popleft()
                level.credit = 0
                continue
            job = lane.popleft()
            level.credit += 1
            if not lane:
                ring.popleft()
                level.credit = 0
            elif level.credit >= self.weights.get(group, 1):
                ring.rotate(-1)
                level.credit = 0
            if group != PLAIN:
                self.taken_from_lane(priority, level, job)
            return job
        return None

    def taken_from_lane(self, priority: int, level: Level, job: Job[Any]) -> None:
        """Bookkeeping for a job that left its lane."""
        level.size -= 1
        self.count -= 1
        if not level.size:
            self.priorities.remove(priority)
        if self.aging is not None:
            self.enqueued_at.pop(job, None)

    def snapshot(self) -> dict[str, Any]:
        """The balancing part of ``pool.stats()``."""
        lanes = {(priority, group): len(lane) for priority, level in self.levels.items()
                 for group, lane in level.lanes.items() if lane}
        return {
            "keys_busy": len(self.keys),
            "queued_behind_keys": sum(len(hold.queue) for hold in self.keys.values()),
            "waiting_on_dependencies": len(self.blocked),
            "lanes": lanes,
        }

    # -- cancellation and shutdown --------------------------------------------------------
    def discard(self, job: Job[Any]) -> bool:
        """Remove a cancelled job from the balancer; False if it was not held here."""
        if self.blocked.pop(job, None) is not None:
            return True
        options = job.options
        hold = self.keys.get(options.key) if options.key is not None else None
        if hold is not None and hold.holder is not job and job in hold.queue:
            hold.queue.remove(job)
            return True
        level = self.levels.get(options.priority)
        lane = level.lanes.get(options.group) if level is not None else None
        if level is not None and lane is not None and job in lane:
            lane.remove(job)
            self.taken_from_lane(options.priority, level, job)
            return True
        return False

    def release_all(self) -> list[Job[Any]]:
        """Empty every gate and lane; return the jobs they held (for shutdown)."""
        jobs: list[Job[Any]] = list(self.blocked)
        for hold in self.keys.values():
            jobs.extend(hold.queue)
        for level in self.levels.values():
            for lane in level.lanes.values():
                jobs.extend(lane)
        self.levels.clear()
        self.priorities.clear()
        self.count = 0
        self.keys.clear()
        self.blocked.clear()
        self.dependents.clear()
        self.enqueued_at.clear()
        return jobs
