"""A demoted primary: the server turns read-only under a running pool.

The write fails with 1290 (the borrower sees it: the pool cannot undo a
statement), and the connection that saw it is closed on return instead of
being lent again, so the next borrow dials anew (behind a DNS name or a proxy
that follows the failover, that is the new primary). Uses a private server:
read_only is never set on the shared one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until


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
    # Closed, not parked (maintenance may already have opened its successor).
    assert stats["closed_wrong_node"] == 1 and stats["open"] == stats["connections_made"] - 1
    assert closes == ["closed_wrong_node"]
    server.admin_query("SET GLOBAL read_only = 0")  # the name points at a primary again
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO wn () VALUES ()")
    assert server.admin_query("SELECT COUNT(*) FROM test.wn") == ((2,),)
    pool.close()
    # a closed session leaves the process list a moment later
    assert wait_until(lambda: _processlist(server, "app") == 0, timeout=10)
    fault_report("primary demoted (1290 read-only)", 1, None, "the failing write; its connection closed on return")


@pytest.mark.parametrize("drain_on_wrong_node", [False, True])
def test_failover_behind_a_proxy(
    make_server: Callable[..., ThrowawayMariaDB],
    make_proxy: Callable[[int], Any],
    make_pool: Callable[..., Any],
    fault_report: Callable[..., None],
    drain_on_wrong_node: bool,
) -> None:
    """One address (a proxy, as a DNS name would be) moves from a demoted
    primary to the new one: each old connection fails at most one write, then
    the pool reaches the new primary; with an events object that drains on
    ``closed_wrong_node``, only the first write fails."""
    old, new = make_server(), make_server()
    for server in (old, new):
        server.admin_query("CREATE USER app@'%' IDENTIFIED BY 'app-pw'")
        server.admin_query("GRANT SELECT, INSERT ON test.* TO app@'%'")
        server.admin_query("CREATE TABLE test.fo (id INT AUTO_INCREMENT PRIMARY KEY)")
    proxy = make_proxy(old.port)

    class DrainOnWrongNode:
        def __init__(self) -> None:
            self.pool: Any = None

        def on_close(self, raw: Any, reason: str) -> None:
            if reason == "closed_wrong_node":
                self.pool.drain()

    events = DrainOnWrongNode() if drain_on_wrong_node else None
    pool = make_pool(
        maxsize=3,
        pre_create_num=3,
        events=events,
        host="127.0.0.1",
        port=proxy.port,
        user="app",
        password="app-pw",
        database="test",
    )
    if events is not None:
        events.pool = pool
    old.admin_query("SET GLOBAL read_only = 1")  # demoted ...
    proxy.target = ("127.0.0.1", new.port)  # ... and the name now leads to the new primary
    errors = 0
    for _ in range(10):
        try:
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO fo () VALUES ()")
        except pymysql.err.MySQLError as exc:
            assert exc.args[0] == 1290
            errors += 1
    # Each old connection fails at most one write; how many of the three are
    # used at all depends on how soon maintenance opens a successor (idle
    # connections are lent newest first).
    if drain_on_wrong_node:
        assert errors == 1
    else:
        assert 1 <= errors <= 3
    assert new.admin_query("SELECT COUNT(*) FROM test.fo") == ((10 - errors,),)
    assert old.admin_query("SELECT COUNT(*) FROM test.fo") == ((0,),)
    fault_report(
        f"failover behind a proxy{' (drain on wrong node)' if drain_on_wrong_node else ''}",
        errors,
        None,
        "writes that reached the demoted primary (3 connections open)",
    )
