"""Balancing: per-key order, dependencies, priorities and fair share across groups.

A job that is not plain (it has a ``key``, ``after``, a ``priority`` or a ``group``) passes
three gates on its way to a worker, in this order:

1. **Key** — jobs sharing a key hold it one at a time, in submission order. The key is
   claimed at admission and held until the job is terminal (through its retries), so later
   jobs of the key queue behind it. A busy key blocks only its own jobs.
2. **Dependencies** — the job waits until every job in ``after`` has succeeded; if one
   dies or is cancelled, the job is cancelled with ``DependencyFailed``.
3. **Lanes** — one FIFO lane per ``(priority, group)`` (a retry with no delay goes to
   the front of its lane). Workers serve the highest
   priority first; within a priority, groups take turns, ``weight`` jobs a turn (deficit
   round robin), so a flood in one group cannot starve another. Plain jobs are the lane
   ``(0, None)``: the pool's fast ready queue.

With ``aging`` (seconds), a lane's priority rises by one for every ``aging`` seconds its
oldest job has waited, so low priorities are never starved by a steady stream of high ones.

Rate limits are token buckets checked when a worker takes a job: for the whole pool, per
group, and per key. A group without a token leaves the turn order until its next token (a
loop timer puts it back); a keyed job without a token is set aside on a timer and returns
to the front of its lane; with the pool's bucket empty nothing starts until the timer
fires. No worker is held and nothing polls.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from asyncq._job import SUCCEEDED, WAITING, Job
from asyncq._rate import RateLimit, TokenBucket

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


class Balancer:
    """The gates and lanes of one pool (see the module docstring)."""

    def __init__(self, weights: Mapping[Hashable, int], aging: float | None,
                 clock: Callable[[], float], *,
                 later: Callable[..., Any] | None = None, wake: Callable[[], None] | None = None,
                 pool_limit: RateLimit | None = None,
                 group_limits: Mapping[Hashable, RateLimit] | None = None,
                 key_limit: RateLimit | None = None) -> None:
        self.weights = dict(weights)
        self.aging = aging
        self.clock = clock
        self.later = later  # loop.call_later
        self.wake = wake  # wakes a parked worker
        self.pool_bucket = TokenBucket(pool_limit, clock()) if pool_limit else None
        self.group_limits = dict(group_limits or {})
        self.group_buckets: dict[Hashable, TokenBucket] = {}
        self.key_limit = key_limit
        self.key_buckets: dict[Hashable, TokenBucket] = {}
        self.paused_groups: dict[tuple[int, Hashable], Any] = {}  # -> timer handle
        self.throttled: dict[Job[Any], Any] = {}  # keyed jobs set aside -> timer handle
        self.pool_timer: Any = None
        self.timed = aging is not None or bool(pool_limit or self.group_limits or key_limit)
        self.levels: dict[int, Level] = {}
        self.priorities: list[int] = []  # ascending: the levels whose lanes hold jobs
        self.count = 0  # jobs in lanes (the plain ready queue not included)
        self.keys: dict[Hashable, Job[Any]] = {}  # key -> the job holding it
        self.key_queues: dict[Hashable, Ready] = {}  # key -> jobs waiting for it, in order
        self.blocked: dict[Job[Any], int] = {}  # job -> dependencies not yet succeeded
        self.dependents: dict[Job[Any], list[Job[Any]]] = {}
        self.enqueued_at: dict[Job[Any], float] = {}

    def uses_lane(self, job: Job[Any]) -> bool:
        """Whether the job queues in a lane (else in the plain ready queue)."""
        options = job.options
        return (options.priority != 0 or options.group is not None or self.aging is not None
                or self.pool_bucket is not None or self.key_limit is not None)

    # -- gate 1: keys -------------------------------------------------------------------
    def claim_key(self, job: Job[Any]) -> bool:
        """Claim the job's key; False when the job must queue behind the key's holder."""
        key = job.options.key
        keys = self.keys
        if key not in keys:
            keys[key] = job
            return True
        queue = self.key_queues.get(key)
        if queue is None:
            queue = self.key_queues[key] = deque()
        queue.append(job)
        return False

    def release_key(self, job: Job[Any]) -> Job[Any] | None:
        """The holder ended: hand the key to the next waiting job (returned) or free it."""
        key = job.options.key
        if self.keys.get(key) is not job:
            return None
        queue = self.key_queues.get(key)
        while queue:
            successor = queue.popleft()
            if not successor.done():
                self.keys[key] = successor
                return successor
        if queue is not None:
            del self.key_queues[key]
        del self.keys[key]
        return None

    # -- gate 2: dependencies -----------------------------------------------------------
    def wait_for(self, job: Job[Any]) -> Job[Any] | None:
        """Register the job's dependencies; return one that already failed, if any."""
        pending: list[Job[Any]] = []
        dependencies: tuple[Job[Any], ...] = job.options.after
        for dependency in dependencies:
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
    def place(self, job: Job[Any], *, front: bool = False) -> None:
        """Queue a job that passed its gates in its ``(priority, group)`` lane: at the back,
        or ``front`` (a retry with no delay, a keyed job back from its rate-limit timer)."""
        options = job.options
        level = self.levels.get(options.priority)
        if level is None:
            level = self.levels[options.priority] = Level()
        if not level.size:
            bisect.insort(self.priorities, options.priority)
        lane = level.lanes.get(options.group)
        if lane is None:
            lane = level.lanes[options.group] = deque()
        if (not lane and options.group not in level.ring
                and (options.priority, options.group) not in self.paused_groups):
            level.ring.append(options.group)
        if self.aging is not None:
            # A lane ages by its head: a job put in front of it takes that age, so that
            # the jobs behind do not lose the wait they have already done.
            now = self.clock()
            self.enqueued_at[job] = (min(now, self.enqueued_at.get(lane[0], now))
                                     if front and lane else now)
        if front:
            lane.appendleft(job)
        else:
            lane.append(job)
        level.size += 1
        self.count += 1

    def take(self, ready: Ready) -> Job[Any] | None:
        """The next job a worker should run, from the lanes or the plain ready queue;
        ``None`` when everything waiting is held back by a rate limit."""
        now = self.clock() if self.timed else 0.0
        bucket = self.pool_bucket
        if bucket is not None:
            wait = bucket.wait(now)
            if wait:
                self.pause_pool(wait)
                return None
        job = self.take_from_levels(ready, now)
        if job is None and ready:
            job = ready.popleft()
        if job is not None and bucket is not None:
            bucket.consume()
        return job

    def take_from_levels(self, ready: Ready, now: float) -> Job[Any] | None:
        for priority in self.order(bool(ready), now):
            level = self.levels.get(priority)
            if level is None or not level.size:
                if priority == 0 and ready:
                    return ready.popleft()
                continue
            if priority == 0 and ready and PLAIN not in level.ring:
                level.ring.append(PLAIN)  # plain jobs take turns with the groups of priority 0
            job = self.take_turn(priority, level, ready, now)
            if job is not None:
                return job
        return None

    def order(self, plain_waiting: bool, now: float) -> list[int]:
        """Priorities to serve, best first (with aging, by effective priority)."""
        priorities = self.priorities
        if self.aging is None:
            if plain_waiting and 0 not in priorities:
                return sorted([*priorities, 0], reverse=True)
            return priorities[::-1]

        def score(priority: int) -> float:
            heads = [self.enqueued_at.get(lane[0], now)
                     for lane in self.levels[priority].lanes.values() if lane]
            return priority + (now - min(heads, default=now)) / self.aging  # type: ignore[operator]

        return sorted(priorities, key=score, reverse=True)

    def take_turn(self, priority: int, level: Level, ready: Ready,
                  now: float) -> Job[Any] | None:
        """Deficit round robin over the groups of one level (``weight`` jobs a turn),
        skipping groups and keys that are out of tokens."""
        ring = level.ring
        while ring:
            group = ring[0]
            lane = ready if group == PLAIN else level.lanes[group]
            if not lane:
                ring.popleft()
                level.credit = 0
                continue
            bucket = self.group_bucket(group, now) if group != PLAIN else None
            if bucket is not None and bucket.wait(now):
                ring.popleft()
                level.credit = 0
                self.pause_group(priority, group, bucket.wait(now))
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
            if not self.key_allows(job, now):
                continue
            if bucket is not None:
                bucket.consume()
            return job
        return None

    # -- rate limits ----------------------------------------------------------------------
    def group_bucket(self, group: Hashable | None, now: float) -> TokenBucket | None:
        limit = self.group_limits.get(group) if self.group_limits else None
        if limit is None:
            return None
        bucket = self.group_buckets.get(group)
        if bucket is None:
            bucket = self.group_buckets[group] = TokenBucket(limit, now)
        return bucket

    def key_allows(self, job: Job[Any], now: float) -> bool:
        """Take a token of the job's key, or set the job aside until one is due."""
        key = job.options.key
        if self.key_limit is None or key is None:
            return True
        bucket = self.key_buckets.get(key)
        if bucket is None:
            if len(self.key_buckets) > 1024:  # forget buckets that have refilled
                self.key_buckets = {k: b for k, b in self.key_buckets.items()
                                    if not b.full(now)}
            bucket = self.key_buckets[key] = TokenBucket(self.key_limit, now)
        wait = bucket.wait(now)
        if not wait:
            bucket.consume()
            return True
        assert self.later is not None
        self.throttled[job] = self.later(wait, self.resume_job, job)
        return False

    def resume_job(self, job: Job[Any]) -> None:
        if self.throttled.pop(job, None) is not None and job.state is WAITING:
            self.place(job, front=True)
            self.notify()

    def pause_group(self, priority: int, group: Hashable | None, wait: float) -> None:
        assert self.later is not None
        previous = self.paused_groups.get((priority, group))
        if previous is not None:
            previous.cancel()
        self.paused_groups[(priority, group)] = self.later(wait, self.resume_group,
                                                           priority, group)

    def resume_group(self, priority: int, group: Hashable | None) -> None:
        self.paused_groups.pop((priority, group), None)
        level = self.levels.get(priority)
        if level is not None and level.lanes.get(group) and group not in level.ring:
            level.ring.append(group)
            self.notify()

    def pause_pool(self, wait: float) -> None:
        if self.pool_timer is None:
            assert self.later is not None
            self.pool_timer = self.later(wait, self.resume_pool)

    def resume_pool(self) -> None:
        self.pool_timer = None
        self.notify()

    def notify(self) -> None:
        if self.wake is not None:
            self.wake()

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
            "queued_behind_keys": sum(len(queue) for queue in self.key_queues.values()),
            "waiting_on_dependencies": len(self.blocked),
            "lanes": lanes,
            "throttled": len(self.throttled) + sum(
                len(self.levels[p].lanes.get(g) or ()) for p, g in self.paused_groups
                if p in self.levels),
        }

    # -- cancellation and shutdown --------------------------------------------------------
    def discard(self, job: Job[Any]) -> bool:
        """Remove a cancelled job from the balancer; False if it was not held here."""
        if self.blocked.pop(job, None) is not None:
            return True
        handle = self.throttled.pop(job, None)
        if handle is not None:
            handle.cancel()
            return True
        options = job.options
        queue = self.key_queues.get(options.key) if options.key is not None else None
        if queue is not None and job in queue:
            queue.remove(job)
            return True
        level = self.levels.get(options.priority)
        lane = level.lanes.get(options.group) if level is not None else None
        if level is not None and lane is not None and job in lane:
            lane.remove(job)
            if not lane and options.group in level.ring:
                level.ring.remove(options.group)  # no empty lane keeps a turn
                level.credit = 0
            self.taken_from_lane(options.priority, level, job)
            return True
        return False

    def release_all(self) -> list[Job[Any]]:
        """Empty every gate and lane; return the jobs they held (for shutdown)."""
        jobs: list[Job[Any]] = list(self.blocked)
        jobs.extend(self.throttled)
        for handle in [*self.throttled.values(), *self.paused_groups.values(), self.pool_timer]:
            if handle is not None:
                handle.cancel()
        self.throttled.clear()
        self.paused_groups.clear()
        self.pool_timer = None
        for queue in self.key_queues.values():
            jobs.extend(queue)
        for level in self.levels.values():
            for lane in level.lanes.values():
                jobs.extend(lane)
        self.levels.clear()
        self.priorities.clear()
        self.count = 0
        self.keys.clear()
        self.key_queues.clear()
        self.blocked.clear()
        self.dependents.clear()
        self.enqueued_at.clear()
        return jobs
