"""Run the plan: one fresh child process per measurement, interleaved round by round.

Within a round every configuration (loop, workload, workers) runs each of its systems once,
in a fixed order, so that a system's ratio to ``bare`` compares two runs that were made a few
seconds apart on the same machine state.  The same holds for the other same-round ratios:
``ratio_to_plain`` (a ``keyed`` run over the same system's ``noop`` run) and
``ratio_to_asyncq`` (``asyncq@REF`` over the current ``asyncq``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .catalog import REF_PREFIX, jobs_for
from .workloads import MAX_DELAY_S

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIRED_FIELDS = (
    "system",
    "loop",
    "workload",
    "workers",
    "maxsize",
    "jobs",
    "seconds",
    "jobs_per_s",
    "ratio_to_bare",
    "peak_rss_mib",
)
EXIT_SKIPPED, EXIT_UNSUPPORTED = 3, 4


@dataclass(frozen=True)
class Config:
    """One cell of the benchmark grid; every system in ``systems`` runs it once per round."""

    loop: str
    workload: str
    workers: int
    maxsize: int | None
    jobs: int
    systems: tuple[str, ...]
    mode: str = "run"
    delay_max: float = MAX_DELAY_S
    #: Selected systems the workload does not support, each reported once as skipped.
    unsupported: tuple[str, ...] = ()
    skip_note: str = ""


def child_env(src: Path | None = None) -> dict[str, str]:
    """Environment for children: asyncq from ``src`` (default: this checkout's ``src/``).

    ``PYTHONPATH`` comes before the virtualenv's own paths, so it also wins over an
    editable install of asyncq.
    """
    env = dict(os.environ)
    src = src or REPO_ROOT / "src"
    if src.is_dir():
        parts = [str(src), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def normalise(record: dict[str, Any]) -> dict[str, Any]:
    """Order the record's fields: the required ones first (None when absent), then extras."""
    out = {key: record.get(key) for key in REQUIRED_FIELDS}
    out.update({k: v for k, v in record.items() if k not in out})
    return out


def run_child(
    config: Config, system: str, timeout: float, src: Path | None = None
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its (normalised) record.

    ``src``: the directory asyncq is imported from (``--compare-ref`` worktrees).
    """
    jobs = jobs_for(system, config.jobs)
    maxsize = "none" if config.maxsize is None else str(config.maxsize)
    cmd = [
        sys.executable, "-m", "benchmarks.child",
        "--system", system, "--loop", config.loop, "--workload", config.workload,
        "--workers", str(config.workers), "--maxsize", maxsize, "--jobs", str(jobs),
        "--mode", config.mode, "--delay-max", repr(config.delay_max),
    ]  # fmt: skip
    base: dict[str, Any] = {
        "system": system,
        "loop": config.loop,
        "workload": config.workload,
        "workers": config.workers,
        "maxsize": config.maxsize,
        "jobs": jobs,
    }
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, env=child_env(src), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return normalise({**base, "error": f"timeout after {timeout:.0f} s"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        record: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return normalise({**base, "error": f"exit {proc.returncode}: {tail}"})
    if proc.returncode in (EXIT_SKIPPED, EXIT_UNSUPPORTED):
        record.setdefault("skipped", "not importable")
        record["_scope"] = "workload" if proc.returncode == EXIT_UNSUPPORTED else "system"
    elif proc.returncode != 0:
        record.setdefault("error", f"exit {proc.returncode}")
    elif record.get("error") is None and record.get("jobs_per_s") is None and config.mode == "run":
        record["error"] = "no timing reported"
    return normalise(record)


def _usable_rate(rec: dict[str, Any] | None) -> float | None:
    if rec is None or rec.get("error") or rec.get("skipped"):
        return None
    value = rec.get("jobs_per_s")
    return float(value) if value else None


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Set ``ratio_to_bare`` (and ``ratio_to_asyncq`` for ``asyncq@REF``) on one batch.

    A batch is one round of one configuration.
    """
    by_name = {r["system"]: r for r in records}
    reference = _usable_rate(by_name.get("bare"))
    current = _usable_rate(by_name.get("asyncq"))
    for rec in records:
        value = _usable_rate(rec)
        rec["ratio_to_bare"] = round(value / reference, 4) if value and reference else None
        if rec["system"].startswith(REF_PREFIX) and value and current:
            rec["ratio_to_asyncq"] = round(value / current, 4)


def add_plain_ratios(records: list[dict[str, Any]]) -> None:
    """Set ``ratio_to_plain`` on every ``keyed`` record.

    The reference is the ``noop`` run of the same system, loop, workers, maxsize, job count
    and round; the plan puts that configuration right before the keyed one.
    """
    def ident(rec: dict[str, Any]) -> tuple[Any, ...]:
        return (rec["system"], rec["loop"], rec["workers"], rec["maxsize"], rec["jobs"],
                rec.get("round"))

    plain = {ident(r): _usable_rate(r) for r in records if r["workload"] == "noop"}
    for rec in records:
        if rec["workload"] != "keyed" or rec.get("skipped"):
            continue
        value, reference = _usable_rate(rec), plain.get(ident(rec))
        rec["ratio_to_plain"] = round(value / reference, 4) if value and reference else None


def skipped_record(config: Config, system: str, note: str) -> dict[str, Any]:
    """A record saying ``system`` was not measured in ``config``, and why."""
    return normalise(
        {
            "system": system,
            "loop": config.loop,
            "workload": config.workload,
            "workers": config.workers,
            "maxsize": config.maxsize,
            "jobs": jobs_for(system, config.jobs),
            "skipped": note,
        }
    )


#: Workloads whose N ``calibrate`` may raise (``keyed`` follows its ``noop``).
CALIBRATED = frozenset({"noop", "sleep0", "io", "retry"})
#: ``calibrate`` raises N to at most this many times the N a configuration started with.
MAX_SCALE = 20


def scaled_jobs(jobs: int, seconds: float, min_seconds: float) -> int:
    """``jobs``, raised if a run of that many took under ``min_seconds``: to what the run's
    rate needs for ``min_seconds`` plus 10% (rates vary between runs), rounded up to two
    significant digits, at most ``MAX_SCALE`` times ``jobs``."""
    if seconds >= min_seconds:
        return jobs
    if seconds <= 0:
        return jobs * MAX_SCALE
    want = math.ceil(round(jobs * min_seconds * 1.1 / seconds, 3))  # no float dust
    step = int(10 ** max(0, len(str(want)) - 2))  # ** with an int exponent is typed Any
    return min(-(-want // step) * step, jobs * MAX_SCALE)


def calibrate(
    configs: list[Config], min_seconds: float, timeout: float, progress: Callable[[str], None]
) -> list[Config]:
    """Give every throughput configuration an N whose run lasts at least ``min_seconds``.

    One run per configuration before round 1, of ``bare`` (the reference; else the first
    system), at the configuration's loop, workload and workers; its N is raised by
    :func:`scaled_jobs` and used by every system in every round. ``keyed`` takes the N of
    the ``noop`` configuration it is compared with. A run that fails keeps the default.
    """
    chosen: dict[tuple[Any, ...], int] = {}
    out: list[Config] = []
    for config in configs:
        shape = (config.loop, config.workers, config.maxsize)
        if config.mode == "run" and config.workload == "keyed" and shape in chosen:
            config = replace(config, jobs=chosen[shape])
        elif config.mode == "run" and config.workload in CALIBRATED and config.systems:
            system = "bare" if "bare" in config.systems else config.systems[0]
            rec = run_child(config, system, timeout)
            seconds = rec.get("seconds")
            if rec.get("error") or rec.get("skipped") or not isinstance(seconds, float):
                progress(f"[calibrate] {config.loop} {config.workload} W={config.workers}: "
                         f"{system} gave no timing; keeping {config.jobs:,} jobs")
            else:
                jobs = scaled_jobs(config.jobs, seconds, min_seconds)
                progress(f"[calibrate] {config.loop} {config.workload} W={config.workers}: "
                         f"{system} ran {config.jobs:,} jobs in {seconds:.2f} s; "
                         f"{jobs:,} jobs per run")
                config = replace(config, jobs=jobs)
            if config.workload == "noop":
                chosen[shape] = config.jobs
        out.append(config)
    return out


def run_plan(
    configs: list[Config],
    rounds: int,
    timeout: float,
    progress: Callable[[str], None],
    sources: Mapping[str, Path] | None = None,
) -> list[dict[str, Any]]:
    """Run every configuration ``rounds`` times, interleaving systems within each round.

    A system (or loop) that is skipped because it does not import is recorded once per
    configuration and not retried in later rounds; one that lacks a feature of a workload
    (exit status 4) is skipped for that workload only.  ``sources`` maps a system name
    (``asyncq@REF``) to the ``src`` directory its children import asyncq from.
    """
    sources = sources or {}
    records: list[dict[str, Any]] = []
    skipped: dict[tuple[str, ...], str] = {}
    reported: set[tuple[Config, str]] = set()
    for rnd in range(1, rounds + 1):
        for config in configs:
            batch: list[dict[str, Any]] = []
            for system in config.systems:
                keys = ((system, config.loop), (system, config.loop, config.workload))
                key = next((k for k in keys if k in skipped), None)
                if key is not None:
                    if (config, system) not in reported:
                        reported.add((config, system))
                        batch.append(skipped_record(config, system, skipped[key]))
                    continue
                rec = run_child(config, system, timeout, sources.get(system))
                rec["round"] = rnd
                if rec.get("skipped"):
                    scope = keys[1] if rec.get("_scope") == "workload" else keys[0]
                    skipped[scope] = str(rec["skipped"])
                    reported.add((config, system))
                rec.pop("_scope", None)
                batch.append(rec)
                progress(describe(rec))
            if rnd == 1:
                note = config.skip_note
                batch.extend(skipped_record(config, s, note) for s in config.unsupported)
            add_ratios(batch)
            records.extend(batch)
    add_plain_ratios(records)
    return records


def describe(rec: dict[str, Any]) -> str:
    """One progress line for a finished measurement."""
    head = (
        f"[round {rec.get('round', '-')}] {rec['loop']:<7} {rec['workload']:<12} "
        f"W={rec['workers']:<4} {rec['system']:<16}"
    )
    if rec.get("skipped"):
        return f"{head} skipped ({rec['skipped']})"
    if rec.get("error"):
        return f"{head} ERROR: {rec['error']}"
    if rec.get("b_wait_p50_ms") is not None:
        return (f"{head} B wait p50 {rec['b_wait_p50_ms']:.2f} ms, "
                f"p99 {rec['b_wait_p99_ms']:.2f} ms")
    if rec.get("jobs_per_s"):
        return f"{head} {rec['jobs_per_s']:>12,.0f} jobs/s"
    return f"{head} done"
