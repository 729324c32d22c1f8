"""Progress output: a status line redrawn in place on a terminal, plain lines elsewhere.

On a terminal the status line is rewritten with a carriage return and an ANSI "erase to
end of line"; events are printed above it. Anywhere else (a pipe, a file, CI) nothing but
printable text and newlines is written: each status becomes one plain line, and a status
equal to the previous one is not repeated.
"""

from __future__ import annotations

import os
import shutil
from typing import TextIO

_ERASE = "\r\x1b[K"  # back to column 0, erase to the end of the line


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal that understands ANSI control codes."""
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return interactive and os.environ.get("TERM", "") != "dumb"


def bar(done: int, total: int, width: int = 24) -> str:
    """A text progress bar such as ``[#########...............]``, in plain ASCII."""
    filled = width if total <= 0 else min(width, max(0, done) * width // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


class LiveDisplay:
    """One status line plus a log of events, on ``stream``.

    ``live`` (default: whether ``stream`` is a terminal) chooses in-place redrawing; when it
    is false the output holds no control codes at all. Call :meth:`close` at the end, so a
    live status line is finished with a newline.
    """

    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = is_terminal(stream) if live is None else live
        self._status = ""
        self._shown = False  # a live status line is on screen now
        self._last_plain = ""

    def status(self, text: str) -> None:
        """Show ``text`` as the current status."""
        self._status = text
        if self.live:
            self._draw()
        elif text != self._last_plain:
            self._last_plain = text
            self._write(text + "\n")

    def event(self, text: str) -> None:
        """Print ``text`` as a line of its own, above the status line when live."""
        if self.live:
            prefix = _ERASE if self._shown else ""
            self._write(prefix + text + "\n")
            self._shown = False
            if self._status:
                self._draw()
        else:
            self._write(text + "\n")

    def close(self) -> None:
        """Finish a live status line with a newline (it stays on screen)."""
        if self.live and self._shown:
            self._write("\n")
            self._shown = False

    def _draw(self) -> None:
        self._write(_ERASE + _fit(self._status, self._columns()))
        self._shown = True

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):  # not a real terminal: a fallback
            return shutil.get_terminal_size((100, 24)).columns

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _fit(text: str, columns: int) -> str:
    """Clip a status line so the terminal never wraps it (a wrapped line cannot be redrawn)."""
    limit = max(10, columns - 1)
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."
