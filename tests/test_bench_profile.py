"""``python -m benchmarks.profile``: the per-job cost tool runs, checks and reports."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from benchmarks import profile, workloads


def test_phases_and_gc_report_per_job_figures(capsys: pytest.CaptureFixture[str]) -> None:
    profile.main(["phases", "--jobs", "300", "--repeat", "1", "--loops", "asyncio,uvloop"])
    profile.main(["gc", "--jobs", "300", "--repeat", "1", "--loops", "asyncio"])
    lines = capsys.readouterr().out.splitlines()
    phase_lines = [line for line in lines if line.startswith("phases")]
    assert len(phase_lines) == 4  # two systems on two loops
    for line in phase_lines:
        figures = re.findall(r"(\d+\.\d+) µs", line)
        assert len(figures) == 3, line
        assert all(float(f) >= 0 for f in figures), line
    gc_lines = [line for line in lines if line.startswith("gc ")]
    assert [line.split()[1] for line in gc_lines] == ["asyncq", "bare"]


def test_gc_counts_the_passes_of_any_runner_system_on_any_workload(
        capsys: pytest.CaptureFixture[str]) -> None:
    profile.main(["gc", "--jobs", "2000", "--repeat", "3", "--loops", "asyncio",
                  "--workload", "io", "--workers", "64", "--systems", "asyncq,bare-nofuture"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gc ")]
    assert [line.split()[1] for line in lines] == ["asyncq", "bare-nofuture"]
    for line in lines:
        found = re.search(r"([\d.]+) µs per job in the collector, (\d+)% of the run; passes "
                          r"over generations 0/1/2: (\d+)/(\d+)/(\d+), taking "
                          r"(\d+)/(\d+)/(\d+) ms \(median of 3; 2,000 jobs\)", line)
        assert found is not None, line
        assert float(found.group(1)) >= 0, line
        assert 0 <= int(found.group(2)) <= 100, line
    # asyncq keeps 2,000 handles, each a tracked allocation: at least two young passes
    asyncq_young = int(re.findall(r"0/1/2: (\d+)/", lines[0])[0])
    assert asyncq_young >= 2, lines[0]


def test_gc_refuses_a_system_the_runner_does_not_have() -> None:
    with pytest.raises(SystemExit):
        profile.main(["gc", "--systems", "asyncq,nonesuch"])


@pytest.mark.parametrize("mode", ["gc", "where"])
def test_a_run_with_wrong_results_voids_the_measurement(
        mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workloads.JobSet, "check", lambda self, results: "job 7 is missing")
    with pytest.raises(SystemExit, match="asyncq: wrong or missing results"):
        profile.main([mode, "--jobs", "200", "--repeat", "1", "--loops", "asyncio",
                      "--systems", "asyncq"])


def test_instructions_subtract_the_short_run_from_the_long_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stand-in for valgrind that reports 1,000 instructions per job plus 7,000 of start-up:
    # the tool must print 1,000 for every variant.
    fake = tmp_path / "valgrind"
    fake.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$prev" in --jobs) n=$a;; esac; prev=$a; done\n'
        'echo "==1== Collected : $((n * 1000 + 7000))" >&2\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    profile.main(["instructions", "--jobs", "50", "--loops", "asyncio"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # asyncq, bare, asyncq on pure Python
    assert all(line.endswith(": 1,000 instructions per job") for line in lines), lines


def test_one_run_checks_its_results() -> None:
    profile.main(["one", "--system", "asyncq", "--jobs", "100", "--workload", "sleep0"])
    profile.main(["one", "--system", "bare", "--jobs", "100", "--loop", "uvloop"])


@pytest.mark.parametrize("system", ["asyncq", "bare"])
def test_one_retry_run_fails_every_job_once(system: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry workload: each job's first attempt raises and its second returns, for
    asyncq (through its Retry) and for bare (inside the job); the run checks every result."""
    calls: list[int] = []
    real = workloads.make_jobset

    def counting(workload: str, n: int) -> workloads.JobSet:
        jobs = real(workload, n)
        flaky = jobs.native

        async def counted(i: int) -> int:
            calls.append(i)
            return await flaky(i)

        jobs.native = counted
        jobs.emulated = workloads.with_retries(counted, jobs.retry_attempts)
        return jobs

    monkeypatch.setattr(workloads, "make_jobset", counting)
    profile.main(["one", "--system", system, "--jobs", "200", "--workload", "retry"])
    assert sorted(calls) == sorted(list(range(200)) * 2)


def test_where_splits_a_run_by_where_its_code_lives(
        capsys: pytest.CaptureFixture[str]) -> None:
    profile.main(["where", "--workload", "io", "--jobs", "200", "--workers", "16",
                  "--systems", "asyncq,bare", "--loops", "asyncio"])
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("where")]  # the pool's own log events go there too
    assert [line.split()[1] for line in lines] == ["asyncq", "bare"]
    for line in lines:
        parts = line.split(": ", 1)[1].split(" (", 1)[0].split(", ")
        shares = {place: int(pct.rstrip("%")) for place, pct in
                  (part.rsplit(" ", 1) for part in parts)}
        assert 90 <= sum(shares.values()) <= 101, line  # shares under 0.5% are left out
        assert shares["asyncio"] > 0, line  # every 1 ms sleep is asyncio's timer
    assert "asyncq" in lines[0]
    assert "asyncq " not in lines[1].split(": ", 1)[1]


def test_logging_compares_three_structlog_settings(
        capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    profile.main(["logging", "--jobs", "200", "--repeat", "1", "--loops", "asyncio"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("log ")]
    assert [line.split("structlog ")[1].split(":")[0] for line in lines] == [
        "not configured", "info", "debug"]
    assert all(re.search(r": [\d,]+ jobs/s", line) for line in lines), lines
    assert not structlog.is_configured()  # left as it found it


@pytest.mark.parametrize("argv", [
    ["instructions", "--workload", "io"],
    ["where", "--systems", "nonesuch"],
    ["phases", "--loops", "trio"],
    ["phases", "--systems", "aiojobs"],
    ["gc", "--jobs", "0"],
    ["instructions", "--workers", "0"],
])
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        profile.main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err
