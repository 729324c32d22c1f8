"""``asyncq.run``: runs a program on uvloop and turns SIGINT/SIGTERM into a graceful close.

The signal tests run a small program in a subprocess that sends the signal to itself once
its jobs are running, then check its exit status and the pool's final stats, which the
program prints from a ``finally`` block.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import asyncq


async def answer() -> int:
    await asyncio.sleep(0)
    return 42


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


async def fails() -> None:
    raise LookupError("from main")


def test_run_returns_the_coroutines_result() -> None:
    """``asyncq.run(coro)`` returns what the coroutine returned."""
    assert asyncq.run(answer()) == 42


def test_run_uses_uvloop() -> None:
    """The program runs on uvloop's event loop when uvloop is installed."""
    assert asyncq.run(loop_module()).startswith("uvloop")


def test_run_propagates_mains_exception_and_restores_signal_handlers() -> None:
    """An exception from ``main`` reaches the caller unchanged, and the signal handlers in
    place before the call are back afterwards."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(LookupError, match="from main"):
        asyncq.run(fails())
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


PROGRAM = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, time

    import structlog
    import asyncq

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    SIGNALS = [getattr(signal, name) for name in sys.argv[1].split(",")]
    GRACE, QUICK, SLOW, SLOW_SECONDS = (float(sys.argv[2]), int(sys.argv[3]),
                                        int(sys.argv[4]), float(sys.argv[5]))
    pools = []
    signalled_at = []

    async def job(seconds, started=None):
        if started is not None:
            started.set()
        await asyncio.sleep(seconds)
        return seconds

    async def main():
        started = asyncio.Event()
        pool = asyncq.Pool(workers=4, maxsize=100)
        pools.append(pool)
        async with pool:
            quick = [await pool.submit(job, 0.001) for _ in range(QUICK)]
            await asyncio.gather(*quick)
            slow = [await pool.submit(job, SLOW_SECONDS, started) for _ in range(SLOW)]
            await started.wait()
            signalled_at.append(time.monotonic())
            for signum in SIGNALS:
                os.kill(os.getpid(), signum)
                await asyncio.sleep(0.01)
            await asyncio.gather(*slow, return_exceptions=True)
            await asyncio.Event().wait()  # a service: runs until the signal stops it

    try:
        asyncq.run(main(), grace=GRACE)
    finally:
        s = pools[0].stats()
        print("STATS " + json.dumps({
            "submitted": s.submitted, "succeeded": s.succeeded, "dead": s.dead,
            "cancelled": s.cancelled, "waiting": s.waiting, "delayed": s.delayed,
            "running": s.running, "state": pools[0].state.name,
            "after_signal": time.monotonic() - signalled_at[0],
        }), flush=True)
    """
)


def run_program(
    tmp_path: Path, signals: str, *, grace: float, quick: int, slow: int, slow_seconds: float
) -> tuple[int, dict[str, Any], str]:
    """Run :data:`PROGRAM`; return its exit status, its final stats and its stderr."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), signals, str(grace), str(quick), str(slow),
         str(slow_seconds)],
        capture_output=True, text=True, timeout=20, cwd=tmp_path, check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("STATS ")]
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0].removeprefix("STATS ")), done.stderr


def assert_all_resolved(stats: dict[str, Any]) -> None:
    """Every job ended: conservation holds with nothing left waiting, delayed or running."""
    assert stats["submitted"] == stats["succeeded"] + stats["dead"] + stats["cancelled"], stats
    assert stats["waiting"] == stats["delayed"] == stats["running"] == 0, stats
    assert stats["state"] == "CLOSED", stats


def test_sigterm_drains_the_pool_and_exits_143(tmp_path: Path) -> None:
    """SIGTERM closes the pool gracefully: admitted jobs finish within the grace period,
    every job is resolved, and the process exits with 128 + 15."""
    status, stats, stderr = run_program(
        tmp_path, "SIGTERM", grace=10, quick=0, slow=20, slow_seconds=0.05)
    assert status == 143, stderr
    assert_all_resolved(stats)
    assert stats["submitted"] == stats["succeeded"] == 20
    assert stats["after_signal"] < 5
    assert "Traceback" not in stderr


def test_sigint_drains_the_pool_and_exits_130(tmp_path: Path) -> None:
    """SIGINT is handled like SIGTERM (no ``KeyboardInterrupt`` traceback): the pool drains
    and the process exits with 128 + 2."""
    status, stats, stderr = run_program(
        tmp_path, "SIGINT", grace=10, quick=0, slow=20, slow_seconds=0.05)
    assert status == 130, stderr
    assert_all_resolved(stats)
    assert stats["submitted"] == stats["succeeded"] == 20
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


def test_short_grace_cancels_the_long_jobs_left(tmp_path: Path) -> None:
    """When the grace period passes, the long jobs still running or waiting end CANCELLED;
    the jobs that had finished stay succeeded and the process exits promptly with 143."""
    status, stats, stderr = run_program(
        tmp_path, "SIGTERM", grace=0.2, quick=3, slow=8, slow_seconds=30)
    assert status == 143, stderr
    assert_all_resolved(stats)
    assert stats["succeeded"] == 3
    assert stats["cancelled"] == 8
    assert stats["after_signal"] < 3
    assert "Traceback" not in stderr


def test_second_signal_cancels_at_once(tmp_path: Path) -> None:
    """A second signal does not wait out the grace period: everything is cancelled at once
    (per ``asyncq.run``'s docstring), and the exit status is that of the first signal."""
    status, stats, stderr = run_program(
        tmp_path, "SIGTERM,SIGINT", grace=4, quick=0, slow=8, slow_seconds=30)
    assert status == 143, stderr
    assert_all_resolved(stats)
    assert stats["cancelled"] == 8
    assert stats["after_signal"] < 2, stats


def test_shutdown_errors_gathered_by_a_task_group_still_exit_cleanly(tmp_path: Path) -> None:
    """After a signal, PoolClosed raised inside an asyncio.TaskGroup (so wrapped in an
    ExceptionGroup) is the shutdown asyncq.run asked for: exit 130, no traceback."""
    script = tmp_path / "group.py"
    script.write_text(textwrap.dedent("""
        import asyncio, os, signal
        import asyncq

        async def work():
            await asyncio.sleep(0.05)

        async def main():
            async with asyncq.Pool(workers=1, maxsize=1) as pool:
                asyncio.get_running_loop().call_later(0.01, os.kill, os.getpid(), signal.SIGINT)
                async with asyncio.TaskGroup() as group:
                    group.create_task(asyncio.sleep(0))
                    for _ in range(10):
                        await pool.submit(work)

        asyncq.run(main(), grace=0.5)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
