"""``asyncq bench``: run the repository's benchmark suite with a progress display.

The suite lives in the ``benchmarks/`` package of a checkout of the asyncq repository (it
is not part of the installed package). This command runs ``python -m benchmarks`` from the
checkout's root, passes every argument through, shows the runner's progress (a bar on a
terminal, plain lines elsewhere, both on stderr) and prints its comparison table on stdout.
The exit status is the runner's: 0 when every measurement succeeded, 1 when one failed, 2
for a usage problem, including a missing ``benchmarks/`` package.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from asyncq.cli._args import Parser, UsageError
from asyncq.cli.progress import LiveDisplay, bar

_PLANNED = re.compile(r"(\d+) runs planned")
_ERROR = re.compile(r": error: (.*)$")

USAGE = """\
usage: asyncq bench [RUNNER OPTIONS ...]

Run the benchmark suite of an asyncq checkout (python -m benchmarks, from {root}),
with a progress display on stderr and the comparison table on stdout. Every option is
passed to the runner, e.g.: asyncq bench --quick --workloads noop --systems asyncq,bare
"""


def find_checkout() -> Path | None:
    """The root of the asyncq repository checkout that holds ``benchmarks/``, if any.

    Looked for beside the imported package (an editable install from a checkout), then in
    the current directory.
    """
    package_root = Path(__file__).resolve().parents[3]  # <root>/src/asyncq/cli/bench.py
    for root in (package_root, Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file() and \
                (root / "src" / "asyncq" / "__init__.py").is_file():
            return root
    return None


def _not_found() -> UsageError:
    return UsageError(
        "asyncq bench: error: the benchmarks/ package was not found; it ships with the "
        "asyncq repository, not the installed package: run this from a checkout's root")


def _command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return [sys.executable, "-m", "benchmarks", *args], env


def show_help() -> int:
    """``asyncq bench --help``: this command's usage, then the runner's own options."""
    root = find_checkout()
    print(USAGE.format(root=root if root is not None else "a checkout's root"))
    if root is None:
        print("The benchmarks/ package was not found here, so the runner's options are not "
              "shown.")
        return 0
    cmd, env = _command(["--help"])
    helped = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                            check=False)
    print("the runner's options:\n")
    print(helped.stdout.rstrip())
    return 0


class _Progress:
    """Turns the runner's stderr lines into a progress display."""

    def __init__(self, display: LiveDisplay) -> None:
        self.display = display
        self.total = 0
        self.done = 0
        self.held: list[str] = []  # argparse's usage output: condensed at the end

    def line(self, text: str) -> None:
        planned = _PLANNED.search(text)
        if planned:
            self.total = int(planned.group(1))
            self.display.event(text)
        elif text.startswith("[round "):
            self.done += 1
            count = f"{self.done}/{self.total or '?'}"
            if self.display.live:
                if "ERROR" in text:
                    self.display.event(text)
                self.display.status(f"{bar(self.done, self.total)} {count} {text}")
            else:
                self.display.event(f"[{count}] {text}")
        elif self.held or text.startswith("usage:"):
            self.held.append(text)
        else:
            self.display.event(text)  # notes, "wrote ..." and the like

    def finish(self, status: int) -> None:
        self.display.close()
        errors = [m.group(1) for m in map(_ERROR.search, self.held) if m]
        if status == 2 and errors:  # the runner's usage error: one line, like ours
            print(f"asyncq bench: error: {errors[-1]}", file=sys.stderr)
            return
        for text in self.held:
            print(text, file=sys.stderr)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Run ``asyncq bench``."""
    if "-h" in extra or "--help" in extra:
        return show_help()
    root = find_checkout()
    if root is None:
        raise _not_found()
    cmd, env = _command(extra)
    progress = _Progress(LiveDisplay(sys.stderr))
    table: list[str] = []
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        reader = threading.Thread(target=_drain, args=(proc.stdout, table), daemon=True)
        reader.start()
        try:
            for text in proc.stderr:
                progress.line(text.rstrip("\n"))
        except KeyboardInterrupt:
            proc.terminate()
            raise
        finally:
            reader.join()
            status = proc.wait()
            progress.finish(status)
    sys.stdout.write("".join(table))
    return status


def _drain(stream: IO[str], into: list[str]) -> None:
    into.append(stream.read())


def add_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add ``bench`` to the command line (its arguments go to the runner untouched)."""
    parser = commands.add_parser(
        "bench", add_help=False, help="run the repository's benchmark suite (from a checkout)",
        description="Runs python -m benchmarks; see 'asyncq bench --help'.")
    parser.set_defaults(handler=run)
