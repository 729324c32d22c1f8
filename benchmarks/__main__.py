"""Command line of the benchmark runner: ``python -m benchmarks [--quick] [options]``.

Exit status: 0 when every measurement succeeded (skipped peers are fine), 1 when at least one
measurement was an ERROR (exception, lost or wrong result, timeout), 2 for usage problems
such as ``--plot`` without matplotlib or a ``--compare-ref`` that names no commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from .catalog import LOOPS, SYSTEMS, base_name
from .compare import RefCheckout, RefError, current_checkout, ref_worktree
from .fairness import render_fairness
from .report import matplotlib_available, render_table, summarise, write_json, write_plot
from .runner import REPO_ROOT, Config, calibrate, run_plan
from .workloads import FAIRNESS_WORKLOADS, MAX_DELAY_S, WORKLOADS

DEFAULT_WORKLOADS = ("noop", "sleep0", "io", "retry", "delayed", "keyed")
QUICK_WORKLOADS = ("noop", "keyed", "retry", "delayed", "heartbeat")
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
    ap.add_argument(
        "--jobs", type=int, help="jobs per run for every workload (fairness-*: group A jobs)"
    )
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
    ap.add_argument(
        "--fairness",
        action="store_true",
        help="add the fair-share case (workloads fairness-off and fairness-on, asyncq only)",
    )
    ap.add_argument(
        "--compare-ref",
        metavar="REF",
        action="append",
        help="also measure asyncq as of this git ref (system asyncq@<hash>, from a temporary "
        "worktree); may be given more than once",
    )
    ap.add_argument(
        "--min-seconds",
        type=float,
        help="before round 1, raise each noop, sleep0, io and retry configuration's N so that "
        "a run of bare lasts at least this long (default 1; 0 keeps the defaults; off with "
        "--quick or --jobs)",
    )
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
    if args.fairness:
        args.workloads.extend(w for w in FAIRNESS_WORKLOADS if w not in args.workloads)
    if "keyed" in args.workloads and "noop" not in args.workloads:
        print("note: keyed is compared with noop in the same round; adding noop", file=sys.stderr)
        args.workloads.insert(args.workloads.index("keyed"), "noop")
    if args.rounds < 1 or (args.jobs is not None and args.jobs < 1):
        ap.error("--rounds and --jobs must be positive")
    if args.min_seconds is None:
        args.min_seconds = 0.0 if quick or args.jobs is not None else 1.0
    elif not (math.isfinite(args.min_seconds) and args.min_seconds >= 0):
        ap.error(f"--min-seconds must be a finite number >= 0, got {args.min_seconds}")
    return args


def chosen_systems(args: argparse.Namespace, refs: Iterable[str] = ()) -> list[str]:
    """The selected systems in the fixed run order; ``asyncq@REF`` comes right after asyncq."""
    chosen = [s for s in SYSTEMS if s in args.systems or s == "bare"]
    at = chosen.index("asyncq") + 1 if "asyncq" in chosen else 0
    return chosen[:at] + list(refs) + chosen[at:]


def pair_keyed(configs: list[Config]) -> list[Config]:
    """Move every ``keyed`` configuration right after the ``noop`` one it is compared with."""
    keyed = [c for c in configs if c.workload == "keyed"]
    out: list[Config] = []
    for config in configs:
        if config.workload == "keyed":
            continue
        out.append(config)
        if config.workload == "noop":
            shape = (config.loop, config.workers, config.maxsize, config.jobs)
            match = [k for k in keyed if (k.loop, k.workers, k.maxsize, k.jobs) == shape]
            out.extend(match)
            keyed = [k for k in keyed if k not in match]
    return out + keyed


def build_configs(args: argparse.Namespace, refs: Iterable[str] = ()) -> list[Config]:
    """Expand the selected workloads x workers x loops into configurations.

    ``bare`` always runs because every ratio is taken against it, except in workloads it
    cannot run (``keyed``, ``fairness-*``).  ``refs`` are the ``asyncq@REF`` systems.
    """
    configs: list[Config] = []
    chosen = chosen_systems(args, refs)
    for name in args.workloads:
        wl = WORKLOADS[name]
        jobs = args.jobs or (wl.quick_jobs if args.quick else wl.default_jobs)
        systems = tuple(s for s in chosen if wl.systems is None or base_name(s) in wl.systems)
        unsupported = tuple(s for s in chosen if s not in systems) if wl.skip_note else ()
        maxsize = None if name in FAIRNESS_WORKLOADS else args.maxsize  # the flood is queued
        for workers in wl.workers or tuple(args.workers):
            for loop in args.loops:
                configs.append(
                    Config(loop, name, workers, maxsize, jobs, systems, "run", args.delay_max,
                           unsupported, wl.skip_note or "")
                )
    configs = pair_keyed(configs)
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
        "asyncq_checkout": current_checkout(REPO_ROOT),
        "rounds": args.rounds,
        "min_seconds": args.min_seconds,
    }


@contextmanager
def checkouts(refs: list[str] | None) -> Iterator[list[RefCheckout]]:
    """One worktree per ``--compare-ref`` (none without the flag), removed when the run ends."""
    out: list[RefCheckout] = []
    with ExitStack() as stack:
        for ref in refs or []:
            checkout = stack.enter_context(ref_worktree(REPO_ROOT, ref))
            if all(c.system != checkout.system for c in out):
                print(f"note: {checkout.system} imports asyncq from {checkout.src}",
                      file=sys.stderr)
                out.append(checkout)
        yield out


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
    if args.compare_ref:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the worktrees are removed
    try:
        with checkouts(args.compare_ref) as refs:
            return run(args, refs)
    except RefError as exc:
        print(f"--compare-ref: {exc}; nothing was run.", file=sys.stderr)
        return 2


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, refs: list[RefCheckout]) -> int:
    """Run the plan, print the tables and write the outputs; returns the exit status."""
    configs = build_configs(args, [r.system for r in refs])
    for name in args.workloads:
        only = WORKLOADS[name].systems
        if only is not None:
            print(f"note: workload {name!r} runs only {', '.join(sorted(only))}", file=sys.stderr)
    runs = sum(len(c.systems) for c in configs) * args.rounds
    print(f"{len(configs)} configurations, {runs} runs planned", file=sys.stderr)
    if args.min_seconds > 0:
        configs = calibrate(configs, args.min_seconds, args.timeout,
                            lambda s: print(s, file=sys.stderr))
    meta = machine_meta(args)  # before the run: the checkout being measured
    meta["compare_ref"] = {r.system: r.commit for r in refs}
    records = run_plan(
        configs,
        args.rounds,
        args.timeout,
        lambda s: print(s, file=sys.stderr),
        {r.system: r.src for r in refs},
    )
    fair = [r for r in records if r["workload"] in FAIRNESS_WORKLOADS]
    summary = summarise([r for r in records if r["workload"] not in FAIRNESS_WORKLOADS])
    print(f"python {meta['python']} on {meta['platform']}, {meta['cpus']} CPUs")
    print(", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v))
    if refs:
        print(f"asyncq: this checkout ({meta['asyncq_checkout']})")
    for ref in refs:
        print(f"{ref.system}: asyncq as of commit {ref.commit}")
    print()
    if summary:
        print(render_table(summary))
    if fair:
        print(render_fairness(fair))
    if args.json is not None:
        write_json(args.json, records, meta)
        print(f"wrote {len(records)} records to {args.json}", file=sys.stderr)
    if args.plot is not None:
        write_plot(args.plot, summary)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 1 if any(r.get("error") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
