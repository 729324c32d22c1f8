"""The list of systems and event loops, with the module each one needs to import."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import peers, systems
from .systems import Outcome
from .workloads import JobSet

SystemFn = Callable[[JobSet, int, "int | None"], Awaitable[Outcome]]

BENCH_HINT = "not installed: pip install -e '.[bench]'"


@dataclass(frozen=True)
class System:
    """One benchmarked system: the module it needs and the coroutine function that runs it."""

    name: str
    module: str
    run: SystemFn
    missing_hint: str


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("asyncq", "asyncq", systems.run_asyncq, "asyncq does not import"),
        System("bare", "asyncio", systems.run_bare, ""),
        System("bare-nofuture", "asyncio", systems.run_bare_nofuture, ""),
        System("slices", "asyncio", systems.run_slices, ""),
        System("semaphore", "asyncio", systems.run_semaphore, ""),
        System("aiojobs", "aiojobs", peers.run_aiojobs, BENCH_HINT),
        System("asyncio-pool", "asyncio_pool", peers.run_asyncio_pool, BENCH_HINT),
        System("anyio-streams", "anyio", peers.run_anyio_streams, BENCH_HINT),
        System("taskiq", "taskiq", peers.run_taskiq, BENCH_HINT),
    )
}

#: ``asyncq@REF`` (from ``--compare-ref REF``) is asyncq imported from a worktree of REF.
REF_PREFIX = "asyncq@"


def base_name(system: str) -> str:
    """The registered system behind ``system``: ``asyncq@REF`` runs as ``asyncq``."""
    return "asyncq" if system.startswith(REF_PREFIX) else system


def lookup(system: str) -> System:
    """The :class:`System` that runs ``system`` (``KeyError`` for an unknown name)."""
    return SYSTEMS[base_name(system)]


#: Event loops: name -> module that must import for the loop to be usable.
LOOPS: dict[str, str] = {"asyncio": "asyncio", "uvloop": "uvloop"}


def jobs_for(system: str, requested: int) -> int:
    """Number of jobs ``system`` actually runs when ``requested`` jobs were asked for."""
    cap = peers.JOB_CAPS.get(base_name(system))
    return requested if cap is None else min(requested, cap)
