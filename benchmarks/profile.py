"""Where a job's time goes: ``python -m benchmarks.profile MODE`` (see below).

* ``phases``: asyncq and bare, noop jobs, ``maxsize=None``, W workers: submit every job,
  then let the workers run them all, then await every handle, each phase timed on its own
  with the garbage collector off; the minimum over ``--repeat`` runs, in µs per job.
* ``gc``: one run of the runner's ``--workload`` for each of ``--systems``, as ``where``
  runs it (``maxsize=1000``; asyncq and bare keep every handle until the end): the time
  spent in the collector, measured with ``gc.callbacks``, per job and as a share of the
  run, and how many passes over each generation it made; the run with the median time
  in the collector over ``--repeat`` runs.
* ``instructions``: instructions per job under valgrind's callgrind, for asyncq and bare
  (and asyncq on its pure-Python storage): the count of a run of ``3 x --jobs`` jobs minus
  that of a run of ``--jobs`` jobs, divided by ``2 x --jobs``, so that start-up and imports
  cancel out. Deterministic, unlike wall-clock time on a shared machine. Needs valgrind.
  ``--workload`` is ``noop``, ``sleep0`` or ``retry`` (each job fails once: asyncq retries
  it through the pool, bare inside the job, as in the runner's workload of that name).
* ``where``: one run of the runner's ``--workload`` (``noop``, ``sleep0``, ``io``,
  ``retry``; ``maxsize=1000``) for each of ``--systems`` (any of the runner's systems)
  under cProfile, and the share of the run's own time by where the code lives: asyncq,
  asyncio (loop, futures, timers, ``heapq``), waiting in ``select`` for the next timer,
  uvloop's C loop (waiting included), the peer library, the job functions and the harness
  (which, for ``bare``, ``bare-nofuture``, ``slices`` and ``semaphore``, is the system
  itself). The profiler slows every Python call down, so read the shares, not the µs;
  they say what a pool could still save.

* ``logging``: asyncq, noop jobs, ``maxsize=1000``: jobs/s with structlog not
  configured (asyncq's debug events stay off), configured at INFO (they are off), and
  configured at DEBUG with every event rendered to ``os.devnull`` (a tenth of the jobs);
  the three alternate, and each figure is the median over ``--repeat`` runs.

asyncq is imported from this checkout's ``src/``.  Output is one line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .catalog import SystemFn
    from .systems import Outcome
    from .workloads import JobSet

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
SYSTEMS = ("asyncq", "bare")
WORKLOADS = ("noop", "sleep0", "retry")
WHERE_WORKLOADS = ("noop", "sleep0", "io", "retry")

Job = Callable[[int], Awaitable[int]]
T = TypeVar("T")


async def noop(i: int) -> int:
    return i


async def sleep0(i: int) -> int:
    await asyncio.sleep(0)
    return i


JOBS: dict[str, Job] = {"noop": noop, "sleep0": sleep0}


def job_for(workload: str, system: str, n: int) -> tuple[Job, int]:
    """The job function of ``workload`` for ``system``, and asyncq's attempts per job.

    ``retry`` is the runner's workload: every job raises once, then succeeds. asyncq
    retries it with its own ``Retry(attempts=2, delay=0)``; bare retries inside the job.
    """
    if workload == "retry":
        from .workloads import make_jobset

        jobs = make_jobset("retry", n)
        return (jobs.native, jobs.retry_attempts) if system == "asyncq" else (jobs.emulated, 1)
    return JOBS[workload], 1


# -- the two systems, with hooks between the phases ---------------------------------------
async def asyncq_phases(fn: Job, n: int, workers: int, maxsize: int | None,
                        attempts: int = 1) -> list[float]:
    """asyncq: [submit, run, await] seconds (``maxsize=None`` keeps them apart); with
    ``attempts`` > 1, failed attempts are retried at once, up to that many in all."""
    import asyncq

    handles: list[Any] = [None] * n
    retry = asyncq.Retry(attempts=attempts, delay=0.0, jitter=False) if attempts > 1 else None
    async with asyncq.Pool(workers=workers, maxsize=maxsize, retry=retry) as pool:
        submit = pool.submit
        t0 = perf_counter()
        for i in range(n):
            handles[i] = await submit(fn, i)
        t1 = perf_counter()
        await handles[-1]  # FIFO: the last job ends last
        t2 = perf_counter()
        results = [await handle for handle in handles]
        t3 = perf_counter()
    check(results, n)
    return [t1 - t0, t2 - t1, t3 - t2]


async def bare_phases(fn: Job, n: int, workers: int, maxsize: int | None,
                      attempts: int = 1) -> list[float]:
    """``asyncio.Queue`` + workers + a future per job: [submit, run, await] seconds.

    ``attempts`` is there for the shared call only: bare retries inside the job function."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue(maxsize or 0)

    async def worker() -> None:
        while True:
            i, fut = await queue.get()
            fut.set_result(await fn(i))

    tasks = [loop.create_task(worker()) for _ in range(workers)]
    await asyncio.sleep(0)
    futures: list[asyncio.Future[int]] = []
    t0 = perf_counter()
    for i in range(n):
        fut = loop.create_future()
        futures.append(fut)
        await queue.put((i, fut))
    t1 = perf_counter()
    await futures[-1]
    t2 = perf_counter()
    results = [await fut for fut in futures]
    t3 = perf_counter()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    check(results, n)
    return [t1 - t0, t2 - t1, t3 - t2]


PHASES: dict[str, Callable[..., Coroutine[Any, Any, list[float]]]] = {
    "asyncq": asyncq_phases, "bare": bare_phases,
}


def check(results: list[int], n: int) -> None:
    if results != list(range(n)):
        raise SystemExit("wrong or missing results: the measurement is void")


def run(loop: str, coro: Coroutine[Any, Any, T]) -> T:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# -- the three modes -------------------------------------------------------------------
def phases(args: argparse.Namespace) -> None:
    for loop in args.loops:
        for system in args.systems:
            best = [float("inf")] * 3
            for _ in range(args.repeat):
                gc.collect()
                gc.disable()
                try:
                    times = run(loop, PHASES[system](noop, args.jobs, args.workers, None))
                finally:
                    gc.enable()
                best = [min(b, t) for b, t in zip(best, times, strict=True)]
            submit, work, wait = (t / args.jobs * 1e6 for t in best)
            print(f"phases {system:7} {loop:8} W={args.workers}: submit {submit:.2f} µs, "
                  f"worker {work:.2f} µs, await {wait:.3f} µs per job")


def collector(args: argparse.Namespace) -> None:
    from .catalog import lookup
    from .workloads import make_jobset

    spent = [0.0, 0.0, 0.0]  # seconds in passes over generation 0, 1 and 2
    started = [0.0]

    def timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = perf_counter()
        else:
            spent[info["generation"]] += perf_counter() - started[0]

    for loop in args.loops:
        for system in args.systems:
            runner = lookup(system).run
            runs = []
            for _ in range(args.repeat):
                jobs = make_jobset(args.workload, args.jobs)
                gc.collect()
                spent[:] = [0.0, 0.0, 0.0]
                before = [generation["collections"] for generation in gc.get_stats()]
                gc.callbacks.append(timer)
                try:
                    outcome = run(loop, measured(runner, jobs, args.workers))
                finally:
                    gc.callbacks.remove(timer)
                require_results(system, jobs, outcome)
                passes = [generation["collections"] - b
                          for generation, b in zip(gc.get_stats(), before, strict=True)]
                runs.append((sum(spent), outcome.seconds, passes, list(spent)))
            total, seconds, passes, by_generation = sorted(runs)[len(runs) // 2]  # the median
            print(f"gc     {system:13} {loop:8} {args.workload:6} W={args.workers}: "
                  f"{total / args.jobs * 1e6:.2f} µs per job in the collector, "
                  f"{100 * total / seconds:.0f}% of the run; passes over generations "
                  f"0/1/2: {passes[0]}/{passes[1]}/{passes[2]}, taking "
                  f"{'/'.join(f'{1000 * t:.0f}' for t in by_generation)} ms "
                  f"(median of {args.repeat}; {args.jobs:,} jobs)")


def instructions(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("instructions needs valgrind (e.g. apt install valgrind)")
    variants = [(system, False) for system in args.systems]
    if "asyncq" in args.systems:
        variants.append(("asyncq", True))
    for loop in args.loops:
        for system, pure in variants:
            counts = [callgrind(system, loop, args.workload, n, args.workers, pure)
                      for n in (args.jobs, 3 * args.jobs)]
            per_job = (counts[1] - counts[0]) / (2 * args.jobs)
            label = system + (" (pure Python)" if pure else "")
            print(f"instr  {label:21} {loop:8} {args.workload:6} W={args.workers}: "
                  f"{per_job:,.0f} instructions per job")


def callgrind(system: str, loop: str, workload: str, n: int, workers: int, pure: bool) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(ROOT)]))
    env.pop("ASYNCQ_PURE_PYTHON", None)
    if pure:
        env["ASYNCQ_PURE_PYTHON"] = "1"
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "benchmarks.profile", "one", "--system", system,
         "--loop", loop, "--workload", workload, "--jobs", str(n), "--workers", str(workers)],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False,
    )
    found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise SystemExit(f"callgrind run failed: {tail}")
    return int(found.group(1))


def where(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    from .catalog import lookup
    from .workloads import make_jobset

    for loop in args.loops:
        for system in args.systems:
            runner = lookup(system).run
            warm_up = make_jobset(args.workload, 1_000)  # imports, first-call costs
            run(loop, measured(runner, warm_up, args.workers))
            jobs = make_jobset(args.workload, args.jobs)
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                outcome = run(loop, measured(runner, jobs, args.workers))
            finally:
                profiler.disable()
            require_results(system, jobs, outcome)
            shares: dict[str, float] = {}
            stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
            for (path, _, name), row in stats.items():
                place = place_of(path, name, loop)
                shares[place] = shares.get(place, 0.0) + row[2]  # own time
            total = sum(shares.values())
            parts = ", ".join(f"{place} {100 * t / total:.0f}%"
                              for place, t in sorted(shares.items(), key=lambda kv: -kv[1])
                              if t / total >= 0.005)
            print(f"where  {system:13} {loop:8} {args.workload:6} W={args.workers}: {parts} "
                  f"({total / args.jobs * 1e6:.1f} µs per job under the profiler)")


async def measured(runner: SystemFn, jobs: JobSet, workers: int) -> Outcome:
    """One run of a runner's system, as a coroutine (what ``asyncio.run`` takes)."""
    return await runner(jobs, workers, 1000)


def require_results(system: str, jobs: JobSet, outcome: Outcome) -> None:
    """Stop the profile: a run that lost a job or got a wrong result measured nothing."""
    if jobs.check(outcome.results) is not None:
        raise SystemExit(f"{system}: wrong or missing results: the measurement is void")


def place_of(path: str, name: str, loop: str) -> str:
    """Where a profiled function lives, as ``where`` reports it."""
    if loop == "uvloop" and path.endswith("runners.py"):
        # uvloop's loop is C code that cProfile does not see as a call of its own: its
        # time, waiting for the next timer included, lands in asyncio.Runner.run
        return "uvloop"
    if path == "~":  # a function written in C: named by its module or class
        if "_asyncio." in name or "_heapq." in name:
            return "asyncio"
        if "epoll" in name or "select" in name:
            return "waiting in select"  # idle: no job or timer due yet
        if "uvloop" in name:
            return "uvloop"
        return "other C code"
    posix = Path(path).as_posix()
    if "/asyncq/" in posix:
        return "asyncq"
    if posix.endswith("/benchmarks/workloads.py"):
        return "job functions"
    if "/benchmarks/" in posix:
        return "harness"  # for bare, bare-nofuture, slices, semaphore: the system
    if "/asyncio/" in posix and "site-packages" not in posix:
        return "asyncio"
    if "site-packages/" in posix:
        return posix.split("site-packages/", 1)[1].split("/", 1)[0]
    return "other Python code"


def log_cost(args: argparse.Namespace) -> None:
    import structlog

    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the whole measurement
    was_configured, config = structlog.is_configured(), structlog.get_config()

    def configure(setting: str) -> int:
        """Set structlog up for ``setting``; the number of jobs to run with it."""
        structlog.reset_defaults()
        if setting == "info":
            structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        elif setting == "debug":
            structlog.configure(
                processors=[structlog.processors.TimeStamper(), structlog.dev.ConsoleRenderer()],
                wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
                logger_factory=structlog.PrintLoggerFactory(sink))
        jobs: int = args.jobs
        return max(1, jobs // 10) if setting == "debug" else jobs

    settings = ("not configured", "info", "debug")
    rates: dict[str, list[float]] = {setting: [] for setting in settings}
    try:
        for loop in args.loops:
            for _ in range(args.repeat):
                for setting in settings:
                    n = configure(setting)
                    seconds = sum(run(loop, asyncq_phases(noop, n, args.workers, 1000)))
                    rates[setting].append(n / seconds)
            for setting in settings:
                print(f"log    asyncq  {loop:8} W={args.workers}: structlog {setting}: "
                      f"{statistics.median(rates[setting]):,.0f} jobs/s "
                      f"(median of {args.repeat})")
                rates[setting].clear()
    finally:
        structlog.reset_defaults()
        if was_configured:
            structlog.configure(**config)
        sink.close()


def one(args: argparse.Namespace) -> None:
    """One plain run (what ``instructions`` counts): maxsize=1000, handles kept."""
    fn, attempts = job_for(args.workload, args.system, args.jobs)
    run(args.loop, PHASES[args.system](fn, args.jobs, args.workers, 1000, attempts))


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("phases", "gc", "instructions", "where", "logging", "one"))
    ap.add_argument("--jobs", type=int, default=None,
                    help="jobs per run (phases/gc: 200,000; where: 100,000; "
                         "instructions: 20,000)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--loops", default="asyncio,uvloop")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--workload", choices=WHERE_WORKLOADS, default="noop",
                    help="io only with where and gc")
    ap.add_argument("--system", choices=SYSTEMS, default="asyncq")  # mode "one"
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")  # mode "one"
    args = ap.parse_args(argv)
    args.loops = [x for x in args.loops.split(",") if x]
    args.systems = [x for x in args.systems.split(",") if x]
    if args.mode in ("where", "gc"):
        from .catalog import SYSTEMS as RUNNER_SYSTEMS

        systems: tuple[str, ...] = tuple(RUNNER_SYSTEMS)
    else:
        systems = SYSTEMS
        if args.workload not in WORKLOADS:
            ap.error(f"--workload {args.workload} works with where and gc only")
    for name, allowed in (("--loops", ("asyncio", "uvloop")), ("--systems", systems)):
        bad = [x for x in getattr(args, name[2:]) if x not in allowed]
        if bad or not getattr(args, name[2:]):
            ap.error(f"{name} takes a comma-separated subset of {', '.join(allowed)}")
    if args.jobs is None:
        args.jobs = {"instructions": 20_000, "one": 20_000, "where": 100_000}.get(args.mode,
                                                                                 200_000)
    if args.jobs < 1 or args.workers < 1 or args.repeat < 1:
        ap.error("--jobs, --workers and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(SRC))
    args = parse(argv)
    modes = {"phases": phases, "gc": collector, "instructions": instructions, "where": where,
             "logging": log_cost, "one": one}
    modes[args.mode](args)


if __name__ == "__main__":
    import structlog  # the pool's start/stop events would interleave with the figures

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    main()
