"""Event-driven processing: producers emit events, a pool of consumers acknowledges them.

Three services publish events concurrently (orders, payments, shipments). Each event is
handed to a small pool of consumers with ``await pool.submit(...)``: the pool holds only a
few events that are not yet being processed, so a fast producer is slowed down to the
consumers' pace (backpressure) instead of piling events up in memory.

A consumer settles each event the way a message broker would:

* **ack** — the handler returns: the event is done;
* **retry later** — the handler raises ``asyncq.RetryLater(delay)`` when a resource is
  briefly unavailable (here: a shipment whose warehouse record is locked), and the event
  comes back after ``delay`` seconds without holding a consumer meanwhile; a flaky network
  call raising ``ConnectionError`` is retried with backoff by the pool's ``Retry`` policy;
* **dead-letter** — a poison message (a payload that can never be parsed) raises an error
  that the policy's ``retry_on`` does not cover, so it goes straight to the dead letters
  instead of being retried.

The script prints the retries and dead letters as they happen, then the counts, and checks
that every event was either acked or dead-lettered exactly once, that the pool never held
more than its bound, and that the pool's statistics add up.

Run it with ``python examples/event_consumers.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import structlog

import asyncq

BEGAN = time.monotonic()
WORKERS = 3
MAXSIZE = 4
EVENTS_PER_PRODUCER = 12


def say(message: str) -> None:
    print(f"[{time.monotonic() - BEGAN:5.2f}s] {message}", flush=True)


@dataclass(frozen=True)
class Event:
    """One event on the bus."""

    source: str
    seq: int
    payload: dict[str, object]

    @property
    def name(self) -> str:
        return f"{self.source}#{self.seq}"


class PoisonMessage(ValueError):
    """The event can never be processed: retrying would only fail again."""


@dataclass
class Ledger:
    """What the consumers did, kept to check the pool's bookkeeping against."""

    handled: Counter[str] = field(default_factory=Counter)  # attempts per event
    acked: list[str] = field(default_factory=list)
    retry_later: int = 0
    network_errors: int = 0
    peak_held: int = 0
    blocked: float = 0.0  # seconds producers spent waiting for room


ledger = Ledger()
work_time = random.Random(42)  # how long each event takes to handle


async def consume(event: Event) -> str:
    """Handle one event; returning acknowledges it."""
    ledger.handled[event.name] += 1
    attempt = ledger.handled[event.name]
    await asyncio.sleep(work_time.uniform(0.004, 0.012))
    if event.payload.get("amount") == "???":
        raise PoisonMessage(f"{event.name}: amount {event.payload['amount']!r} is not a number")
    if event.payload.get("locked") and attempt == 1:
        ledger.retry_later += 1
        say(f"  {event.name}: warehouse record locked, asking to retry in 30ms")
        raise asyncq.RetryLater(0.03, "warehouse record locked")
    if event.payload.get("flaky") and attempt == 1:
        ledger.network_errors += 1
        say(f"  {event.name}: ledger service unreachable, the policy retries it")
        raise ConnectionError("ledger service unreachable")
    ledger.acked.append(event.name)
    return f"ack {event.name}"


def make_event(source: str, seq: int, rng: random.Random) -> Event:
    """A mostly ordinary event; a few are locked, flaky or poison."""
    payload: dict[str, object] = {"amount": round(rng.uniform(5, 500), 2)}
    if source == "payments" and seq in (4, 9):
        payload["amount"] = "???"  # a poison message: malformed at the source
    elif source == "shipments" and seq % 5 == 2:
        payload["locked"] = True
    elif rng.random() < 0.1:
        payload["flaky"] = True
    return Event(source, seq, payload)


async def produce(pool: asyncq.Pool, source: str, jobs: list[asyncq.Job[str]]) -> None:
    """Publish events as fast as the pool accepts them."""
    rng = random.Random(f"events from {source}")  # each producer's events are reproducible
    for seq in range(1, EVENTS_PER_PRODUCER + 1):
        event = make_event(source, seq, rng)
        waited = time.monotonic()
        jobs.append(await pool.submit(consume, event))  # waits while the pool is full
        ledger.blocked += time.monotonic() - waited
        await asyncio.sleep(rng.uniform(0.0, 0.004))


async def watch(pool: asyncq.Pool, stop: asyncio.Event) -> None:
    """Sample how many events the pool holds, to check the bound."""
    while not stop.is_set():
        s = pool.stats()
        ledger.peak_held = max(ledger.peak_held, s.waiting + s.delayed + s.running)
        await asyncio.sleep(0.001)


async def main() -> None:
    policy = asyncq.Retry(attempts=3, delay=0.01, factor=2.0, max_delay=0.1,
                          retry_on=(ConnectionError, TimeoutError))
    sources = ["orders", "payments", "shipments"]
    jobs: list[asyncq.Job[str]] = []
    async with asyncq.Pool(workers=WORKERS, maxsize=MAXSIZE, retry=policy, seed=42) as pool:
        say(f"{len(sources)} producers, {WORKERS} consumers, at most {MAXSIZE} events waiting")
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(pool, stop))
        await asyncio.gather(*(produce(pool, source, jobs) for source in sources))
        say(f"producers done: {len(jobs)} events published, "
            f"{ledger.blocked:.2f}s spent waiting for room in total")
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        stop.set()
        await watcher
        stats = pool.stats()
        letters = list(pool.dead_letters)

    for letter in letters:
        say(f"dead letter: job {letter.job_id} {letter.args[0].name} ({letter.reason}, "
            f"{letter.attempts} attempt): {letter.error}")
    acked = [o for o in outcomes if isinstance(o, str)]
    dead = [o for o in outcomes if isinstance(o, BaseException)]
    say(f"acked={len(acked)} retried={stats.retried} (retry-later {ledger.retry_later}, "
        f"network {ledger.network_errors}) dead-lettered={len(dead)}")
    say(f"stats: submitted={stats.submitted} succeeded={stats.succeeded} "
        f"failed_attempts={stats.failed} retried={stats.retried} dead={stats.dead} "
        f"peak held={ledger.peak_held} (bound {MAXSIZE + WORKERS})")
    check(jobs, acked, dead, letters, stats)
    say("ok: every event acked or dead-lettered exactly once; the numbers add up")


def check(jobs: list[asyncq.Job[str]], acked: list[str], dead: list[BaseException],
          letters: list[asyncq.DeadLetter], stats: asyncq.Stats) -> None:
    """The guarantees this example demonstrates."""
    total = len(jobs)
    assert total == 3 * EVENTS_PER_PRODUCER == stats.submitted
    assert len(acked) + len(dead) == total, "every event ends acked or dead-lettered"
    assert len(set(ledger.acked)) == len(ledger.acked) == len(acked), "acked exactly once"
    assert all(isinstance(error, PoisonMessage) for error in dead)
    assert len(dead) == len(letters) == stats.dead == 2
    assert all(letter.reason == "not_retryable" and letter.attempts == 1 for letter in letters)
    assert stats.retried == ledger.retry_later + ledger.network_errors > 0
    assert stats.failed == stats.retried + stats.dead
    assert stats.succeeded == len(acked)
    assert stats.submitted == (stats.succeeded + stats.dead + stats.cancelled + stats.waiting
                               + stats.delayed + stats.running)
    assert ledger.peak_held <= MAXSIZE + WORKERS, "the pool held more than its bound"
    assert sum(ledger.handled.values()) == stats.succeeded + stats.failed


if __name__ == "__main__":
    # The narrative tells the story; keep only the pool's warnings (such as job.dead).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncq.run(main())
