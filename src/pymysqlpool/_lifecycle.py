"""The pool's lifecycle state: opened or shut, the drain epoch, the queue
limit, and the current outage (a run of failed connects).

Kept in one object rather than on the pool itself: the pool's hot path reads
its own attributes, and CPython keeps attribute access fastest while an
instance has few of them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["Lifecycle"]


class Lifecycle:
    """Mutated with the pool lock held."""

    __slots__ = (
        "autostart",
        "epoch",
        "ever_connected",
        "failing_since",
        "failure_reported",
        "last_error",
        "max_waiting",
        "opened",
        "reconnect_failed",
        "reconnect_timeout",
        "shed",
        "shut",
        "stopped",
    )

    def __init__(
        self,
        max_waiting: Optional[int],
        reconnect_timeout: float,
        reconnect_failed: Optional[Callable[[Any], Any]],
    ) -> None:
        self.opened = False
        self.shut = False  # close() was called: open() refuses
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
        # The asyncio pool's: it opens on first use (its constructor cannot
        # wait), and the maintenance close() stopped, in case close() was
        # cancelled before that ended and is called again.
        self.autostart = False
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
