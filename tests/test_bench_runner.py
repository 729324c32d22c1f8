"""The benchmark runner's choice of N: runs long enough to time (``--min-seconds``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from benchmarks import __main__ as cli
from benchmarks import runner
from benchmarks.runner import MAX_SCALE, Config, calibrate, scaled_jobs


@pytest.mark.parametrize(("jobs", "seconds", "expected"), [
    (200_000, 1.5, 200_000),  # long enough already
    (200_000, 1.0, 200_000),
    (200_000, 0.2, 1_100_000),  # 5x for the second, +10%, two significant digits
    (200_000, 0.85, 260_000),  # 258,824 rounded up
    (50_000, 0.23, 240_000),
    (200_000, 0.001, 200_000 * MAX_SCALE),  # capped
    (200_000, 0.0, 200_000 * MAX_SCALE),
])
def test_scaled_jobs(jobs: int, seconds: float, expected: int) -> None:
    """N grows to what a second and 10% needs at the measured rate, within the cap."""
    assert scaled_jobs(jobs, seconds, 1.0) == expected


def test_calibrate_times_bare_once_per_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """One run of the reference system per throughput configuration sets its N; keyed takes
    the N of the noop of its loop and workers (its own without one); a calibration run
    that failed or was skipped, the delayed workload and the memory cases keep theirs."""
    calls: list[tuple[str, str, str, int]] = []

    def fake_run_child(config: Config, system: str, timeout: float,
                       src: Any = None) -> dict[str, Any]:
        calls.append((config.loop, config.workload, system, config.jobs))
        if config.workload == "sleep0":
            return {"error": "exit 1: boom", "seconds": None}
        if config.workload == "io":
            return {"skipped": "not importable", "seconds": None}
        return {"seconds": {"asyncio": 0.25, "uvloop": 0.5}[config.loop]}

    monkeypatch.setattr(runner, "run_child", fake_run_child)
    both = ("asyncq", "bare")
    keyed = ("asyncq",)
    configs = [
        Config("asyncio", "noop", 8, 1000, 200_000, both),
        Config("asyncio", "keyed", 8, 1000, 200_000, keyed),
        Config("uvloop", "noop", 8, 1000, 200_000, both),
        Config("uvloop", "keyed", 8, 1000, 200_000, keyed),
        Config("asyncio", "keyed", 64, 1000, 200_000, keyed),  # no noop of its shape
        Config("asyncio", "sleep0", 8, 1000, 200_000, both),
        Config("asyncio", "io", 512, 1000, 50_000, both),
        Config("asyncio", "retry", 64, 1000, 100_000, keyed),
        Config("asyncio", "delayed", 8, 1000, 100_000, both),
        Config("asyncio", "memory-bounded", 8, 1000, 1_000_000, both, "bounded-rss"),
    ]
    notes: list[str] = []
    out = calibrate(configs, 1.0, 60.0, notes.append)
    assert [c.jobs for c in out] == [880_000, 880_000, 440_000, 440_000, 200_000, 200_000,
                                     50_000, 440_000, 100_000, 1_000_000]
    assert calls == [("asyncio", "noop", "bare", 200_000), ("uvloop", "noop", "bare", 200_000),
                     ("asyncio", "sleep0", "bare", 200_000), ("asyncio", "io", "bare", 50_000),
                     ("asyncio", "retry", "asyncq", 100_000)]
    assert len(notes) == 5
    assert "keeping 200,000 jobs" in notes[2]
    assert "keeping 50,000 jobs" in notes[3]
    assert [c.systems for c in out] == [c.systems for c in configs]


@pytest.mark.parametrize(("argv", "expected"), [
    ([], 1.0),
    (["--quick"], 0.0),
    (["--jobs", "1000"], 0.0),
    (["--quick", "--min-seconds", "0.5"], 0.5),
    (["--min-seconds", "0"], 0.0),
])
def test_min_seconds_defaults(argv: list[str], expected: float) -> None:
    """A second by default; off for smoke runs and an explicit N, unless asked for."""
    assert cli.parse_args(argv).min_seconds == expected


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_min_seconds_must_be_finite_and_not_negative(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad value is a usage error naming the option, before anything runs."""
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["--min-seconds", value])
    assert exc.value.code == 2
    assert "--min-seconds must be a finite number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "calibrated"), [([], True), (["--min-seconds", "0"], False)])
def test_run_calibrates_before_the_plan_and_records_it(
        argv: list[str], calibrated: bool, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The plan runs the calibrated configurations, and the JSON says what was asked."""
    seen: dict[str, Any] = {}

    def fake_calibrate(configs: list[Config], min_seconds: float, timeout: float,
                       progress: Any) -> list[Config]:
        seen["min_seconds"] = min_seconds
        return [replace(c, jobs=c.jobs * 2) for c in configs]

    def fake_run_plan(configs: list[Config], *args: Any) -> list[dict[str, Any]]:
        seen["jobs"] = [c.jobs for c in configs]
        return []

    monkeypatch.setattr(cli, "calibrate", fake_calibrate)
    monkeypatch.setattr(cli, "run_plan", fake_run_plan)
    out = tmp_path / "results.json"
    args = cli.parse_args(["--workloads", "noop", "--loops", "asyncio", "--workers", "8",
                           "--json", str(out), *argv])
    assert cli.run(args, []) == 0
    expected = {"min_seconds": 1.0, "jobs": [400_000]} if calibrated else {"jobs": [200_000]}
    assert seen == expected
    assert json.loads(out.read_text())["meta"]["min_seconds"] == (1.0 if calibrated else 0.0)

