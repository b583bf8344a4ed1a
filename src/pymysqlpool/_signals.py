"""Signals between threads that an asynchronous exception cannot break.

``threading.Event`` and ``Condition`` are Python code around a lock: an
exception landing between the Condition's acquire and its release (a
KeyboardInterrupt from a signal handler, ``PyThreadState_SetAsyncExc``, a
gevent timeout) leaves that lock held for good, and every later ``set()`` or
``wait()`` hangs -- on any thread, the pool's own included. ``Thread.join()``
interrupted while the thread still runs (CPython 3.11, 3.12) releases the
thread's own state lock and marks it stopped though it runs on. Each act here
is one C call on a bare lock: an exception lands before it or after it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Tuple

__all__ = ["Latch", "Wakeup", "start_thread"]

_SLICE = 0.05  # a waiter looks at a Latch's flag at least this often


def _seconds(timeout: float) -> float:
    """A timeout Lock.acquire takes (never -1: no wait here is endless by accident)."""
    return max(0.0, min(timeout, threading.TIMEOUT_MAX))


class Wakeup:
    """A wake-up one thread waits for and any thread gives: a bare lock,
    held while none is pending; ``set()`` releases it, ``wait()`` takes it."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # one pending already
            pass

    def clear(self) -> None:
        """Forget a pending wake-up."""
        self._lock.acquire(blocking=False)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a wake-up and consume it; True if one came."""
        return self._lock.acquire(timeout=_seconds(timeout))


class Latch:
    """Set once, then true for every waiter: the end of a thread, a first
    round done, a stop asked for. A waiter that was interrupted between
    taking the lock and passing it on delays the others by at most one
    slice of 50 ms: each also reads the flag."""

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._flag = True
        try:
            self._lock.release()
        except RuntimeError:  # set already
            pass

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until set, at most ``timeout`` seconds (None: no bound); True if set."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._flag:
            left = _SLICE if end is None else min(end - time.monotonic(), _SLICE)
            if left <= 0:
                break
            if self._lock.acquire(timeout=_seconds(left)):
                self._lock.release()  # passed on to the next waiter
        return self._flag


def start_thread(target: Callable[[], object], name: str) -> Tuple[threading.Thread, Latch]:
    """Start ``target`` on a daemon thread; the Latch is set once ``target``
    returned or raised (waited on instead of ``join()``, see the module's note)."""
    ended = Latch()

    def run() -> None:
        try:
            target()
        finally:
            ended.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, ended
