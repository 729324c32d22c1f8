"""One measurement in a fresh process: ``python -m benchmarks.child --system ... --loop ...``.

Prints exactly one JSON line on stdout.  Exit status: 0 measured, 1 error (exception, wrong
or missing results), 3 skipped (the system or loop module does not import), 4 skipped for
this workload only (the system lacks a feature it needs, e.g. asyncq at an old ref).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import statistics
import sys
import traceback
from collections.abc import Coroutine
from pathlib import Path
from time import perf_counter
from typing import Any

from . import fairness, memory
from .catalog import LOOPS, SYSTEMS, base_name, lookup
from .workloads import FAIRNESS_WORKLOADS, MAX_DELAY_S, WORKLOADS, Unsupported, make_jobset

EXIT_OK, EXIT_ERROR, EXIT_SKIPPED, EXIT_UNSUPPORTED = 0, 1, 3, 4
WARMUP_JOBS = 1_000
HEARTBEAT_PERIOD_S = 0.001
MODES = ("run", "waiting-mem", "bounded-rss")


class Heartbeat:
    """A task that sleeps 1 ms in a loop and records how late each wake-up is.

    Only wake-ups up to the moment the last job ran count: after that the loop runs the
    caller's own code (awaiting every finished handle in one go), not the pool.
    """

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.woken: list[float] = []
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start beating on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while not self._stop:
            t0 = perf_counter()
            await asyncio.sleep(HEARTBEAT_PERIOD_S)
            now = perf_counter()
            self.woken.append(now)
            self.lateness.append(now - t0 - HEARTBEAT_PERIOD_S)

    async def stop(self, until: float | None = None) -> dict[str, Any]:
        """Stop and return ``heartbeat_max_ms``, ``heartbeat_p99_ms`` and the sample count
        (of the wake-ups up to ``until``, when given)."""
        self._stop = True
        if self._task is not None:
            await self._task
        kept = [late for woke, late in zip(self.woken, self.lateness, strict=True)
                if until is None or woke <= until]
        self.lateness = kept
        samples = sorted(kept) or [0.0]
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        return {
            "heartbeat_max_ms": round(samples[-1] * 1e3, 3),
            "heartbeat_p99_ms": round(p99 * 1e3, 3),
            "heartbeat_p50_ms": round(statistics.median(samples) * 1e3, 3),
            "heartbeat_samples": len(self.lateness),
        }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement (after a short warm-up) and return its record fields."""
    if args.workload in FAIRNESS_WORKLOADS:
        return await fairness.measure(args.workload, args.jobs, args.workers, args.warmup)
    run = lookup(args.system).run
    if args.warmup and args.workload != "delayed":
        warm = make_jobset(args.workload, min(args.jobs, WARMUP_JOBS))
        problem = warm.check((await run(warm, args.workers, args.maxsize)).results)
        if problem:
            raise CheckFailed(f"warm-up: {problem}")
        del warm
        gc.collect()
    jobs = make_jobset(args.workload, args.jobs, args.delay_max)
    heartbeat = Heartbeat() if args.workload == "heartbeat" else None
    if heartbeat is not None:
        heartbeat.start()
    outcome = await run(jobs, args.workers, args.maxsize)
    window_end = jobs.started[0] if jobs.started and jobs.delays is None else None
    extras = await heartbeat.stop(window_end) if heartbeat is not None else {}
    problem = jobs.check(outcome.results)
    if problem:
        raise CheckFailed(problem)
    extras.update(jobs.extras())
    if jobs.delays is not None:
        extras["delay_max_s"] = args.delay_max
    return {"seconds": outcome.seconds, **extras}


class CheckFailed(Exception):
    """Results were missing or wrong: the measurement is an error, never a number."""


async def measure_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Run one of the memory cases (see :mod:`benchmarks.memory`)."""
    if args.mode == "waiting-mem":
        return await memory.waiting_memory(args.system, args.jobs)
    return await memory.long_run_rss(args.system, args.jobs, args.workers, args.maxsize)


def run_on_loop(loop: str, coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run ``coro`` with ``asyncio.run`` or ``uvloop.run``."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the child's command line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.child")
    ap.add_argument("--system", required=True, help="a registered system or asyncq@REF")
    ap.add_argument("--loop", required=True, choices=sorted(LOOPS))
    ap.add_argument("--workload", required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--maxsize", type=lambda s: None if s == "none" else int(s), default=1000)
    ap.add_argument("--jobs", type=int, required=True)
    ap.add_argument("--mode", choices=MODES, default="run")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false")
    ap.add_argument("--delay-max", type=float, default=MAX_DELAY_S)
    args = ap.parse_args(argv)
    if base_name(args.system) not in SYSTEMS:
        ap.error(f"unknown system {args.system!r}; choose from {', '.join(sorted(SYSTEMS))}")
    if args.mode == "run" and args.workload not in WORKLOADS:
        ap.error(f"unknown workload {args.workload!r}")
    return args


def emit(record: dict[str, Any]) -> None:
    """Print the record as one JSON line."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process."""
    args = parse_args(argv)
    record: dict[str, Any] = {
        "system": args.system,
        "loop": args.loop,
        "workload": args.workload,
        "workers": args.workers,
        "maxsize": args.maxsize,
        "jobs": args.jobs,
    }
    system = lookup(args.system)
    for module, hint in (
        (system.module, system.missing_hint),
        (LOOPS[args.loop], f"{args.loop} not installed"),
    ):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            record["skipped"] = f"{hint} ({exc})" if module == "asyncq" else hint
            emit(record)
            return EXIT_SKIPPED
    try:
        coro = measure(args) if args.mode == "run" else measure_memory(args)
        fields = run_on_loop(args.loop, coro)
    except Unsupported as exc:
        record["skipped"] = f"{args.system}: {exc}"
        emit(record)
        return EXIT_UNSUPPORTED
    except Exception as exc:
        message = str(exc).strip().splitlines()
        record["error"] = f"{type(exc).__name__}: {message[-1]}" if message else type(exc).__name__
        traceback.print_exc(file=sys.stderr)
        emit(record)
        return EXIT_ERROR
    seconds = fields.pop("seconds", None)
    record["jobs"] = jobs = fields.pop("jobs", args.jobs)  # fairness: A + B jobs
    record["seconds"] = seconds
    record["jobs_per_s"] = jobs / seconds if seconds else None
    record["peak_rss_mib"] = round(memory.peak_rss_bytes() / 2**20, 2)
    record.update(fields)
    if system.module == "asyncq":
        record["asyncq_src"] = asyncq_source()
        record["asyncq_speedups"] = asyncq_speedups()
    emit(record)
    return EXIT_OK


def asyncq_source() -> str:
    """The ``src`` directory asyncq was imported from (shows which checkout was measured)."""
    module = sys.modules.get("asyncq")
    where = getattr(module, "__file__", None)
    return str(Path(where).resolve().parent.parent) if where else "?"


def asyncq_speedups() -> bool | None:
    """Whether the measured asyncq kept its job handles in C (``asyncq._speedups``).

    ``None`` for an asyncq from before the C module existed.
    """
    job_module = sys.modules.get("asyncq._job")
    return getattr(job_module, "SPEEDUPS", None)


if __name__ == "__main__":
    sys.exit(main())
