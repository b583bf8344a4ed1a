"""Giving connections back: use after return, double return, return to the
wrong pool, and connections the server killed while they were borrowed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from server_helpers import ServerView, query, raw_connect

from pymysqlpool import (
    ConnectionPool,
    ConnectionReturnedError,
    PooledConnection,
    ReturnConnectionToPoolError,
)
from support.sessions import kill_sessions
from support.waiting import wait_until

pytestmark = pytest.mark.server


def snapshot(pool: ConnectionPool) -> tuple[int, int, int, int]:
    stats = pool.get_stats()
    return pool.available_num, pool.total_num, int(stats["borrows"]), int(stats["returns"])


USES: list[tuple[str, Callable[[PooledConnection], Any]]] = [
    ("cursor", lambda c: c.cursor()),
    ("commit", lambda c: c.commit()),
    ("rollback", lambda c: c.rollback()),
    ("begin", lambda c: c.begin()),
    ("ping", lambda c: c.ping()),
    ("ping-no-reconnect", lambda c: c.ping(reconnect=False)),
    ("select_db", lambda c: c.select_db("test")),
    ("autocommit", lambda c: c.autocommit(False)),
    ("get_autocommit", lambda c: c.get_autocommit()),
    ("attribute", lambda c: c.host_info),
    ("thread_id", lambda c: c.thread_id()),
    ("query", lambda c: c.query("SELECT 1")),
    ("raw", lambda c: c.raw),
]


def test_use_after_return_raises_even_when_lent_again(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, pool_name="use-after-return")
    stale = pool.get_conn()
    raw = stale.raw
    pool.release(stale)
    assert stale.returned
    holder = pool.get_conn()
    assert holder.raw is raw  # the very same PyMySQL connection now belongs to someone else
    try:
        for name, use in USES:
            with pytest.raises(ConnectionReturnedError):
                use(stale)
                pytest.fail(f"{name} worked on a returned connection")
        with stale:  # leaving a with block of a returned proxy does nothing
            pass
        # the holder was not disturbed by any of it
        assert not holder.server_status & 1
        assert holder.get_autocommit() is True
        assert query(holder, "SELECT 1") == ((1,),)
        assert (pool.available_num, pool.total_num) == (0, 1)
    finally:
        pool.release(holder)
    assert "returned" in repr(stale)


def test_cursor_made_before_return_cannot_reach_the_next_borrower(
    make_pool: Callable[..., ConnectionPool], make_table: Callable[..., str], admin: Any
) -> None:
    table = make_table("stale_cursor")
    pool = make_pool(maxsize=1, pool_name="stale-cursor")
    stale = pool.get_conn()
    cursor = stale.cursor()
    pool.release(stale)
    holder = pool.get_conn()
    try:
        holder.begin()
        with pytest.raises((ConnectionReturnedError, pymysql.err.Error)):
            # would run inside the holder's transaction, on the holder's session
            cursor.execute(f"INSERT INTO `{table}` (v) VALUES (666)")
        holder.commit()
    finally:
        pool.release(holder)
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)


def test_double_return_changes_nothing(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, pool_name="double-return")
    conn = pool.get_conn()
    pool.release(conn)
    holder = pool.get_conn()  # the slot is lent again: a second return must not free it
    before = snapshot(pool)
    for give_back in (pool.release, lambda c: c.close()):
        with pytest.raises(ReturnConnectionToPoolError) as caught:
            give_back(conn)
        assert "already returned" in str(caught.value)
        assert snapshot(pool) == before
    assert query(holder, "SELECT 1") == ((1,),)
    pool.release(holder)
    assert snapshot(pool) == (1, 1, 2, 2)


def test_return_to_another_pool_changes_nothing(make_pool: Callable[..., ConnectionPool]) -> None:
    pool_a = make_pool(maxsize=1, pool_name="owner")
    pool_b = make_pool(maxsize=1, pre_create_num=1, pool_name="stranger")
    conn = pool_a.get_conn()
    before_a, before_b = snapshot(pool_a), snapshot(pool_b)
    with pytest.raises(ReturnConnectionToPoolError, match="owner"):
        pool_b.release(conn)
    assert (snapshot(pool_a), snapshot(pool_b)) == (before_a, before_b)
    assert not conn.returned
    assert query(conn, "SELECT 1") == ((1,),)  # still the borrower's
    pool_a.release(conn)
    assert snapshot(pool_a) == (1, 1, 1, 1)


def test_returning_a_foreign_object_is_refused(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, pool_name="foreign")
    raw = raw_connect()
    try:
        with pytest.raises(ReturnConnectionToPoolError):
            pool.release(raw)  # type: ignore[arg-type]
    finally:
        raw.close()
    assert snapshot(pool) == (0, 0, 0, 0)


# -- killed while borrowed ----------------------------------------------------


def test_killed_and_noticed_by_the_borrower_is_dropped_on_return(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any
) -> None:
    pool = make_pool(maxsize=2, pool_name="killed-noticed")
    conn = pool.get_conn()
    dead = conn.thread_id()
    kill_sessions(lambda sql: query(admin, sql), {dead}, gone_within=10.0)
    with pytest.raises(pymysql.err.OperationalError):
        query(conn, "SELECT 1")
    pool.release(conn)
    # The server hung up on it (KILLed elsewhere): nothing left to kill, the slot is free at once.
    assert (pool.available_num, pool.total_num) == (0, 0)
    stats = pool.get_stats()
    assert stats["closed_broken"] == 1 and stats["killing"] == stats["kills"] == stats["kill_failures"] == 0, stats

    with pool.connection() as conn:
        assert conn.thread_id() != dead
        assert query(conn, "SELECT 1") == ((1,),)
    assert (pool.available_num, pool.total_num) == (1, 1)
    assert server_view.count(admin) == 1


@pytest.mark.parametrize("window, held", [(0.0, 0.0), (0.2, 0.3)], ids=["always-checked", "held-past-window"])
def test_killed_while_borrowed_and_unused_is_not_lent_again(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any, window: float, held: float
) -> None:
    # A connection lent longer ago than validation_interval is checked on
    # return (a zero-timeout poll of its socket), as it would be on borrow.
    pool = make_pool(maxsize=2, pool_name="killed-silent", validation_interval=window)
    conn = pool.get_conn()
    dead = conn.thread_id()
    kill_sessions(lambda sql: query(admin, sql), {dead}, gone_within=10.0)
    time.sleep(held)
    pool.release(conn)  # the borrower never touched it after the kill
    assert (pool.available_num, pool.total_num) == (0, 0), "a killed connection was parked as idle"

    with pool.connection() as conn:  # the very next borrower gets a working one
        assert conn.thread_id() != dead
        assert query(conn, "SELECT 1") == ((1,),)
    assert (pool.available_num, pool.total_num) == (1, 1)
    assert server_view.count(admin) == 1


def test_killed_inside_a_transaction_is_dropped_on_return(
    make_pool: Callable[..., ConnectionPool], make_table: Callable[..., str], server_view: ServerView, admin: Any
) -> None:
    table = make_table("killed_tx")
    pool = make_pool(maxsize=2, pool_name="killed-tx")
    keep = pool.get_conn()  # a second connection that must survive untouched
    conn = pool.get_conn()
    dead = conn.thread_id()
    conn.begin()
    query(conn, f"INSERT INTO `{table}` (v) VALUES (1)")
    kill_sessions(lambda sql: query(admin, sql), {dead}, gone_within=10.0)
    pool.release(conn)  # the rollback on return fails: the connection is dropped
    assert (pool.available_num, pool.total_num) == (0, 1)
    assert pool.get_stats()["closed_broken"] == 1
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)

    assert query(keep, "SELECT 1") == ((1,),)
    pool.release(keep)
    with pool.connection() as conn:
        assert conn.thread_id() != dead
        assert query(conn, "SELECT 1") == ((1,),)
    assert pool.total_num == 1
    assert server_view.count(admin) == 1


@pytest.mark.threads_only("0.5.0's ping(reconnect=True); the asyncio ping never reconnects")
def test_ping_with_reconnect_replaces_a_killed_connection_in_place(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any
) -> None:
    pool = make_pool(maxsize=2, pool_name="killed-ping")
    conn = pool.get_conn()
    dead = conn.thread_id()
    kill_sessions(lambda sql: query(admin, sql), {dead}, gone_within=10.0)
    conn.ping()  # 0.5.0's default: reconnect=True
    fresh = conn.thread_id()
    assert fresh != dead
    assert query(conn, "SELECT CONNECTION_ID()") == ((fresh,),)
    assert pool.total_num == 1
    assert server_view.thread_ids(admin) == {fresh}
    pool.release(conn)
    with pool.connection() as again:
        assert again.thread_id() == fresh  # the replacement went back to the pool
    assert (pool.available_num, pool.total_num) == (1, 1)
    assert server_view.thread_ids(admin) == {fresh}


def _statement_runs(admin: Any, session: int) -> bool:
    rows = query(
        admin,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s AND INFO LIKE 'SELECT SLEEP%%'",
        (session,),
    )
    return bool(rows[0][0])


@pytest.mark.threads_only("0.5.0's ping(reconnect=True); the asyncio ping never reconnects")
def test_a_statement_abandoned_on_a_reconnected_session_is_killed_on_that_session(
    make_pool: Callable[..., ConnectionPool], admin: Any
) -> None:
    """ping(reconnect=True) puts a new session in the slot; a statement then
    cut by read_timeout is killed on the new session, not on the dead one's
    id (that KILL answers 'no such thread', which proves nothing: the
    statement would run on, and after a restart the id may be another
    client's)."""
    pool = make_pool(maxsize=1, pool_name="reconnected-kill", read_timeout=0.5)
    conn = pool.get_conn()
    dead = conn.thread_id()
    kill_sessions(lambda sql: query(admin, sql), {dead}, gone_within=10.0)
    conn.ping()  # 0.5.0's default: reconnect=True
    fresh = conn.thread_id()
    assert fresh != dead
    with pytest.raises(pymysql.err.OperationalError):
        conn.cursor().execute("SELECT SLEEP(10)")
    assert _statement_runs(admin, fresh)
    pool.release(conn)
    # MariaDB notices a client that hung up only every 5 s: gone before that, it was killed.
    assert wait_until(lambda: not _statement_runs(admin, fresh), timeout=3.0), "the abandoned statement ran on"
    assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=5.0)
    stats = pool.get_stats()
    assert stats["kills"] == 1 and stats["kill_failures"] == 0 and stats["killing"] == 0, stats
