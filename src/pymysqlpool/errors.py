"""The exception tree.

Every error the pool raises on its own account derives from :class:`PoolError`.
The 0.5.0 names stay importable and are real bases of the new classes, so
``except GetConnectionFromPoolError`` keeps catching a borrow timeout.
"""

from __future__ import annotations

from pymysql.err import Error as _DriverError
from pymysql.err import InterfaceError

DriverError = _DriverError  # what the driver raises (aiomysql raises PyMySQL's errors too)

__all__ = [
    "ConnectionLeakWarning",
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


class ConnectionLeakWarning(RuntimeWarning):
    """A borrowed connection was dropped without being given back, or held
    past ``leak_timeout``. Shown by default (as SQLAlchemy's pool warnings
    are); silence with ``warnings.filterwarnings("ignore", category=ConnectionLeakWarning)``."""


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


class ConnectionReturnedError(ReturnConnectionToPoolError, InterfaceError):
    """A proxy was used after it was given back to its pool.

    Also PyMySQL's ``InterfaceError``, what PyMySQL raises for a closed
    connection: frameworks that translate driver errors (Django's
    ``django.db.InterfaceError``, SQLAlchemy's ``exc.InterfaceError``) then
    treat a given-back connection as the closed one it is."""


class SplitBrainError(GetConnectionFromPoolError):
    """A cluster has more than one writable primary: writes are refused until
    all but one are made read-only (writing to both would diverge them)."""


class WrongEventLoop(PoolError, RuntimeError):
    """An asyncio pool was used from another event loop than the one it runs
    on: its connections and waiters belong to that loop."""


def _from_driver(tb: object) -> bool:
    module = str(tb.tb_frame.f_globals.get("__name__", ""))  # type: ignore[attr-defined]
    return module.split(".")[0] in ("pymysql", "aiomysql")


def connect_failed(exc: DriverError, pool: str, where: str) -> DriverError:
    """The driver's connect error again, of the same class and code, saying
    which pool was connecting where: raise it ``from exc``. ``exc`` keeps only
    its driver frames, so the traceback from the borrower's call to the
    driver's message stays a few frames, not the pool's plan machinery."""
    tb = exc.__traceback__
    while tb is not None and not _from_driver(tb):
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb
    args = exc.args
    context = f" [pool {pool!r} connecting to {where}]"
    try:
        if len(args) == 2 and isinstance(args[1], str):
            return type(exc)(args[0], args[1] + context)
        return type(exc)(*args, context.strip())
    except Exception:  # a class that does not take its own args back
        return exc
