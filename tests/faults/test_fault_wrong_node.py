"""A demoted primary: the server turns read-only under a running pool.

The write fails with 1290 (the borrower sees it: the pool cannot undo a
statement), and the connection that saw it is closed on return instead of
being lent again, so the next borrow dials anew (behind a DNS name or a proxy
that follows the failover, that is the new primary). Uses a private server:
read_only is never set on the shared one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from support.throwaway_mariadb import ThrowawayMariaDB


def _processlist(server: ThrowawayMariaDB, user: str) -> int:
    return len(server.admin_query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,)))


def test_read_only_error_closes_the_connection_on_return(
    fresh_server: ThrowawayMariaDB, make_pool: Callable[..., Any], fault_report: Callable[..., None]
) -> None:
    server = fresh_server
    server.admin_query("CREATE USER app@'%' IDENTIFIED BY 'app-pw'")
    server.admin_query("GRANT SELECT, INSERT ON test.* TO app@'%'")  # no SUPER / READ_ONLY ADMIN
    server.admin_query("CREATE TABLE test.wn (id INT AUTO_INCREMENT PRIMARY KEY)")
    closes: list[str] = []

    class Closes:
        def on_close(self, raw: Any, reason: str) -> None:
            closes.append(reason)

    kwargs = {**server.connect_kwargs(), "user": "app", "password": "app-pw"}
    pool = make_pool(maxsize=2, pre_create_num=1, events=Closes(), **kwargs)
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO wn () VALUES ()")
    server.admin_query("SET GLOBAL read_only = 1")  # demoted
    conn = pool.get_conn()
    with pytest.raises(pymysql.err.MySQLError) as info, conn.cursor() as cur:
        cur.execute("INSERT INTO wn () VALUES ()")
    assert info.value.args[0] == 1290
    with conn.cursor() as cur:  # reads still work on the session
        cur.execute("SELECT COUNT(*) FROM wn")
        assert cur.fetchone() == (1,)
    pool.release(conn)
    stats = pool.get_stats()
    assert stats["closed_wrong_node"] == 1 and stats["open"] == 0
    assert closes == ["closed_wrong_node"]
    server.admin_query("SET GLOBAL read_only = 0")  # the name points at a primary again
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO wn () VALUES ()")
    assert server.admin_query("SELECT COUNT(*) FROM test.wn") == ((2,),)
    pool.close()
    deadline = time.monotonic() + 10
    while _processlist(server, "app") and time.monotonic() < deadline:
        time.sleep(0.05)  # a closed session leaves the process list a moment later
    assert _processlist(server, "app") == 0
    fault_report("primary demoted (1290 read-only)", 1, None, "the failing write; its connection closed on return")
