"""The ``asyncq`` command line, through ``main()`` in-process and ``python -m asyncq``."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import asyncq
import asyncq.cli.bench as bench
from asyncq.cli import main
from asyncq.cli.progress import LiveDisplay, bar, is_terminal

ROOT = Path(__file__).resolve().parent.parent
QUICK_BENCH = ["bench", "--quick", "--workloads", "noop", "--systems", "asyncq,bare",
               "--loops", "asyncio"]
FAST_DEMO = ["demo", "--speed", "0", "--servers", "6", "--seed", "1"]


def run_module(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m asyncq ARGS`` with stdout and stderr piped (so neither is a terminal)."""
    return subprocess.run([sys.executable, "-m", "asyncq", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


def assert_plain(text: str) -> None:
    """Output for a pipe: no ANSI escape and no carriage return."""
    assert "\x1b" not in text
    assert "\r" not in text


def assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0]


def write_dead_letters(path: Path) -> None:
    """Run a real pool with ``dead_letter_file=path`` whose jobs die in different ways."""

    async def deploy(server: str, *, version: str) -> str:
        raise ConnectionError(f"{server}: connection refused")

    async def resize(disk: str, size: int) -> None:
        raise ValueError(f"{disk}: size {size} is not allowed\nsecond line")

    async def scenario() -> None:
        retry = asyncq.Retry(attempts=2, delay=0.0, retry_on=ConnectionError)
        async with asyncq.Pool(workers=2, retry=retry, dead_letter_file=path) as pool:
            jobs = [await pool.submit(deploy, "edge-01", version="1.2"),
                    await pool.submit(resize, "sdb", 9),
                    await pool.submit(deploy, "edge-02", version="1.2")]
            for job in jobs:
                with pytest.raises((ConnectionError, ValueError)):
                    await job

    asyncio.run(scenario())


@pytest.fixture
def letters_file(tmp_path: Path) -> Path:
    path = tmp_path / "dlq" / "dead.jsonl"
    write_dead_letters(path)
    return path


# -- help, version, bad arguments ----------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["dead-letters", "-h"]])
def test_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints usage on stdout and returns 0 (it does not exit the interpreter)."""
    assert main(argv) == 0
    assert "usage: asyncq" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"asyncq {asyncq.__version__}"


@pytest.mark.parametrize("argv", [
    [],
    ["deploy"],
    ["--bogus"],
    ["demo", "--servers", "0"],
    ["demo", "--servers", "many"],
    ["demo", "--workers", "1.5"],
    ["demo", "--speed", "-1"],
    ["demo", "--speed", "nan"],
    ["demo", "--speed", "inf"],
    ["demo", "--fail-rate", "1.5"],
    ["demo", "--seed", "-3"],
    ["demo", "--bogus"],
    ["demo", "extra"],
    ["dead-letters"],
    ["dead-letters", "does-not-exist.jsonl"],
    ["dead-letters", "x.jsonl", "--limit", "0"],
    ["dead-letters", "x.jsonl", "--limit", "ten"],
])
def test_bad_arguments_give_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every usage mistake is one line on stderr, exit status 2, nothing on stdout."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_line_error(err)


def test_bad_arguments_in_a_subprocess() -> None:
    """The same through ``python -m asyncq``: one line, exit 2, no traceback."""
    for args in (["demo", "--workers", "0"], ["dead-letters", "missing.jsonl"], ["nope"]):
        done = run_module(*args)
        assert done.returncode == 2
        assert done.stdout == ""
        assert_one_line_error(done.stderr)


# -- dead-letters -------------------------------------------------------------------------


def test_dead_letters_table(letters_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default table has a row per letter with id, function, attempts, error and reason."""
    assert main(["dead-letters", str(letters_file)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["JOB", "FUNCTION", "ATTEMPTS", "ERROR", "TYPE", "ERROR",
                                "LAST", "FAILED", "(UTC)", "REASON"]
    rows = [line for line in lines[1:] if "write_dead_letters" in line]
    assert len(rows) == 3
    edge = next(row for row in rows if "edge-01" in row)
    assert "deploy" in edge
    assert "ConnectionError" in edge
    assert "attempts_exhausted" in edge
    assert re.search(r"\s2\s", edge)  # attempts
    resize = next(row for row in rows if "resize" in row)
    assert "ValueError" in resize
    assert "not_retryable" in resize
    assert "second line" in resize  # a multi-line message stays on its row
    assert out.rstrip().endswith(f"3 of 3 dead letters in {letters_file}")


def test_dead_letters_json_and_filters(
    letters_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints the stored records; --fn, --error and --limit select among them."""

    def records(*extra: str) -> list[dict[str, Any]]:
        assert main(["dead-letters", str(letters_file), "--json", *extra]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    everything = records()
    assert everything == asyncq.read_dead_letters(letters_file)
    deploys = [r for r in everything if str(r["fn"]).endswith(".deploy")]
    assert sorted(r["args"] for r in deploys) == [["edge-01"], ["edge-02"]]
    assert records("--fn", "deploy") == deploys
    assert len(records("--error", "ConnectionError")) == 2
    assert len(records("--error", "builtins.ValueError")) == 1
    assert records("--error", "Error") == []  # a dotted suffix, not any substring
    assert records("--fn", "deploy", "--limit", "1") == deploys[:1]


def test_dead_letters_with_no_match(letters_file: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dead-letters", str(letters_file), "--fn", "nothing-like-it"]) == 0
    assert "no dead letters match" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "message"), [
    ('{"job_id": 1}\n{"job_id": 2, oops\n', ":2: corrupt line"),
    ('{"job_id": 1}\n\n[1, 2]\n', ":3: a JSON list"),
    (b"\xff\xfe{}\n", "not UTF-8"),
])
def test_corrupt_dead_letter_file(tmp_path: Path, content: str | bytes, message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A corrupt file is one line naming the file and line, exit status 2."""
    path = tmp_path / "dead.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert main(["dead-letters", str(path)]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert message in err


def test_dead_letters_of_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dead-letters", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# -- demo ---------------------------------------------------------------------------------


def test_demo_shows_retries_a_dead_letter_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The demo's output tells the story: failures retried, one server dead, a summary."""
    assert main(FAST_DEMO) == 0
    out = capsys.readouterr().out
    assert_plain(out)
    assert re.search(r"attempt 1/4 failed", out)
    assert re.search(r"DEAD +deploy\('[a-z]+-\d\d', version='2\.4\.0'\) after 4 attempts", out)
    assert "summary: release 2.4.0 reached 5 of 6 servers" in out
    retried = re.search(r"attempts +\d+ failed, (\d+) retried", out)
    assert retried is not None
    assert int(retried.group(1)) >= 3  # the broken server alone is retried three times
    assert "dead letters: 1" in out
    assert re.search(r"job \d+ +deploy\(.*attempts_exhausted +ConnectionError", out)
    assert re.search(r"\[#+\] 18/18  waiting 0  running 0  retrying 0  done 17  dead 1  ", out)


def test_demo_replays_the_same_story_for_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    """Which attempts fail depends on --seed only, not on timing."""

    def failures(seed: str) -> list[str]:
        assert main([*FAST_DEMO[:-1], seed, "--fail-rate", "0.3"]) == 0
        lines = capsys.readouterr().out.splitlines()
        return sorted(line.split("] ", 1)[1] for line in lines if "failed:" in line)

    assert failures("5") == failures("5")
    assert failures("5") != failures("6")


def test_demo_writes_dead_letters_the_cli_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dead-letter-file keeps the letters; ``asyncq dead-letters`` lists them."""
    path = tmp_path / "demo.jsonl"
    assert main([*FAST_DEMO, "--dead-letter-file", str(path)]) == 0
    assert f"asyncq dead-letters {path}" in capsys.readouterr().out
    assert main(["dead-letters", str(path), "--fn", "Simulation.deploy"]) == 0
    out = capsys.readouterr().out
    assert "asyncq.cli.demo.Simulation.deploy" in out
    assert "1 of 1 dead letters" in out


def test_demo_refuses_an_unwritable_dead_letter_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*FAST_DEMO, "--dead-letter-file", str(blocker / "dead.jsonl")]) == 2
    assert_one_line_error(capsys.readouterr().err)


def test_demo_on_a_terminal_redraws_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the status line is redrawn with \\r and an ANSI erase."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stdout", screen)
    assert main(FAST_DEMO) == 0
    text = screen.getvalue()
    assert "\r\x1b[K[" in text
    assert "summary: release" in text


def test_demo_in_a_pipe_prints_plain_lines() -> None:
    """``python -m asyncq demo`` piped: periodic progress lines, no control codes at all."""
    done = run_module("demo", "--speed", "0.05", "--servers", "8")
    assert done.returncode == 0, done.stderr
    assert_plain(done.stdout + done.stderr)
    assert done.stderr == ""
    progress = [line for line in done.stdout.splitlines() if re.match(r"\[[#.]+\] \d+/20 ", line)]
    assert progress
    assert progress[-1].startswith("[################] 20/20  waiting 0  running 0")
    assert "DEAD" in done.stdout
    assert "summary:" in done.stdout


def test_demo_interrupted_exits_130_without_traceback() -> None:
    """Ctrl-C (SIGINT) closes the pool gracefully: exit status 130, no traceback."""
    with subprocess.Popen([sys.executable, "-m", "asyncq", "demo", "--speed", "5"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert "release 2.4.0" in proc.stdout.readline()  # the pool is running
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "interrupted" in err
    assert_plain(out)


def test_demo_piped_into_a_closed_reader_stops_quietly() -> None:
    """``asyncq demo | head -1``: the broken pipe ends the demo without a traceback."""
    with subprocess.Popen([sys.executable, "-m", "asyncq", "demo"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert "release 2.4.0" in proc.stdout.readline()
        proc.stdout.close()  # like head: the next write finds no reader
        err = proc.stderr.read()
        assert proc.wait(timeout=30) == 1
    assert err == ""


# -- bench --------------------------------------------------------------------------------


def test_bench_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    """``asyncq bench`` runs the runner: progress on stderr, its comparison table on stdout."""
    assert main(QUICK_BENCH) == 0
    out, err = capsys.readouterr()
    assert re.search(r"loop=asyncio.*workload=noop", out)
    assert re.search(r"^ +asyncq +\d", out, re.M)
    assert re.search(r"^ +bare +\d", out, re.M)
    assert "[1/2] [round 1] asyncio noop" in err
    assert "[2/2] [round 1]" in err
    assert_plain(out + err)


def test_bench_in_a_subprocess() -> None:
    """``python -m asyncq bench`` piped: the same table, no control codes."""
    done = run_module(*QUICK_BENCH)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^ +asyncq +\d", done.stdout, re.M)
    assert_plain(done.stdout + done.stderr)


def test_bench_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad runner option is reported as one line with the runner's status, 2."""
    assert main(["bench", "--workloads", "nope"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert err.startswith("asyncq bench: error: argument --workloads")


def test_bench_help_shows_the_runner_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: asyncq bench" in out
    assert "--quick" in out


def test_bench_without_a_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Installed without the repository, bench says so in one line and exits 2."""
    assert bench.find_checkout() == ROOT
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "site" / "asyncq" / "cli" / "b.py"))
    monkeypatch.chdir(tmp_path)
    assert bench.find_checkout() is None
    assert main(QUICK_BENCH) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "benchmarks/ package was not found" in err


# -- progress display ---------------------------------------------------------------------


def test_live_display_redraws_and_plain_display_does_not() -> None:
    live_stream, plain_stream = io.StringIO(), io.StringIO()
    live = LiveDisplay(live_stream, live=True)
    plain = LiveDisplay(plain_stream, live=False)
    for display in (live, plain):
        display.status("1/3")
        display.event("something happened")
        display.status("1/3")
        display.status("2/3")
        display.close()
    assert live_stream.getvalue() == (
        "\r\x1b[K1/3" "\r\x1b[Ksomething happened\n" "\r\x1b[K1/3" "\r\x1b[K1/3"
        "\r\x1b[K2/3" "\n")
    assert plain_stream.getvalue() == "1/3\nsomething happened\n2/3\n"


def test_terminal_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm-256color")
    assert is_terminal(Terminal())
    assert not is_terminal(io.StringIO())
    monkeypatch.setenv("TERM", "dumb")
    assert not is_terminal(Terminal())


def test_bar() -> None:
    assert bar(0, 4, width=4) == "[....]"
    assert bar(2, 4, width=4) == "[##..]"
    assert bar(9, 4, width=4) == "[####]"
    assert bar(0, 0, width=4) == "[####]"


def test_console_entry_point_is_main() -> None:
    """``python -m asyncq`` and the console script both land in asyncq.cli.main."""
    done = run_module("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"asyncq {asyncq.__version__}"
