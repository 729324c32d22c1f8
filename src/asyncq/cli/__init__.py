"""The ``asyncq`` command line (also ``python -m asyncq``).

::

    asyncq demo [--servers N] [--workers N] [--speed S] [--seed N] [--fail-rate F]
    asyncq bench [runner options ...]
    asyncq dead-letters FILE [--json] [--fn TEXT] [--error TYPE] [--limit N]

Exit status: 0 on success, 2 for a bad command line or unreadable input (reported as one
line on stderr, never a traceback), 130 when interrupted; ``bench`` passes on the benchmark
runner's own status. Only the standard library is used here, besides asyncq itself.
"""

from __future__ import annotations

import contextlib
import os
import sys

from asyncq.cli import bench, dead_letters, demo
from asyncq.cli._args import Exit, Parser, UsageError

__all__ = ["main"]


def build_parser() -> Parser:
    """The parser for every command (each command module adds its own sub-parser)."""
    from asyncq import __version__

    parser = Parser(
        prog="asyncq",
        description="asyncq: a bounded asyncio job pool. Commands to try it and to inspect "
                    "what it left behind.",
    )
    parser.add_argument("--version", action="version", version=f"asyncq {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    demo.add_parser(commands)
    bench.add_parser(commands)
    dead_letters.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        return _dispatch(arguments)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exit as exc:
        return exc.status
    except KeyboardInterrupt:
        print("asyncq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (``| head``): stop quietly
        return 1
    except BaseExceptionGroup as group:  # the same, raised inside a task group
        if group.split(BrokenPipeError)[1] is not None:
            raise
        _silence_stdout()
        return 1


def _dispatch(arguments: list[str]) -> int:
    parser = build_parser()
    namespace, extra = parser.parse_known_args(arguments)
    if namespace.command is None:
        raise UsageError("asyncq: error: a command is required: demo, bench or dead-letters "
                         "(see asyncq --help)")
    if namespace.command != "bench" and extra:
        raise UsageError(f"asyncq {namespace.command}: error: unrecognized arguments: "
                         f"{' '.join(extra)}")
    status: int = namespace.handler(namespace, extra)
    return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    # Without a file descriptor (captured output) there is no pipe left to flush into.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
