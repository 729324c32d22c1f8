"""Failed jobs kept in a dead-letter queue: inspected, persisted, fixed and replayed.

A configuration change is applied to eight regions. Three of them fail for good:

* ``eu-west``: its API is down; the ``ConnectionError`` is retried until the attempts run
  out (reason ``attempts_exhausted``);
* ``ap-south``: its configuration is wrong (``replicas=0``); a ``ValueError`` is not worth
  retrying, so it is dead-lettered at once (reason ``not_retryable``);
* ``us-legacy``: the region was decommissioned; nothing will ever fix it.

Nothing is lost: each failed job lands in ``pool.dead_letters`` with its function,
arguments, attempts, the exception itself and its traceback, and a copy is appended to a
JSON Lines file (``Pool(dead_letter_file=...)``) that ``asyncq.read_dead_letters`` reads
back, so the failures survive a restart. The operator inspects the letters, fixes the two
recoverable causes, redrives those two letters (``pool.dead_letters.redrive(...)``) and
purges the obsolete one (``purge(...)``). The script checks that the redriven jobs
succeed, that the file matches what the pool kept, and that the queue ends empty.

Run it with ``python examples/dead_letter_queue.py``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

import structlog

import asyncq

REGIONS = ["us-east", "us-west", "eu-west", "eu-north", "ap-south", "ap-east", "us-legacy",
           "sa-east"]
api_down = {"eu-west"}
replicas = {region: 3 for region in REGIONS} | {"ap-south": 0}
decommissioned = {"us-legacy"}


class RegionGone(LookupError):
    """The region no longer exists."""


async def apply_config(region: str, *, change: str) -> str:
    """Apply a configuration change to one region."""
    await asyncio.sleep(0.005)
    if region in decommissioned:
        raise RegionGone(f"{region} was decommissioned")
    if region in api_down:
        raise ConnectionError(f"{region}: API endpoint unreachable")
    if replicas[region] < 1:
        raise ValueError(f"{region}: replicas must be >= 1, got {replicas[region]}")
    return f"{region}: {change} applied ({replicas[region]} replicas)"


def show(letter: asyncq.DeadLetter) -> None:
    """Print what a dead letter holds, with the end of its traceback."""
    kwargs = ", ".join(f"{k}={v!r}" for k, v in letter.kwargs.items())
    print(f"  job {letter.job_id}: {letter.fn.__name__}({letter.args[0]!r}, {kwargs})")
    print(f"    reason={letter.reason} attempts={letter.attempts} error={letter.error!r}")
    span = (letter.last_failed_at - letter.first_failed_at).total_seconds()
    print(f"    first failed {letter.first_failed_at:%H:%M:%S.%f} UTC, "
          f"last {span * 1000:.0f}ms later")
    print("    traceback, last lines:")
    for line in letter.traceback.strip().splitlines()[-3:]:
        print(f"      {line.rstrip()}")


async def main(dead_letter_file: Path) -> None:
    policy = asyncq.Retry(attempts=3, delay=0.01, jitter=False, retry_on=ConnectionError)
    async with asyncq.Pool(workers=4, maxsize=16, retry=policy,
                           dead_letter_file=dead_letter_file) as pool:
        print(f"applying 'tls-1.3-only' to {len(REGIONS)} regions")
        jobs = [await pool.submit(apply_config, region, change="tls-1.3-only")
                for region in REGIONS]
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        print(f"{len(outcomes) - len(failed)} regions done, {len(failed)} failed; "
              f"dead letters: {len(pool.dead_letters)}\n")

        print("inspecting the dead letters:")
        letters = list(pool.dead_letters)
        for letter in letters:
            show(letter)

        records = asyncq.read_dead_letters(dead_letter_file)
        print(f"\n{dead_letter_file.name} holds {len(records)} records:")
        for record in records:
            print(f"  job {record['job_id']} {record['fn'].rsplit('.', 1)[-1]}{record['args']} "
                  f"{record['error_type'].rsplit('.', 1)[-1]}: {record['error']}")
        check_file(records, letters)

        print("\nfixing: eu-west API restored, ap-south replicas set to 3; "
              "us-legacy is gone for good")
        api_down.clear()
        replicas["ap-south"] = 3
        fixable = [letter for letter in letters if letter.args[0] not in decommissioned]
        redriven = await pool.dead_letters.redrive(fixable)
        for job in redriven:
            print(f"  redriven as job {job.id}: {await job}")
        purged = pool.dead_letters.purge()
        print(f"purged {purged} letter (us-legacy); dead letters left: {len(pool.dead_letters)}")
        stats = pool.stats()

    print(f"stats: submitted={stats.submitted} succeeded={stats.succeeded} dead={stats.dead} "
          f"failed_attempts={stats.failed} dead_letters={stats.dead_letters}")
    check(pool, letters, redriven, stats)
    after_restart = asyncq.read_dead_letters(dead_letter_file)
    print(f"the file still lists all {len(after_restart)} failures for the record: it is an "
          "append-only log,\nwhile redrive and purge act on the queue")
    assert len(after_restart) == 3
    print("ok: every failure kept, persisted, replayed or purged; the queue is empty")


def check_file(records: list[dict[str, object]], letters: list[asyncq.DeadLetter]) -> None:
    """The JSON Lines file holds one record per dead letter, in the same order."""
    assert [r["job_id"] for r in records] == [letter.job_id for letter in letters]
    assert [r["attempts"] for r in records] == [letter.attempts for letter in letters]
    assert [str(r["error_type"]).rsplit(".", 1)[-1] for r in records] == [
        type(letter.error).__name__ for letter in letters]


def check(pool: asyncq.Pool, letters: list[asyncq.DeadLetter], redriven: list[asyncq.Job[str]],
          stats: asyncq.Stats) -> None:
    """The guarantees this example demonstrates."""
    by_region = {letter.args[0]: letter for letter in letters}
    assert set(by_region) == {"eu-west", "ap-south", "us-legacy"}
    assert by_region["eu-west"].reason == "attempts_exhausted"
    assert by_region["eu-west"].attempts == 3
    assert isinstance(by_region["eu-west"].error, ConnectionError)
    assert by_region["ap-south"].reason == "not_retryable"
    assert by_region["ap-south"].attempts == 1
    assert isinstance(by_region["ap-south"].error, ValueError)
    assert "apply_config" in by_region["ap-south"].traceback
    assert all(job.state is asyncq.JobState.SUCCEEDED for job in redriven)
    assert len(redriven) == 2
    assert len(pool.dead_letters) == 0
    assert stats.dead_letters == 0
    assert stats.submitted == len(REGIONS) + len(redriven)
    assert stats.succeeded == len(REGIONS) - 3 + len(redriven)
    assert stats.dead == 3
    assert stats.submitted == (stats.succeeded + stats.dead + stats.cancelled + stats.waiting
                               + stats.delayed + stats.running)


if __name__ == "__main__":
    # The narrative tells the story; the pool's job.dead warnings would repeat it.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory() as tmp:
        asyncq.run(main(Path(tmp) / "dead-letters.jsonl"))
