"""A deploy rolled out to 24 servers through an asyncq pool, with flaky steps.

Shows jobs flowing through a bounded pool, retries with backoff on a timer, and a server
that keeps failing ending in the dead-letter queue, then replayed once it is "fixed".
Run it with ``make demo`` (or ``python examples/demo.py``).
"""

from __future__ import annotations

import asyncio
import random
import time

import asyncq

SERVERS = [f"web-{n:02d}" for n in range(1, 21)] + ["db-01", "db-02", "cache-01", "edge-01"]
BROKEN = {"edge-01"}
rng = random.Random(3)
began = time.monotonic()
attempts: dict[str, int] = {}


def say(message: str) -> None:
    print(f"[{time.monotonic() - began:5.2f}s] {message}", flush=True)


async def deploy(server: str, *, version: str) -> str:
    """Pretend to deploy: takes a little while, fails now and then."""
    attempts[server] = attempts.get(server, 0) + 1
    await asyncio.sleep(rng.uniform(0.02, 0.08))
    if server in BROKEN:
        raise ConnectionError(f"{server}: connection refused")
    if attempts[server] == 1 and rng.random() < 0.25:
        say(f"  {server}: flaky failure, will retry")
        raise TimeoutError(f"{server}: health check timed out")
    return f"{server}@{version}"


async def main() -> None:
    retry = asyncq.Retry(attempts=3, delay=0.05, factor=2.0, max_delay=1.0,
                         retry_on=(ConnectionError, TimeoutError))
    async with asyncq.Pool(workers=6, maxsize=8, retry=retry, seed=3) as pool:
        say(f"deploying v1.2 to {len(SERVERS)} servers with 6 workers, maxsize 8")
        jobs = [await pool.submit(deploy, server, version="1.2") for server in SERVERS]
        for job in asyncio.as_completed([_outcome(job) for job in jobs]):
            say(await job)

        s = pool.stats()
        say(f"stats: submitted={s.submitted} succeeded={s.succeeded} retried={s.retried} "
            f"dead={s.dead} failed_attempts={s.failed}")
        for letter in pool.dead_letters:
            say(f"dead letter: job {letter.job_id} {letter.fn.__name__}{letter.args} after "
                f"{letter.attempts} attempts ({letter.reason}): {letter.error!r}")

        BROKEN.clear()
        say("edge-01 repaired; redriving the dead letters")
        for job in await pool.dead_letters.redrive():
            say(f"redriven: {await job}")
        s = pool.stats()
        say(f"final: submitted={s.submitted} succeeded={s.succeeded} dead={s.dead} "
            f"left in DLQ={len(pool.dead_letters)}")
        assert s.submitted == s.succeeded + s.dead + s.cancelled + s.waiting + s.delayed \
            + s.running


async def _outcome(job: asyncq.Job[str]) -> str:
    try:
        return f"ok   {await job}  (attempts: {job.attempts})"
    except Exception as exc:
        return f"dead job {job.id}: {exc!r}  (attempts: {job.attempts})"


if __name__ == "__main__":
    asyncq.run(main())
