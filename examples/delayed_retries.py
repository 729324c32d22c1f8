"""A flaky deployment retried with exponential backoff and jitter, without holding a worker.

The container registry is having a bad minute: pushing the new ``payments`` image fails
four times with ``ConnectionError`` before it goes through. The pool's retry policy,
``asyncq.Retry(attempts=5, delay=0.05, factor=2, max_delay=0.3, jitter=True)``, waits after
failure *n* a random time between 0 and ``min(max_delay, delay * factor ** (n - 1))``
seconds (0.05, 0.1, 0.2, then 0.3 instead of 0.4: the cap), so many clients failing
together do not come back together. ``Pool(seed=...)`` makes the jitter reproducible.

The pool has a single worker, and health checks keep arriving while the deployment waits
for its next attempt: they run during the backoff, because a waiting retry is a timer on
the event loop, not a worker asleep. A release note submitted with
``pool.options(delay=...)`` waits on the same timer.

The script prints each attempt with its time offset and the wait before it, and what ran
in between; it checks that every wait stayed within its backoff ceiling, that health
checks ran while the retry waited, and that the delayed job started no sooner than asked.

Run it with ``python examples/delayed_retries.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

import structlog

import asyncq

BEGAN = time.monotonic()
POLICY = asyncq.Retry(attempts=5, delay=0.05, factor=2.0, max_delay=0.3, jitter=True,
                      retry_on=ConnectionError)
NOTE_DELAY = 0.15


def now() -> float:
    return time.monotonic() - BEGAN


def say(message: str) -> None:
    print(f"[{now():.3f}s] {message}", flush=True)


def ceiling(failed: int) -> float:
    """The longest wait the policy allows after ``failed`` failed attempts."""
    return min(POLICY.max_delay, POLICY.delay * POLICY.factor ** (failed - 1))


@dataclass
class Attempt:
    """One try of the deployment (seconds since the script began)."""

    start: float
    end: float = 0.0


attempts: list[Attempt] = []
checks: list[tuple[float, float]] = []  # (start, end) of each health check
note_started: list[float] = []


async def push_image(service: str, *, version: str, failures: int) -> str:
    """Push an image; the registry refuses the first ``failures`` tries."""
    attempt = Attempt(now())
    attempts.append(attempt)
    number = len(attempts)
    if number > 1:
        waited = attempt.start - attempts[-2].end
        say(f"attempt {number}: after waiting {waited:.3f}s "
            f"(backoff ceiling {ceiling(number - 1):.3f}s)")
    else:
        say(f"attempt {number}: pushing {service}:{version}")
    try:
        await asyncio.sleep(0.01)
        if number <= failures:
            raise ConnectionError(f"registry: connection reset (try {number})")
        return f"{service}:{version} pushed on attempt {number}"
    finally:
        attempt.end = now()


async def health_check(service: str) -> str:
    """A short job that keeps the single worker busy while the deployment waits."""
    start = now()
    await asyncio.sleep(0.004)
    checks.append((start, now()))
    return f"{service} healthy"


async def publish_release_note(text: str) -> str:
    """Runs ``NOTE_DELAY`` seconds after it was submitted."""
    note_started.append(now())
    say(f"release note published: {text!r}")
    return text


async def keep_checking(pool: asyncq.Pool, until: asyncq.Job[str]) -> int:
    """Submit a health check every 20ms until the deployment is done."""
    count = 0
    while not until.done():
        await pool.submit(health_check, ("api", "web", "cache")[count % 3])
        count += 1
        await asyncio.sleep(0.02)
    return count


async def main() -> None:
    async with asyncq.Pool(workers=1, maxsize=20, retry=POLICY, seed=2024) as pool:
        say(f"1 worker; retry policy: {POLICY.attempts} attempts, ceilings "
            + ", ".join(f"{ceiling(n):.2f}s" for n in range(1, POLICY.attempts)))
        deploy = await pool.submit(push_image, "payments", version="2.4", failures=4)
        submitted_note = now()
        note = await pool.options(delay=NOTE_DELAY, retry=None).submit(
            publish_release_note, "payments 2.4 is rolling out")
        submitted_checks = await keep_checking(pool, deploy)
        say(f"result: {await deploy}")
        await note
        stats = pool.stats()

    windows = [(a.end, b.start) for a, b in itertools.pairwise(attempts)]
    during = [sum(1 for start, end in checks if lo <= start and end <= hi) for lo, hi in windows]
    say(f"health checks run while the retry waited, per backoff: {during} "
        f"(of {len(checks)} in all)")
    say(f"stats: submitted={stats.submitted} succeeded={stats.succeeded} "
        f"failed_attempts={stats.failed} retried={stats.retried}")
    check(deploy, windows, during, submitted_checks, note_started[0] - submitted_note, stats)
    say("ok: waits within their ceilings, and the single worker stayed free while they ran")


def check(deploy: asyncq.Job[str], windows: list[tuple[float, float]], during: list[int],
          submitted_checks: int, note_delay: float, stats: asyncq.Stats) -> None:
    """The guarantees this example demonstrates."""
    assert deploy.state is asyncq.JobState.SUCCEEDED
    assert deploy.attempts == 5, "four failures, then success on the fifth try"
    assert len(windows) == 4
    for failed, (lo, hi) in enumerate(windows, start=1):
        # jitter draws in [0, ceiling]; allow for a check finishing and loop latency
        assert hi - lo <= ceiling(failed) + 0.03, f"wait {failed} too long: {hi - lo:.3f}s"
    assert sum(during) > 0, "health checks should run while the deployment waits"
    assert len(checks) == submitted_checks
    assert note_delay >= NOTE_DELAY - 0.005, f"the note ran early: after {note_delay:.3f}s"
    assert stats.failed == stats.retried == 4
    assert stats.succeeded == stats.submitted == submitted_checks + 2
    assert stats.submitted == (stats.succeeded + stats.dead + stats.cancelled + stats.waiting
                               + stats.delayed + stats.running)


if __name__ == "__main__":
    # The narrative tells the story; keep only the pool's warnings.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncq.run(main())
