"""pymysqlpool: a thread-safe, self-healing connection pool for PyMySQL.

Runs pymysql-pool 0.5.0 programs unchanged. Importing it starts no thread,
adds no log handler beyond a NullHandler on its own logger, and changes no
warning filter.
"""

import logging

from ._driver import Connection
from ._version import __version__
from .cluster import ClusterPool
from .compat import ConnectionPoolSingleton
from .connection import PooledConnection
from .cursors import Cursor, DictCursor
from .errors import (
    ConnectionReturnedError,
    GetConnectionFromPoolError,
    PoolClosed,
    PoolError,
    PoolTimeout,
    ReturnConnectionToPoolError,
    SplitBrainError,
    TooManyRequests,
)
from .pool import ConnectionPool

logger = logging.getLogger("pymysqlpool")
logger.addHandler(logging.NullHandler())

__all__ = [
    "ClusterPool",
    "Connection",
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
    "__version__",
    "logger",
]
