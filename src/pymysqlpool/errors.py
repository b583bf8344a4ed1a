"""The exception tree.

Every error the pool raises on its own account derives from :class:`PoolError`.
The 0.5.0 names stay importable and are real bases of the new classes, so
``except GetConnectionFromPoolError`` keeps catching a borrow timeout.
"""

from __future__ import annotations

__all__ = [
    "ConnectionReturnedError",
    "GetConnectionFromPoolError",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "ReturnConnectionToPoolError",
    "SplitBrainError",
    "TooManyRequests",
    "WrongEventLoop",
]


class PoolError(Exception):
    """Base class of every error raised by the pool itself."""


class GetConnectionFromPoolError(PoolError):
    """No connection could be borrowed (0.5.0 name)."""


class ReturnConnectionToPoolError(PoolError):
    """A connection could not be given back: returned twice or to another pool (0.5.0 name)."""


class PoolTimeout(GetConnectionFromPoolError, TimeoutError):
    """No connection became available within the borrow timeout."""


class TooManyRequests(GetConnectionFromPoolError):
    """``max_waiting`` borrowers were already queued: refused at once (load shedding)."""


class PoolClosed(GetConnectionFromPoolError):
    """The pool was closed: it lends nothing any more."""


class ConnectionReturnedError(ReturnConnectionToPoolError):
    """A proxy was used after it was given back to its pool."""


class SplitBrainError(GetConnectionFromPoolError):
    """A cluster has more than one writable primary: writes are refused until
    all but one are made read-only (writing to both would diverge them)."""


class WrongEventLoop(PoolError, RuntimeError):
    """An asyncio pool was used from another event loop than the one it runs
    on: its connections and waiters belong to that loop. (``close()`` is
    allowed from any loop once the pool's loop is closed.)"""
