"""The pool's lifecycle: its state (new, open, closed), the drain epoch,
the queue limit, and the current outage (a run of failed connects).

Kept in one object rather than on the pool itself: the pool's hot path reads
its own attributes, and CPython keeps attribute access fastest while an
instance has few of them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["POOL_CLOSED", "POOL_NEW", "POOL_OPEN", "POOL_PENDING", "Lifecycle", "PoolState"]


class PoolState:
    """Where a pool is in its life (``PoolCore._state``); values of their own (see ``_plans.Op``).

    ::

        NEW     --open()-->                          OPEN
        PENDING --the shell opens it: at once (threads),
                  on first use (asyncio: its constructor cannot wait)--> OPEN
        NEW, PENDING, OPEN --close()-->              CLOSED   (final: open() raises PoolClosed)

    Only an OPEN pool lends, books new connections or queues borrowers.
    """

    NEW = 30  # made with open=False: lends nothing until open()
    PENDING = 31  # made with open=True: the shell opens it as soon as it can
    OPEN = 32
    CLOSED = 33  # close() was called


# Module constants, read as globals (see _plans.Op).
POOL_NEW, POOL_PENDING, POOL_OPEN, POOL_CLOSED = PoolState.NEW, PoolState.PENDING, PoolState.OPEN, PoolState.CLOSED


class Lifecycle:
    """Mutated with the pool lock held."""

    __slots__ = (
        "epoch",
        "ever_connected",
        "failing_since",
        "failure_reported",
        "last_error",
        "max_waiting",
        "reconnect_failed",
        "reconnect_timeout",
        "shed",
        "stopped",
    )

    def __init__(
        self,
        max_waiting: Optional[int],
        reconnect_timeout: float,
        reconnect_failed: Optional[Callable[[Any], Any]],
    ) -> None:
        # False until a connect succeeds, and again when a cluster sees the
        # node down: a failed connect then ends the borrow at once.
        self.ever_connected = False
        self.epoch = 0  # bumped by drain(): connections dialed before it are replaced
        # Connections being opened when resize() lowered maxsize that are to be
        # closed on arrival, because no open one was left to mark instead.
        self.shed = 0
        # Borrowers allowed to queue at maxsize; one more fails at once (None: no limit).
        self.max_waiting = max_waiting
        self.reconnect_timeout = reconnect_timeout
        self.reconnect_failed = reconnect_failed
        self.failing_since: Optional[float] = None  # first failed connect of the current outage
        self.failure_reported = False
        self.last_error: Optional[BaseException] = None
        # The asyncio pool's: the maintenance close() stopped, in case close()
        # was cancelled before that ended and is called again.
        self.stopped: Any = None

    def connect_failed(self, exc: BaseException, started: float, now: float) -> bool:
        """Record a failed connect; True when reconnect_failed is due (once per outage)."""
        self.last_error = exc
        if self.failing_since is None:
            self.failing_since = started
            self.failure_reported = False
        if self.reconnect_failed is None or self.failure_reported:
            return False
        if now - self.failing_since < self.reconnect_timeout:
            return False
        self.failure_reported = True
        return True
