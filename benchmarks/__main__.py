"""Command line of the benchmark runner: ``python -m benchmarks [--quick] [options]``.

Exit status: 0 when every measurement succeeded (skipped peers are fine), 1 when at least one
measurement was an ERROR (exception, lost or wrong result, timeout), 2 for usage problems
such as ``--plot`` without matplotlib.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from .catalog import LOOPS, SYSTEMS
from .report import matplotlib_available, render_table, summarise, write_json, write_plot
from .runner import Config, run_plan
from .workloads import MAX_DELAY_S, WORKLOADS

DEFAULT_WORKLOADS = ("noop", "sleep0", "io", "retry", "delayed")
QUICK_WORKLOADS = ("noop", "retry", "delayed", "heartbeat")
MEMORY_WAIT_JOBS, MEMORY_LONG_JOBS = 100_000, 1_000_000
QUICK_MEMORY_WAIT_JOBS, QUICK_MEMORY_LONG_JOBS = 5_000, 20_000
MEMORY_SYSTEMS = ("asyncq", "bare")
VERSIONED = ("asyncq", "uvloop", "anyio", "structlog", "aiojobs", "asyncio-pool", "taskiq")

T = TypeVar("T")


def _csv(
    kind: Callable[[str], T], choices: Iterable[str] | None = None
) -> Callable[[str], list[T]]:
    allowed = set(choices) if choices is not None else None

    def parse(text: str) -> list[T]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if allowed is not None:
            bad = [s for s in items if s not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {bad}; choose from {', '.join(sorted(allowed))}"
                )
        return [kind(s) for s in items]

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (``--quick`` only changes defaults; explicit flags win)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small smoke run (CI): 1 round")
    ap.add_argument("--rounds", type=int, help="rounds per configuration (default 5)")
    ap.add_argument("--jobs", type=int, help="jobs per run for every workload")
    ap.add_argument("--systems", type=_csv(str, SYSTEMS), help="comma list (default: all)")
    ap.add_argument(
        "--workloads",
        type=_csv(str, WORKLOADS),
        help=f"comma list of {','.join(WORKLOADS)} (default: {','.join(DEFAULT_WORKLOADS)})",
    )
    ap.add_argument("--loops", type=_csv(str, LOOPS), help="comma list (default: asyncio,uvloop)")
    ap.add_argument("--workers", type=_csv(int), help="comma list (default: 8,64)")
    ap.add_argument("--maxsize", type=int, default=1000, help="queue bound (default 1000)")
    ap.add_argument(
        "--delay-max",
        type=float,
        default=MAX_DELAY_S,
        help="delayed workload: delays are uniform in [0, this] seconds (default 0.1)",
    )
    ap.add_argument("--heartbeat", action="store_true", help="add the heartbeat case")
    ap.add_argument("--memory", action="store_true", help="add the memory cases")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per child run")
    ap.add_argument("--json", type=Path, help="write one JSON record per measurement here")
    ap.add_argument("--plot", type=Path, help="write a PNG bar chart here (needs matplotlib)")
    args = ap.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 5)
    args.systems = args.systems or list(SYSTEMS)
    args.workloads = args.workloads or list(QUICK_WORKLOADS if quick else DEFAULT_WORKLOADS)
    args.loops = args.loops or list(LOOPS)
    args.workers = args.workers or ([8] if quick else [8, 64])
    if args.heartbeat and "heartbeat" not in args.workloads:
        args.workloads.append("heartbeat")
    if args.rounds < 1 or (args.jobs is not None and args.jobs < 1):
        ap.error("--rounds and --jobs must be positive")
    return args


def build_configs(args: argparse.Namespace) -> list[Config]:
    """Expand the selected workloads x workers x loops into configurations.

    ``bare`` always runs because every ratio is taken against it.
    """
    configs: list[Config] = []
    for name in args.workloads:
        wl = WORKLOADS[name]
        jobs = args.jobs or (wl.quick_jobs if args.quick else wl.default_jobs)
        chosen = [s for s in SYSTEMS if s in args.systems or s == "bare"]
        systems = tuple(s for s in chosen if wl.systems is None or s in wl.systems)
        for workers in wl.workers or tuple(args.workers):
            for loop in args.loops:
                configs.append(
                    Config(loop, name, workers, args.maxsize, jobs, systems, "run", args.delay_max)
                )
    if args.memory:
        wait_n = QUICK_MEMORY_WAIT_JOBS if args.quick else MEMORY_WAIT_JOBS
        long_n = QUICK_MEMORY_LONG_JOBS if args.quick else MEMORY_LONG_JOBS
        mem_systems = tuple(s for s in MEMORY_SYSTEMS if s in args.systems or s == "bare")
        for loop in args.loops:
            configs.append(
                Config(loop, "memory-waiting", 1, None, wait_n, mem_systems, "waiting-mem")
            )
            configs.append(
                Config(loop, "memory-bounded", 8, 1000, long_n, mem_systems, "bounded-rss")
            )
    return configs


def machine_meta(args: argparse.Namespace) -> dict[str, Any]:
    """Machine and library versions recorded next to the results."""
    versions: dict[str, str | None] = {}
    for dist in VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
        "argv": sys.argv[1:],
        "rounds": args.rounds,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table; see the module docstring for exit codes."""
    args = parse_args(argv)
    if args.plot is not None and not matplotlib_available():
        print(
            "--plot needs matplotlib, which is not installed (pip install matplotlib); "
            "nothing was run.",
            file=sys.stderr,
        )
        return 2
    configs = build_configs(args)
    for name in args.workloads:
        only = WORKLOADS[name].systems
        if only is not None:
            print(f"note: workload {name!r} runs only {', '.join(sorted(only))}", file=sys.stderr)
    runs = sum(len(c.systems) for c in configs) * args.rounds
    print(f"{len(configs)} configurations, {runs} runs planned", file=sys.stderr)
    records = run_plan(configs, args.rounds, args.timeout, lambda s: print(s, file=sys.stderr))
    summary = summarise(records)
    meta = machine_meta(args)
    print(f"python {meta['python']} on {meta['platform']}, {meta['cpus']} CPUs")
    print(", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v))
    print()
    print(render_table(summary))
    if args.json is not None:
        write_json(args.json, records, meta)
        print(f"wrote {len(records)} records to {args.json}", file=sys.stderr)
    if args.plot is not None:
        write_plot(args.plot, summary)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 1 if any(r.get("error") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
