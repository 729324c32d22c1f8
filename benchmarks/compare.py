"""``--compare-ref REF``: measure asyncq as it was at a git ref, next to the current one.

A detached git worktree of REF is created under the system temporary directory
(``asyncq-ref-XXXX``) and removed again with ``git worktree remove --force`` when the run
ends, even after an error or Ctrl-C.  Children of the system ``asyncq@<short hash>`` get that
worktree's ``src/`` on ``PYTHONPATH``; everything else (the benchmark code, the peers, the
virtualenv) stays the current one, so only asyncq differs.  When the ref has the
optional C module ``asyncq._speedups``, it is compiled in place in the worktree first, so
the ref is measured as it would be installed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .catalog import REF_PREFIX


class RefError(Exception):
    """The ref does not name a commit, or the worktree could not be created."""


@dataclass(frozen=True)
class RefCheckout:
    """A worktree of one ref: the system name to report and the ``src`` to import from."""

    system: str
    commit: str
    src: Path


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise RefError(f"git {' '.join(args)}: {message}")
    return proc.stdout.strip()


def resolve(repo: Path, ref: str) -> tuple[str, str]:
    """The full and the short commit hash that ``ref`` names in ``repo``."""
    full = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return full, _git(repo, "rev-parse", "--short", full)


def current_checkout(repo: Path) -> str | None:
    """``<short hash>`` of HEAD, plus ``+uncommitted`` when ``src/`` differs from it."""
    try:
        short = _git(repo, "rev-parse", "--short", "HEAD")
        dirty = _git(repo, "diff", "--name-only", "HEAD", "--", "src") or _git(
            repo, "ls-files", "--others", "--exclude-standard", "--", "src"
        )
    except (RefError, OSError):
        return None
    return f"{short}+uncommitted" if dirty else short


@contextmanager
def ref_worktree(repo: Path, ref: str) -> Iterator[RefCheckout]:
    """Create a detached worktree of ``ref``, yield it, and always remove it afterwards."""
    try:
        full, short = resolve(repo, ref)
    except RefError as exc:
        raise RefError(f"{ref!r} is not a commit of {repo}") from exc
    path = Path(tempfile.mkdtemp(prefix="asyncq-ref-"))
    path.rmdir()  # git creates the directory itself
    _git(repo, "worktree", "add", "--detach", str(path), full)
    try:
        src = path / "src"
        if not (src / "asyncq").is_dir():
            raise RefError(f"{short} has no src/asyncq")
        build_extensions(path, short)
        yield RefCheckout(f"{REF_PREFIX}{short}", full, src)
    finally:
        try:
            _git(repo, "worktree", "remove", "--force", str(path))
        except RefError as exc:
            print(f"warning: could not remove the worktree {path}: {exc}", file=sys.stderr)


def build_extensions(path: Path, short: str) -> None:
    """Build a worktree's C module in place, if it has one.

    A failed build is not fatal, just as for an install: that ref then runs on its
    pure-Python storage, which each record's ``asyncq_speedups`` field shows.
    """
    if not (path / "src" / "asyncq" / "_speedups.c").is_file():
        return
    problem = build_c_module(path / "src")
    if problem is not None:
        print(f"warning: {short}: C module not built ({problem})", file=sys.stderr)


# Compiles one extension with setuptools' build_ext alone, so that it does not depend on
# the ref's pyproject.toml being readable by the setuptools installed here.
_BUILD = """
import sys
from setuptools import Distribution, Extension
from setuptools.command.build_ext import build_ext
src = sys.argv[1]
module = Extension("asyncq._speedups", [src + "/asyncq/_speedups.c"])
command = build_ext(Distribution({"ext_modules": [module]}))
command.build_lib = src
command.build_temp = src + "/../build/speedups"
command.ensure_finalized()
command.run()
"""


def build_c_module(src: Path) -> str | None:
    """Compile ``src/asyncq/_speedups.c`` next to it; None, or what went wrong."""
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(src)],
                          capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
