"""Helpers for the integration tests: rows of a table, the server's counters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymysqlpool import ConnectionPool
from server.server_helpers import query


def values(admin: Any, table: str) -> list[int]:
    return [row[0] for row in query(admin, f"SELECT v FROM `{table}` ORDER BY id")]


def session_counters(pool: ConnectionPool) -> dict[str, int]:
    """Com_begin/commit/rollback and Questions (this SHOW included) of the
    session a one-connection pool lends, read on that session."""
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Com_begin', 'Com_commit', 'Com_rollback', 'Questions')"
        )
        found = {name.lower(): int(value) for name, value in cur.fetchall()}
    return found


def counted(pool: ConnectionPool, work: Callable[[], Any]) -> dict[str, int]:
    """What ``work`` sent on the pool's one connection, by the server's counters."""
    before = session_counters(pool)
    work()
    after = session_counters(pool)
    # Questions also counted the first SHOW.
    return {key: after[key] - before[key] - (1 if key == "questions" else 0) for key in after}
