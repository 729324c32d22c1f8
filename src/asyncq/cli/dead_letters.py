"""``asyncq dead-letters FILE``: list the dead letters a pool appended to a JSON Lines file.

The file is the one given as ``Pool(dead_letter_file=...)``: one JSON object per line, as
written by :meth:`asyncq.DeadLetter.to_json`, oldest first. It is only read, never changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncq
from asyncq.cli._args import Parser, UsageError, integer

_PROG = "asyncq dead-letters"

#: Table columns: heading, the record's field, the widest a cell may get.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("JOB", "job_id", 10),
    ("FUNCTION", "fn", 48),
    ("ATTEMPTS", "attempts", 8),
    ("ERROR TYPE", "error_type", 32),
    ("ERROR", "error", 60),
    ("LAST FAILED (UTC)", "last_failed_at", 19),
    ("REASON", "reason", 18),
)


def load(path: Path) -> list[dict[str, Any]]:
    """The records in ``path``; any problem becomes a one-line :class:`UsageError`."""
    try:
        records = asyncq.read_dead_letters(path)
    except FileNotFoundError:
        raise UsageError(f"{_PROG}: error: no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{_PROG}: error: {path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{_PROG}: error: {path} is not UTF-8 text") from None
    except json.JSONDecodeError:
        raise _bad_line(path) from None
    except OSError as exc:
        raise UsageError(f"{_PROG}: error: cannot read {path}: {exc.strerror or exc}") from None
    if not all(isinstance(record, dict) for record in records):
        raise _bad_line(path)
    return records


def _bad_line(path: Path) -> UsageError:
    """Find the first line that is not a JSON object, to name it in the error."""
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                return UsageError(f"{_PROG}: error: {path}:{number}: corrupt line, not JSON "
                                  f"({exc.msg}); is this a dead-letter file?")
            if not isinstance(record, dict):
                return UsageError(f"{_PROG}: error: {path}:{number}: a JSON "
                                  f"{type(record).__name__}, not a dead-letter record")
    return UsageError(f"{_PROG}: error: {path} changed while it was read")


def type_matches(error_type: str, wanted: str) -> bool:
    """Whether ``wanted`` is the full type name or a dotted suffix of it.

    ``ConnectionError`` and ``builtins.ConnectionError`` both match
    ``builtins.ConnectionError``; ``Error`` does not.
    """
    return error_type == wanted or error_type.endswith("." + wanted)


def select(records: Iterable[dict[str, Any]], *, fn: str | None, error: str | None,
           limit: int | None) -> list[dict[str, Any]]:
    """The records that pass the filters, oldest first, at most ``limit`` of them."""
    chosen = [
        r for r in records
        if (fn is None or fn in str(r.get("fn", "")))
        and (error is None or type_matches(str(r.get("error_type", "")), error))
    ]
    return chosen if limit is None else chosen[:limit]


def cell(record: dict[str, Any], key: str) -> str:
    """One table cell: the field as a single line ("-" when absent)."""
    value = record.get(key)
    if value is None:
        return "-"
    text = " ".join(str(value).split())
    if key == "error_type":
        text = text.removeprefix("builtins.")
    elif key == "last_failed_at":
        text = _timestamp(text)
    return text


def _timestamp(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def render_table(records: list[dict[str, Any]]) -> str:
    """The records as an aligned plain-text table (long cells are clipped with ``...``)."""
    rows = [[_clip(cell(r, key), limit, keep_end=key == "fn") for _, key, limit in COLUMNS]
            for r in records]
    headings = [heading for heading, _, _ in COLUMNS]
    widths = [max(len(text) for text in column) for column in zip(headings, *rows, strict=True)]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
             .rstrip() for row in [headings, *rows]]
    return "\n".join(lines)


def _clip(text: str, limit: int, *, keep_end: bool = False) -> str:
    """Shorten ``text`` to ``limit`` characters; a function keeps its own name, at the end."""
    if len(text) <= limit:
        return text
    return "..." + text[3 - limit:] if keep_end else text[: limit - 3] + "..."


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Run ``asyncq dead-letters``."""
    path: Path = args.file
    records = load(path)
    chosen = select(records, fn=args.fn, error=args.error, limit=args.limit)
    if args.json:
        for record in chosen:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return 0
    filtered = args.fn is not None or args.error is not None
    if not chosen:
        what = "match the filters" if filtered and records else "are recorded"
        print(f"no dead letters {what} in {path} ({len(records)} in the file)")
        return 0
    print(render_table(chosen))
    print(f"\n{len(chosen)} of {len(records)} dead letters in {path}")
    return 0


def add_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add ``dead-letters`` to the command line."""
    parser = commands.add_parser(
        "dead-letters", help="list the dead letters a pool wrote to its dead_letter_file",
        description="List the dead letters that Pool(dead_letter_file=FILE) appended to FILE "
                    "(JSON Lines, oldest first). The file is only read.")
    parser.add_argument("file", type=Path, metavar="FILE", help="the JSON Lines file")
    parser.add_argument("--json", action="store_true",
                        help="print the matching records as JSON lines instead of a table")
    parser.add_argument("--fn", metavar="TEXT",
                        help="only letters whose function name contains TEXT")
    parser.add_argument("--error", metavar="TYPE",
                        help="only letters whose error type is TYPE or ends with .TYPE "
                             "(ConnectionError matches builtins.ConnectionError)")
    parser.add_argument("--limit", type=integer(1, 10**9), metavar="N",
                        help="show at most the first N matching letters")
    parser.set_defaults(handler=run)
