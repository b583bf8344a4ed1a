"""Waiters: borrowers queued while the pool is at ``maxsize``.

Each waiter sleeps on a lock of its own, so a returned connection wakes
exactly one thread: the oldest waiter (FIFO, no thundering herd, no polling).
"""

from __future__ import annotations

import threading
from typing import Deque, Optional, Union

from ._slot import Slot

# Lock.acquire() rejects longer timeouts (OverflowError): wait without one.
_FOREVER = threading.TIMEOUT_MAX


class DialToken:
    """A right to dial: one slot of ``maxsize`` reserved for a connection
    being opened. ``live`` until it is used or given back, so giving it back
    twice (an interrupted borrow's clean-up) is harmless."""

    __slots__ = ("live",)

    def __init__(self) -> None:
        self.live = True

Grant = Union[Slot, DialToken]


class Waiter:
    __slots__ = ("_wake", "error", "grant", "queued", "since")

    def __init__(self, since: float) -> None:
        self.since = since  # when it started waiting (monotonic)
        self._wake = threading.Lock()
        self._wake.acquire()
        self.grant: Optional[Grant] = None
        self.error: Optional[BaseException] = None
        self.queued = False

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or ``timeout`` seconds passed; True if woken."""
        if timeout >= _FOREVER:
            return self._wake.acquire()
        return self._wake.acquire(timeout=max(timeout, 0.0))

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake.release()


class WaitQueue(Deque[Waiter]):
    """FIFO of waiters; every method is called with the pool lock held.

    A deque subclass so that ``if waiters:`` on the hot path is a C call.
    """

    __slots__ = ()

    def push(self, waiter: Waiter) -> None:
        waiter.queued = True
        self.append(waiter)

    def serve(self, grant: Grant) -> Waiter:
        """Give ``grant`` to the oldest waiter and wake it.

        The grant is recorded before the waiter leaves the queue: if this is
        interrupted half-way, the waiter either is still queued or finds its
        grant when its wait ends, so nothing is lost.
        """
        waiter = self[0]
        waiter.grant = grant
        self.popleft()
        waiter.queued = False
        waiter._wake.release()
        return waiter

    def withdraw(self, waiter: Waiter) -> bool:
        """Withdraw a waiter that timed out; False if it was served meanwhile."""
        if not waiter.queued:
            return False
        try:
            self.remove(waiter)
        except ValueError:
            return False
        waiter.queued = False
        return True

    def fail_all(self, error: BaseException) -> None:
        while self:
            waiter = self.popleft()
            waiter.queued = False
            waiter.fail(error)
