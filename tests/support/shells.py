"""The two shells over the pool's one core, as the behaviour tests see them."""

from __future__ import annotations

from typing import Any

SHELLS = ("thread", "asyncio")


def pool_type(shell: str) -> Any:
    """The pool class of ``shell`` with the thread pool's blocking API: the
    thread pool itself, or the asyncio pool behind a blocking facade."""
    if shell == "thread":
        from pymysqlpool import ConnectionPool

        return ConnectionPool
    from support.blocking_async import BlockingAsyncPool

    return BlockingAsyncPool


def cluster_type(shell: str) -> Any:
    """The cluster class of ``shell`` with ``ClusterPool``'s blocking API."""
    if shell == "thread":
        from pymysqlpool import ClusterPool

        return ClusterPool
    from support.blocking_async import BlockingAsyncClusterPool

    return BlockingAsyncClusterPool


def is_closed(raw: Any) -> bool:
    """The driver dropped the connection's socket (PyMySQL) or stream (aiomysql)."""
    return (raw._writer if hasattr(raw, "_writer") else raw._sock) is None
