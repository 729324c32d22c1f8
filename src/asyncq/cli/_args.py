"""Argument parsing that reports every mistake as one line: the parser and value checks."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn


class UsageError(Exception):
    """A bad command line or unusable input: printed as one line, exit status 2."""


class Exit(Exception):
    """``--help`` or ``--version`` finished: leave ``main`` with ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises instead of printing usage and calling ``sys.exit``.

    argparse's own ``error`` prints the whole usage before the message; here a mistake is
    one line on stderr (``asyncq demo: error: argument --servers: ...``), and ``--help``
    returns from ``main`` instead of exiting the interpreter.
    """

    def error(self, message: str) -> NoReturn:
        """Raise :class:`UsageError` naming this (sub)command."""
        raise UsageError(f"{self.prog}: error: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """Raise :class:`Exit` (after writing ``message``, if any, to stderr)."""
        if message:
            sys.stderr.write(message)
        raise Exit(status)


def integer(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number within ``[minimum, maximum]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {minimum} to {maximum}, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {minimum} to {maximum}, got {value}")
        return value

    return parse


def number(minimum: float, maximum: float, what: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number within ``[minimum, maximum]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse
