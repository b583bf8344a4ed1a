"""Waiters: borrowers queued while the pool is at ``maxsize``.

The queue is the core's; how a waiter sleeps is its shell's: a thread sleeps
on a lock of its own, a task on a future of its own. Either way a returned
connection wakes exactly one borrower, the oldest (FIFO, no thundering herd,
no polling).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Deque, List, Optional, Union

from ._slot import Slot

# Lock.acquire() rejects longer timeouts (OverflowError): wait without one.
_FOREVER = threading.TIMEOUT_MAX


class DialToken:
    """A right to dial: one slot of ``maxsize`` reserved for a connection
    being opened. ``live`` until it is used or given back, so giving it back
    twice (an interrupted borrow's clean-up) is harmless. ``since`` (when it
    was given out) lets the maintenance tell one an interrupt orphaned.
    ``unfinished``: the slot of a dial an interrupt cut after the server made
    its session, to be killed in the token's place when it is given back."""

    __slots__ = ("live", "since", "unfinished")

    def __init__(self, since: float) -> None:
        self.live = True
        self.since = since
        self.unfinished: Optional[Slot] = None


Grant = Union[Slot, DialToken]


class Waiter:
    """A queued borrower. The core records ``grant`` (or ``error``) before it
    calls ``wake``, so a waiter always finds what it was given."""

    __slots__ = ("backoff", "error", "grant", "queued", "since", "wake")

    def __init__(self, since: float, wake: Callable[[], Any]) -> None:
        self.since = since  # when it started waiting (monotonic)
        self.grant: Optional[Grant] = None
        self.error: Optional[BaseException] = None
        self.queued = False
        self.backoff = False  # waits out a connect's back-off: takes a returned slot, never a right to dial
        self.wake = wake

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.wake()


class ThreadWaiter(Waiter):
    """A waiter that is a blocked thread."""

    __slots__ = ("_lock",)

    def __init__(self, since: float) -> None:
        lock = threading.Lock()
        lock.acquire()
        super().__init__(since, lock.release)
        self._lock = lock

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or ``timeout`` seconds passed; True if woken."""
        if timeout >= _FOREVER:
            return self._lock.acquire()
        return self._lock.acquire(timeout=max(timeout, 0.0))


class WaitQueue(Deque[Waiter]):
    """FIFO of waiters; every method is called with the pool lock held.

    A deque subclass so that ``if waiters:`` on the hot path is a C call.
    Beside the queue, ``watchers``: callers of ``close(timeout)`` and
    ``wait()`` (``_closing.py``), woken together whenever the counts of open
    or killing connections change, or the pool closes. Kept here, not on the
    pool: a pool attribute more costs every borrow (see tests/fast/test_shape.py).
    """

    __slots__ = ("watchers",)

    def __init__(self) -> None:
        super().__init__()
        self.watchers: List[Waiter] = []

    def wake_watchers(self) -> None:
        """Wake every watcher once (a thread's waiter cannot be woken twice)."""
        watchers = self.watchers
        if watchers:
            self.watchers = []
            for watcher in watchers:
                watcher.wake()

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
        """The pool closed: fail the queued borrowers, wake the watchers."""
        while self:
            waiter = self.popleft()
            waiter.queued = False
            waiter.fail(error)
        self.wake_watchers()
