"""``asyncq demo``: a release rolled out by a simulated deploy orchestrator on a pool.

Four components are built; each build is followed by its test suites; once every test has
passed, the release is deployed to ``--servers`` servers. Steps fail now and then
(``--fail-rate``) and are retried with exponential backoff on the pool's timer, while the
workers carry on with other jobs. One server refuses every connection, so its deploy runs
out of attempts and ends in the dead letters. Nothing real happens: each step sleeps for a
simulated duration scaled by ``--speed`` (0: no waiting at all). Which attempts fail depends
only on ``--seed``, never on timing, so a seed replays the same story.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog

import asyncq
from asyncq.cli._args import Parser, UsageError, integer, number
from asyncq.cli.progress import LiveDisplay, bar

RELEASE = "2.4.0"
COMPONENTS = ("api", "web", "worker", "billing")
SUITES = ("unit", "integration")
ROLES = ("web", "app", "edge", "cache")
#: Mean simulated duration of each kind of step, in seconds at ``--speed 1`` (+-50%).
DURATIONS = {"build": 0.3, "test": 0.2, "deploy": 0.15}
#: The transient failures a step may hit.
FLAKES: tuple[tuple[type[OSError], str], ...] = (
    (TimeoutError, "health check timed out"),
    (ConnectionError, "connection reset by peer"),
    (TimeoutError, "artifact download stalled"),
)
ATTEMPTS = 4

DESCRIPTION = """\
A simulated deploy orchestrator on an in-process pool. Components are built, then tested,
then the release is deployed to every server. Steps fail now and then and are retried with
exponential backoff on the pool's timer while the workers carry on; one server refuses every
connection, so its deploy ends in the dead letters. Nothing real happens: steps only sleep.
"""


@dataclass(frozen=True)
class Settings:
    """The demo's knobs, from the command line."""

    servers: int = 24
    workers: int = 8
    speed: float = 1.0
    seed: int = 1
    fail_rate: float = 0.2
    dead_letter_file: Path | None = None


@dataclass
class Rollout:
    """How the release went: ``total`` jobs submitted, the servers reached or not."""

    total: int
    deployed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    """What the summary shows, taken after the pool closed."""

    stats: asyncq.Stats
    letters: list[asyncq.DeadLetter]
    rollout: Rollout
    seconds: float


def server_names(count: int) -> list[str]:
    """``web-01``, ``app-01``, ``edge-01``, ``cache-01``, ``web-02``, ..."""
    return [f"{ROLES[i % len(ROLES)]}-{i // len(ROLES) + 1:02d}" for i in range(count)]


class Simulation:
    """The simulated world: how long each step takes, which attempts fail, the broken server."""

    def __init__(self, settings: Settings, display: LiveDisplay) -> None:
        self.settings = settings
        self.display = display
        self.servers = server_names(settings.servers)
        self.broken = random.Random(f"{settings.seed}/broken").choice(self.servers)
        self.tries: dict[str, int] = {}
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        """Print an event line stamped with the time since the start."""
        self.display.event(f"[{time.monotonic() - self.started:6.2f}s] {text}")

    async def build(self, component: str) -> str:
        """Build one component."""
        return await self._step("build", component)

    async def test(self, component: str, suite: str) -> str:
        """Run one test suite of a built component."""
        return await self._step("test", f"{component}/{suite}")

    async def deploy(self, server: str, *, version: str) -> str:
        """Deploy ``version`` to one server (the broken one always refuses)."""
        return await self._step("deploy", server, refuse=server == self.broken)

    def on_dead(self, letter: asyncq.DeadLetter) -> None:
        """The pool's ``on_dead`` hook: report the job that ran out of attempts."""
        self.say(f"DEAD   {describe_call(letter)} after {letter.attempts} attempts: "
                 f"{type(letter.error).__name__}: {letter.error}")

    async def _step(self, kind: str, target: str, *, refuse: bool = False) -> str:
        name = f"{kind} {target}"
        attempt = self.tries[name] = self.tries.get(name, 0) + 1
        draw = random.Random(f"{self.settings.seed}/{name}/{attempt}")
        await asyncio.sleep(DURATIONS[kind] * draw.uniform(0.5, 1.5) * self.settings.speed)
        error: OSError | None = None
        if refuse:
            error = ConnectionError(f"{target}: connection refused")
        elif draw.random() < self.settings.fail_rate:
            kind_of_error, message = draw.choice(FLAKES)
            error = kind_of_error(f"{target}: {message}")
        if error is not None:
            self.say(f"{name}: attempt {attempt}/{ATTEMPTS} failed: "
                     f"{type(error).__name__}: {error}")
            raise error
        return name


def describe_call(letter: asyncq.DeadLetter) -> str:
    """``deploy('edge-01', version='2.4.0')`` for a letter."""
    parts = [repr(a) for a in letter.args] + [f"{k}={v!r}" for k, v in letter.kwargs.items()]
    return f"{getattr(letter.fn, '__name__', repr(letter.fn))}({', '.join(parts)})"


async def _succeeded(job: asyncq.Job[str]) -> bool:
    """Await a job: True if it succeeded (its failure is reported by ``on_dead``)."""
    try:
        await job
    except (OSError, asyncq.JobCancelled):
        return False
    return True


async def _component(sim: Simulation, name: str, build: asyncq.Job[str],
                     tests: list[asyncq.Job[str]]) -> bool:
    """Report one component's build and tests as they end; True when all of it passed."""
    if not await _succeeded(build):
        return False
    sim.say(f"built  {name}; its tests start")
    passed = [await _succeeded(job) for job in tests]
    if all(passed):
        sim.say(f"passed {name}")
    return all(passed)


async def _verdict(sim: Simulation, checks: dict[str, asyncio.Task[bool]],
                   rollout: Rollout) -> None:
    """Announce whether the rollout goes ahead once every component has been checked."""
    rollout.blocked = [name for name, check in checks.items() if not await check]
    if rollout.blocked:
        sim.say(f"release stopped: {', '.join(rollout.blocked)} did not pass, so the deploys "
                "after them are cancelled before they start")
    else:
        sim.say(f"every test passed; rolling out to {len(sim.servers)} servers")


async def _submit_deploys(pool: asyncq.Pool, sim: Simulation,
                          tests: list[asyncq.Job[str]]) -> list[asyncq.Job[str]]:
    """Submit a deploy per server, to start after every test; stop if the pool closes."""
    deploys: list[asyncq.Job[str]] = []
    submitter = pool.options(after=tests)
    try:
        for server in sim.servers:
            deploys.append(await submitter.submit(sim.deploy, server, version=RELEASE))
    except asyncq.PoolClosed:  # Ctrl-C: asyncq.run is closing the pool
        sim.say(f"the pool is closing: {len(sim.servers) - len(deploys)} deploys not submitted")
    return deploys


async def release(pool: asyncq.Pool, sim: Simulation, rollout: Rollout) -> None:
    """The pipeline, all submitted up front: builds; tests after their build; deploys after
    every test. The pool starts a job once its dependencies (``after=``) have succeeded; if
    one dies, the jobs after it end cancelled (``DependencyFailed``) without running.
    """
    sim.say(f"release {RELEASE}: {len(COMPONENTS)} builds, {len(SUITES)} test suites each, "
            f"then {len(sim.servers)} servers ({pool.workers} workers)")
    builds = {name: await pool.submit(sim.build, name) for name in COMPONENTS}
    tests = {name: [await pool.options(after=build).submit(sim.test, name, suite)
                    for suite in SUITES] for name, build in builds.items()}
    every_test = [job for jobs in tests.values() for job in jobs]
    async with asyncio.TaskGroup() as group:
        checks = {name: group.create_task(_component(sim, name, builds[name], tests[name]))
                  for name in COMPONENTS}
        group.create_task(_verdict(sim, checks, rollout))
        deploys = await _submit_deploys(pool, sim, every_test)
        outcomes = [await _succeeded(job) for job in deploys]
    for server, ok in zip(sim.servers, outcomes, strict=False):
        if ok:
            rollout.deployed.append(server)
        elif not rollout.blocked:
            rollout.failed.append(server)


def status_line(stats: asyncq.Stats, total: int, seconds: float) -> str:
    """The live status: progress, the pool's gauges and its throughput."""
    finished = stats.succeeded + stats.dead + stats.cancelled
    on_deps = stats.waiting_on_dependencies
    parts = [
        f"{bar(finished, total, width=16)} {finished}/{total}",
        f"waiting {stats.waiting}" + (f" ({on_deps} on deps)" if on_deps else ""),
        f"running {stats.running}",
        f"retrying {stats.delayed}",
        f"done {stats.succeeded}",
        f"dead {stats.dead}",
        *([f"cancelled {stats.cancelled}"] if stats.cancelled else []),
        f"{finished / seconds if seconds > 0 else 0.0:.1f} jobs/s",
    ]
    return "  ".join(parts)


async def _refresh(
    display: LiveDisplay, status: Callable[[], str], done: asyncio.Event, interval: float
) -> None:
    """Redraw the status every ``interval`` seconds until ``done`` is set."""
    while not done.is_set():
        display.status(status())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await done.wait()


def quiet_logger() -> Any:
    """A structlog logger for the demo's pool: only errors, as plain text on stderr.

    The demo reports retries and dead letters itself, so the pool's warnings would only
    repeat them; a failing hook (an error) still shows.
    """
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[structlog.processors.add_log_level, structlog.processors.KeyValueRenderer(
            key_order=["level", "event"])],
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
    )


async def run_demo(settings: Settings, display: LiveDisplay) -> Report:
    """Run the whole release on a fresh pool; return what the summary needs."""
    sim = Simulation(settings, display)
    speed = settings.speed
    retry = asyncq.Retry(attempts=ATTEMPTS, delay=0.1 * speed, factor=2.0,
                         max_delay=1.0 * speed, retry_on=(ConnectionError, TimeoutError))
    pool = asyncq.Pool(workers=settings.workers, maxsize=2 * settings.workers, retry=retry,
                       on_dead=sim.on_dead, dead_letter_file=settings.dead_letter_file,
                       logger=quiet_logger(), seed=settings.seed)
    rollout = Rollout(total=len(COMPONENTS) * (1 + len(SUITES)) + settings.servers)
    done = asyncio.Event()

    def status() -> str:
        return status_line(pool.stats(), rollout.total, time.monotonic() - sim.started)

    async with pool:
        refresher = asyncio.create_task(
            _refresh(display, status, done, 0.1 if display.live else 0.5))
        try:
            await release(pool, sim, rollout)
        finally:
            done.set()
            await refresher
    display.status(status())
    return Report(pool.stats(), list(pool.dead_letters), rollout,
                  time.monotonic() - sim.started)


def print_summary(report: Report, settings: Settings, out: TextIO) -> None:
    """The closing summary and the dead letters."""
    s, rollout = report.stats, report.rollout
    finished = s.succeeded + s.dead + s.cancelled
    print(f"\nsummary: release {RELEASE} reached {len(rollout.deployed)} of "
          f"{settings.servers} servers in {report.seconds:.2f} s", file=out)
    print(f"  jobs        {s.submitted} submitted: {s.succeeded} succeeded, {s.dead} dead, "
          f"{s.cancelled} cancelled", file=out)
    print(f"  attempts    {s.failed} failed, {s.retried} retried with backoff", file=out)
    if rollout.blocked:
        print(f"  blocked by  {', '.join(rollout.blocked)} (a build or test died; the jobs "
              "after it were cancelled)", file=out)
    if rollout.failed:
        print(f"  not updated {', '.join(rollout.failed)}", file=out)
    for label, latency in (("queue wait", s.queue_wait), ("run time", s.run_time)):
        if latency.samples:
            print(f"  {label:<11} p50 {latency.p50 * 1e3:.1f} ms, p95 {latency.p95 * 1e3:.1f} ms"
                  f", p99 {latency.p99 * 1e3:.1f} ms ({latency.samples} sampled jobs)", file=out)
    rate = finished / report.seconds if report.seconds > 0 else 0.0
    print(f"  throughput  {rate:.1f} jobs/s", file=out)
    print(f"\ndead letters: {len(report.letters)}", file=out)
    for letter in report.letters:
        print(f"  job {letter.job_id:<4} {describe_call(letter)}  attempts {letter.attempts}  "
              f"{letter.reason}  {type(letter.error).__name__}: {letter.error}", file=out)
    if settings.dead_letter_file is not None:
        print(f"  (kept in {settings.dead_letter_file}: asyncq dead-letters "
              f"{settings.dead_letter_file})", file=out)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Run ``asyncq demo``."""
    settings = Settings(servers=args.servers, workers=args.workers, speed=args.speed,
                        seed=args.seed, fail_rate=args.fail_rate,
                        dead_letter_file=args.dead_letter_file)
    if settings.dead_letter_file is not None:
        _check_writable(settings.dead_letter_file)
    display = LiveDisplay(sys.stdout)
    try:
        report = asyncq.run(run_demo(settings, display), grace=2.0)
    except SystemExit as exc:  # asyncq.run's answer to SIGINT/SIGTERM, after a clean close
        display.close()
        print("asyncq demo: interrupted; the pool finished what it could and closed",
              file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        display.close()
    print_summary(report, settings, sys.stdout)
    return 0


def _check_writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"asyncq demo: error: cannot write dead letters to {path}: "
                         f"{exc.strerror or exc}") from None


def add_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add ``demo`` to the command line."""
    parser = commands.add_parser(
        "demo", help="a simulated deploy orchestrator: retries, backoff, a dead letter",
        description=DESCRIPTION)
    parser.add_argument("--servers", type=integer(1, 1000), default=24, metavar="N",
                        help="servers to deploy to (1-1000, default 24)")
    parser.add_argument("--workers", type=integer(1, 256), default=8, metavar="N",
                        help="pool workers (1-256, default 8)")
    parser.add_argument("--speed", type=number(0.0, 100.0, "a time scale from 0 to 100"),
                        default=1.0, metavar="S",
                        help="time scale of the simulated steps and backoffs (default 1; "
                             "0 = as fast as possible, 2 = twice as slow)")
    parser.add_argument("--seed", type=integer(0, 2**32 - 1), default=1, metavar="N",
                        help="chooses which attempts fail and which server is broken "
                             "(default 1)")
    parser.add_argument("--fail-rate", type=number(0.0, 1.0, "a fraction from 0 to 1"),
                        default=0.2, metavar="F",
                        help="chance that an attempt hits a transient failure (default 0.2)")
    parser.add_argument("--dead-letter-file", type=Path, metavar="PATH",
                        help="also append the dead letters to this JSON Lines file "
                             "(read it back with 'asyncq dead-letters PATH')")
    parser.set_defaults(handler=run)
