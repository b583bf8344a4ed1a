"""Helpers shared by the server-tier tests and their fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymysql

from support.server_env import mysql_kwargs, with_limits
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


@dataclass
class Account:
    user: str
    password: str


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
