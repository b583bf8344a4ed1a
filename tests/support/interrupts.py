"""Interrupts delivered the way they reach a program: by a signal, in the middle
of whatever the main thread is doing (a blocked recv, a row being decoded)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def raise_after(seconds: float, exc_type: type[BaseException]) -> Iterator[None]:
    """Raise ``exc_type`` in the main thread ``seconds`` from now (SIGALRM),
    as Ctrl-C or a signal-based timeout library would; disarmed on exit."""

    def handler(signum: int, frame: Any) -> None:
        raise exc_type()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
