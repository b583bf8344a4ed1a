"""Scenario 9: work a borrower never committed must never become visible,
also when the connection breaks in the middle of the transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from _faultkit import assert_consistent, connection_id, create_user, session_ids, user_kwargs

from pymysqlpool import ConnectionPool, PooledConnection
from support.sessions import kill_sessions
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.faults

TABLE = "fault_rollback_rows"


@pytest.fixture
def table(throwaway_server: ThrowawayMariaDB) -> Iterator[str]:
    throwaway_server.admin_query(f"DROP TABLE IF EXISTS {TABLE}")
    throwaway_server.admin_query(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB")
    yield TABLE
    if throwaway_server.is_running():
        throwaway_server.admin_query(f"DROP TABLE IF EXISTS {TABLE}")


def visible_rows(server: ThrowawayMariaDB) -> int:
    ((count,),) = server.admin_query(f"SELECT COUNT(*) FROM {TABLE}")
    return int(count)


def insert_uncommitted(conn: PooledConnection, first_id: int) -> None:
    conn.begin()
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {TABLE} VALUES (%s, 'never committed')", [(first_id,), (first_id + 1,)])
        cur.execute(f"SELECT COUNT(*) FROM {TABLE}")
        assert cur.fetchone()[0] == 2  # visible inside the transaction only


def rollback_pool(server: ThrowawayMariaDB, make_pool: Callable[..., Any], user: str, **kwargs: Any) -> ConnectionPool:
    create_user(server, user)
    pool: ConnectionPool = make_pool(maxsize=2, timeout=5, connect_timeout=2, **user_kwargs(server, user, **kwargs))
    return pool


@pytest.mark.parametrize("how", ["release", "with-raises"])
def test_uncommitted_work_is_rolled_back_on_return(
    how: str, table: str, throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any]
) -> None:
    pool = rollback_pool(throwaway_server, make_pool, f"u_rollback_{how.replace('-', '_')}")
    if how == "release":
        conn = pool.get_conn()
        thread_id = connection_id(conn)
        insert_uncommitted(conn, 1)
        pool.release(conn)
    else:
        with pytest.raises(RuntimeError), pool.connection() as conn:
            thread_id = connection_id(conn)
            insert_uncommitted(conn, 1)
            raise RuntimeError("the borrower fails before COMMIT")
    assert visible_rows(throwaway_server) == 0
    stats = assert_consistent(pool)
    assert stats["rollbacks_on_return"] == 1
    # The same session is reused, clean: autocommit back on, nothing pending.
    with pool.connection() as again:
        assert connection_id(again) == thread_id
        assert again.get_autocommit()
        with again.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {TABLE}")
            assert cur.fetchone()[0] == 0
    assert visible_rows(throwaway_server) == 0


@pytest.mark.parametrize("touch_after_break", [False, True])
def test_connection_killed_mid_transaction(
    touch_after_break: bool, table: str, throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any]
) -> None:
    user = f"u_rollback_killed_{int(touch_after_break)}"
    pool = rollback_pool(throwaway_server, make_pool, user)
    conn = pool.get_conn()
    thread_id = connection_id(conn)
    insert_uncommitted(conn, 10)
    kill_sessions(throwaway_server.admin_query, {thread_id})
    assert wait_until(lambda: thread_id not in session_ids(throwaway_server, user), timeout=5)
    if touch_after_break:
        with pytest.raises(pymysql.err.OperationalError):
            conn.commit()  # the COMMIT can never reach the killed session
    pool.release(conn)  # must not raise: the broken connection is dropped
    assert visible_rows(throwaway_server) == 0
    stats = assert_consistent(pool)
    assert pool.total_num == 0  # the slot is free
    assert stats["closed_broken"] == 1
    with pool.connection() as fresh:
        assert connection_id(fresh) != thread_id
    assert visible_rows(throwaway_server) == 0


@pytest.mark.parametrize("touch_after_break", [False, True])
def test_connection_cut_mid_transaction(
    touch_after_break: bool,
    table: str,
    throwaway_server: ThrowawayMariaDB,
    make_proxy: Callable[[int], TCPProxy],
    make_pool: Callable[..., Any],
) -> None:
    user = f"u_rollback_cut_{int(touch_after_break)}"
    proxy = make_proxy(throwaway_server.port)
    pool = rollback_pool(throwaway_server, make_pool, user, port=proxy.port)
    conn = pool.get_conn()
    thread_id = connection_id(conn)
    insert_uncommitted(conn, 20)
    proxy.cut_all()  # RST to both the client and the server
    if touch_after_break:
        with pytest.raises(pymysql.err.OperationalError):
            conn.commit()
    pool.release(conn)
    # The server notices the reset and rolls the transaction back.
    assert wait_until(lambda: thread_id not in session_ids(throwaway_server, user), timeout=10)
    assert visible_rows(throwaway_server) == 0
    stats = assert_consistent(pool)
    assert pool.total_num == 0
    assert stats["closed_broken"] == 1
    with pool.connection() as fresh:
        assert connection_id(fresh) != thread_id
    assert visible_rows(throwaway_server) == 0
