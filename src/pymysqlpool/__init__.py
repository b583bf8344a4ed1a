"""pymysqlpool: a thread-safe, self-healing connection pool for PyMySQL.

Runs pymysql-pool 0.5.0 programs unchanged. Importing it starts no thread,
adds no log handler beyond a NullHandler on its own logger, and changes no
warning filter.
"""

import logging
from typing import TYPE_CHECKING, Any

from ._driver import Connection
from ._version import __version__
from .cluster import ClusterPool
from .compat import ConnectionPoolSingleton
from .connection import PooledConnection
from .cursors import Cursor, DictCursor
from .errors import (
    ConnectionLeakWarning,
    ConnectionReturnedError,
    GetConnectionFromPoolError,
    PoolClosed,
    PoolError,
    PoolTimeout,
    ReturnConnectionToPoolError,
    SplitBrainError,
    TooManyRequests,
    WrongEventLoop,
)
from .pool import ConnectionPool

if TYPE_CHECKING:
    from .aio import AsyncConnectionPool, AsyncPooledConnection
    from .aiocluster import AsyncClusterPool


def __getattr__(name: str) -> Any:
    # The asyncio pool needs the optional aiomysql: imported on first use only.
    if name in ("AsyncConnectionPool", "AsyncPooledConnection"):
        from . import aio

        return getattr(aio, name)
    if name == "AsyncClusterPool":
        from . import aiocluster

        return aiocluster.AsyncClusterPool
    raise AttributeError(f"module 'pymysqlpool' has no attribute {name!r}")


logger = logging.getLogger("pymysqlpool")
logger.addHandler(logging.NullHandler())

__all__ = [
    "AsyncClusterPool",
    "AsyncConnectionPool",
    "AsyncPooledConnection",
    "ClusterPool",
    "Connection",
    "ConnectionLeakWarning",
    "ConnectionPool",
    "ConnectionPoolSingleton",
    "ConnectionReturnedError",
    "Cursor",
    "DictCursor",
    "GetConnectionFromPoolError",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "PooledConnection",
    "ReturnConnectionToPoolError",
    "SplitBrainError",
    "TooManyRequests",
    "WrongEventLoop",
    "__version__",
    "logger",
]
