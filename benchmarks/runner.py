"""Run the plan: one fresh child process per measurement, interleaved round by round.

Within a round every configuration (loop, workload, workers) runs each of its systems once,
in a fixed order, so that a system's ratio to ``bare`` compares two runs that were made a few
seconds apart on the same machine state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import jobs_for
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
EXIT_SKIPPED = 3


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


def child_env() -> dict[str, str]:
    """Environment for children: run asyncq from ``src/`` when that directory exists."""
    env = dict(os.environ)
    src = REPO_ROOT / "src"
    if src.is_dir():
        parts = [str(src), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def normalise(record: dict[str, Any]) -> dict[str, Any]:
    """Order the record's fields: the required ones first (None when absent), then extras."""
    out = {key: record.get(key) for key in REQUIRED_FIELDS}
    out.update({k: v for k, v in record.items() if k not in out})
    return out


def run_child(config: Config, system: str, timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its (normalised) record."""
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
            cmd, cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return normalise({**base, "error": f"timeout after {timeout:.0f} s"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        record: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return normalise({**base, "error": f"exit {proc.returncode}: {tail}"})
    if proc.returncode == EXIT_SKIPPED:
        record.setdefault("skipped", "not importable")
    elif proc.returncode != 0:
        record.setdefault("error", f"exit {proc.returncode}")
    elif record.get("error") is None and record.get("jobs_per_s") is None and config.mode == "run":
        record["error"] = "no timing reported"
    return normalise(record)


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Set ``ratio_to_bare`` on records of one round and one configuration."""
    bare = next((r for r in records if r["system"] == "bare"), None)
    reference = bare.get("jobs_per_s") if bare and not bare.get("error") else None
    for rec in records:
        value = rec.get("jobs_per_s")
        usable = not rec.get("error") and not rec.get("skipped")
        if reference and value and usable:
            rec["ratio_to_bare"] = round(value / reference, 4)
        else:
            rec["ratio_to_bare"] = None


def run_plan(
    configs: list[Config],
    rounds: int,
    timeout: float,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Run every configuration ``rounds`` times, interleaving systems within each round.

    A system (or loop) that is skipped because it does not import is recorded once per
    configuration and not retried in later rounds.
    """
    records: list[dict[str, Any]] = []
    skipped: dict[tuple[str, str], str] = {}
    reported: set[tuple[Config, str]] = set()
    for rnd in range(1, rounds + 1):
        for config in configs:
            batch: list[dict[str, Any]] = []
            for system in config.systems:
                key = (system, config.loop)
                if key in skipped:
                    if (config, system) not in reported:
                        reported.add((config, system))
                        rec = normalise(
                            {
                                "system": system,
                                "loop": config.loop,
                                "workload": config.workload,
                                "workers": config.workers,
                                "maxsize": config.maxsize,
                                "jobs": jobs_for(system, config.jobs),
                                "skipped": skipped[key],
                            }
                        )
                        batch.append(rec)
                    continue
                rec = run_child(config, system, timeout)
                rec["round"] = rnd
                if rec.get("skipped"):
                    skipped[key] = str(rec["skipped"])
                    reported.add((config, system))
                batch.append(rec)
                progress(describe(rec))
            add_ratios(batch)
            records.extend(batch)
    return records


def describe(rec: dict[str, Any]) -> str:
    """One progress line for a finished measurement."""
    head = (
        f"[round {rec.get('round', '-')}] {rec['loop']:<7} {rec['workload']:<9} "
        f"W={rec['workers']:<4} {rec['system']:<14}"
    )
    if rec.get("skipped"):
        return f"{head} skipped ({rec['skipped']})"
    if rec.get("error"):
        return f"{head} ERROR: {rec['error']}"
    if rec.get("jobs_per_s"):
        return f"{head} {rec['jobs_per_s']:>12,.0f} jobs/s"
    return f"{head} done"
