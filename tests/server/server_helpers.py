"""Helpers shared by the server-tier tests and their fixtures."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import pymysql

from support.server_env import mysql_kwargs, with_limits
from support.sessions import user_sessions
from support.waiting import wait_until

__all__ = ["mysql_kwargs", "with_limits"]


def raw_connect(**overrides: Any) -> pymysql.connections.Connection:
    """A plain PyMySQL connection (autocommit on) outside any pool."""
    kwargs = {**mysql_kwargs(), "autocommit": True, "connect_timeout": 10, **overrides}
    return pymysql.connect(**kwargs)


def query(conn: Any, sql: str, args: Any = None) -> tuple[Any, ...]:
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(sql, args)
        return tuple(cur.fetchall())


def locked_row(table: str, limit: float) -> tuple[tuple[Any, ...], float]:
    """Read row 1 of ``table`` FOR UPDATE from a connection of its own that
    waits at most ``limit`` seconds for the lock: the rows, and how long it waited."""
    other = raw_connect(init_command=f"SET SESSION innodb_lock_wait_timeout = {limit:.0f}")
    try:
        started = time.monotonic()
        rows = query(other, f"SELECT v FROM `{table}` WHERE id = 1 FOR UPDATE")
        waited = time.monotonic() - started
        other.rollback()
    finally:
        other.close()
    return rows, waited


@dataclass
class Account:
    user: str
    password: str


def sessions_of(admin: Any, account: Account) -> set[int]:
    """Server thread ids of ``account``'s sessions, as ``admin`` sees them."""
    return user_sessions(partial(query, admin), account.user)


class ServerView:
    """What the server says about one pool's connections.

    ``connect_kwargs`` are the arguments the pool must be made with so that
    the server can tell its connections apart from everyone else's.
    """

    def __init__(self, connect_kwargs: dict[str, Any], tag: str, by_user: bool) -> None:
        self.connect_kwargs = connect_kwargs
        self.tag = tag
        self.by_user = by_user

    def thread_ids(self, via: Any) -> set[int]:
        """Server thread ids of this pool's connections, read through ``via``
        (an admin connection; one per thread, PyMySQL connections are not shared)."""
        if self.by_user:
            rows = query(via, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (self.tag,))
        else:
            rows = query(
                via,
                "SELECT DISTINCT PROCESSLIST_ID FROM performance_schema.session_connect_attrs"
                " WHERE ATTR_NAME = 'program_name' AND ATTR_VALUE = %s",
                (self.tag,),
            )
        return {int(row[0]) for row in rows}

    def count(self, via: Any) -> int:
        return len(self.thread_ids(via))

    def settles_at(self, via: Any, expected: int, timeout: float = 10.0) -> bool:
        """True once the server shows exactly ``expected`` connections. A closed
        connection leaves the process list a moment after the client let go."""
        return wait_until(lambda: self.count(via) == expected, timeout)
