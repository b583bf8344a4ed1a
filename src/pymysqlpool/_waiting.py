"""Waiters: borrowers queued while the pool is at ``maxsize``.

Each waiter sleeps on a lock of its own, so a returned connection wakes
exactly one thread: the oldest waiter (FIFO, no thundering herd, no polling).
"""

from __future__ import annotations

import threading
from typing import Deque, Optional, Union

from ._slot import Slot


class DialToken:
    """Handed to a waiter instead of a connection: a slot is free, dial one."""

    __slots__ = ()


DIAL = DialToken()

Grant = Union[Slot, DialToken]


class Waiter:
    __slots__ = ("_wake", "error", "grant", "since")

    def __init__(self, since: float) -> None:
        self.since = since  # when it started waiting (monotonic)
        self._wake = threading.Lock()
        self._wake.acquire()
        self.grant: Optional[Grant] = None
        self.error: Optional[BaseException] = None

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or ``timeout`` seconds passed; True if woken."""
        return self._wake.acquire(timeout=max(timeout, 0.0))

    def give(self, grant: Grant) -> None:
        """Called with the pool lock held; the waiter is already dequeued."""
        self.grant = grant
        self._wake.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake.release()


class WaitQueue(Deque[Waiter]):
    """FIFO of waiters; every method is called with the pool lock held.

    A deque subclass so that ``if waiters:`` on the hot path is a C call.
    """

    __slots__ = ()

    def push(self, waiter: Waiter) -> None:
        self.append(waiter)

    def pop_oldest(self) -> Waiter:
        return self.popleft()

    def withdraw(self, waiter: Waiter) -> bool:
        """Withdraw a waiter that timed out; False if it was served meanwhile."""
        try:
            self.remove(waiter)
        except ValueError:
            return False
        return True

    def fail_all(self, error: BaseException) -> None:
        while self:
            self.popleft().fail(error)
