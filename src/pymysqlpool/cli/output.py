"""Output helpers: one-line errors, plain tables, a progress line."""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, Callable, List, Optional, Sequence, TextIO

__all__ = ["Progress", "describe_error", "format_table", "print_error"]


def describe_error(exc: BaseException, password: str = "") -> str:
    """An exception as one line, with the password (if any) masked.

    PyMySQL errors carry ``(code, message)``: shown as ``[code] message``.
    """
    args = exc.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"[{args[0]}] {args[1]}"
    else:
        text = str(exc) or type(exc).__name__
        # "[Errno 111] Connection refused" says enough; other errors get their class name.
        if not (isinstance(exc, OSError) and type(exc).__module__ == "builtins"):
            text = f"{type(exc).__name__}: {text}"
    return redact(" ".join(text.split()), password)


def redact(text: str, password: str) -> str:
    # Servers and drivers do not echo passwords, but a user-supplied string
    # might: mask it wherever it appears, to be sure it never reaches a log.
    return text.replace(password, "***") if password else text


def print_error(command: str, message: str, stream: Optional[TextIO] = None) -> None:
    """``pymysqlpool <command>: error: <message>`` on one line of stderr."""
    prefix = f"pymysqlpool {command}" if command else "pymysqlpool"
    print(f"{prefix}: error: {message}", file=stream or sys.stderr, flush=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Rows as aligned columns; the columns listed in ``right`` align right."""
    cells: List[List[str]] = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: List[str]) -> str:
        out = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


class Progress:
    """A status line on stderr.

    On a terminal the line is redrawn in place several times a second;
    otherwise (a pipe, a CI log) a plain line is written every ``plain_every``
    seconds so the log stays readable.
    """

    def __init__(
        self,
        stream: Optional[TextIO] = None,
        enabled: bool = True,
        plain_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream or sys.stderr
        self._enabled = enabled
        try:
            self._tty = self._stream.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._clock = clock
        self._every = 0.2 if self._tty else plain_every
        self._last = -float("inf")
        self._drawn = False

    @property
    def interval(self) -> float:
        return self._every

    def update(self, text: str, force: bool = False) -> None:
        if not self._enabled:
            return
        now = self._clock()
        if not force and now - self._last < self._every:
            return
        self._last = now
        if self._tty:
            # A wrapped line cannot be redrawn in place: cut it to the width.
            width = shutil.get_terminal_size().columns
            self._stream.write("\r\x1b[K" + text[: max(width - 1, 20)])
            self._drawn = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def done(self) -> None:
        """Clear the in-place line so what follows starts on a clean line."""
        if self._tty and self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False
