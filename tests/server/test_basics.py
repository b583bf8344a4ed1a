"""Borrowing against the real server: the README quick start, the proxy's
forwarding, ``with pool.connection()``, the size counters, maxsize and
con_lifetime, each checked from the server's side too."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from server_helpers import ServerView, query

import pymysqlpool
from pymysqlpool import ConnectionPool, PooledConnection
from support.doc_blocks import blocks, localize
from support.waiting import wait_until

pytestmark = pytest.mark.server


def test_readme_quick_start_verbatim() -> None:
    # The README's first block, run as it is written, pointed at MYSQL_HOST/MYSQL_PORT.
    (code,) = [code for path, _, code in blocks() if path.name == "README.md" and "pool_name='mypool'" in code]
    names: dict = {}
    exec(compile(localize(code), "README.md", "exec"), names)
    pool = names["pool"]
    try:
        assert names["result"] == (1,)
        assert type(names["conn"]) is PooledConnection
        assert pool.name == "mypool"
        assert pool.total_num == 2 and pool.available_num == 2  # the borrow used a pre-created one
    finally:
        pool.close()


@pytest.mark.threads_only("PooledConnection forwards PyMySQL; the asyncio proxy's forwarding is in test_async_pool")
def test_proxy_forwards_the_pymysql_connection(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=2, pool_name="forwarding")
    conn = pool.get_conn()
    try:
        assert type(conn) is PooledConnection
        assert isinstance(conn.raw, pymysql.connections.Connection)
        # plain attributes and methods reach PyMySQL
        assert conn.host_info == conn.raw.host_info and "socket" in conn.host_info
        assert conn.get_server_info() == conn.raw.get_server_info() != ""
        assert conn.thread_id() == query(conn, "SELECT CONNECTION_ID()")[0][0]
        assert conn.get_autocommit() is True
        conn.ping()
        conn.ping(reconnect=False)
        conn.select_db(conn.db.decode() if isinstance(conn.db, bytes) else conn.db)

        with conn.cursor() as cur:
            cur.execute("SELECT 1 + 1")
            assert cur.fetchone() == (2,)
            assert isinstance(cur, pymysql.cursors.Cursor)

        conn.begin()
        assert conn.server_status & 1  # IN_TRANS, straight from PyMySQL
        conn.rollback()
        assert not conn.server_status & 1
        conn.begin()
        conn.commit()
        assert not conn.server_status & 1

        conn.autocommit(False)
        assert conn.get_autocommit() is False
        assert query(conn, "SELECT @@autocommit") == ((0,),)
        conn.autocommit(True)
        assert query(conn, "SELECT @@autocommit") == ((1,),)
    finally:
        pool.release(conn)


@pytest.mark.threads_only("PooledConnection's own methods; the asyncio proxy's forwarding is in test_async_pool")
def test_every_public_pymysql_method_is_a_method_of_the_proxy(make_pool: Callable[..., ConnectionPool]) -> None:
    public = {
        name
        for name, value in vars(pymysql.connections.Connection).items()
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))
    }
    own = {name for klass in PooledConnection.__mro__[:-1] for name in vars(klass)}
    assert public - own == set()  # none reached through __getattr__'s failed lookup first
    pool = make_pool(maxsize=1, pool_name="forwarders")
    conn = pool.get_conn()
    raw = conn.raw
    try:
        assert conn.escape("it's") == raw.escape("it's") == "'it\\'s'"
        assert conn.escape(("a", 1), mapping=None) == raw.escape(("a", 1), mapping=None) == "('a',1)"  # a keyword
        assert conn.thread_id() == raw.thread_id() == query(conn, "SELECT CONNECTION_ID()")[0][0]
        assert (conn.get_host_info(), conn.get_proto_info()) == (raw.get_host_info(), raw.get_proto_info())
        assert conn.character_set_name() == raw.character_set_name()
        assert conn.open is True
        with conn.cursor() as cur:
            cur.execute("DO 1")
        assert conn.affected_rows() == raw.affected_rows() == 0
        assert conn.insert_id() == raw.insert_id() == 0
        assert conn.show_warnings() == ()
        with pytest.raises(TypeError):
            conn.thread_id(1)  # PyMySQL's own signature still applies
    finally:
        pool.release(conn)
    for name in ("escape", "thread_id", "show_warnings", "open"):
        with pytest.raises(pymysqlpool.ConnectionReturnedError):
            getattr(conn, name)() if name != "open" else conn.open
    assert raw.open  # the pool kept it


def test_with_block_gives_back(make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any) -> None:
    pool = make_pool(maxsize=3, pool_name="with-block")
    with pool.connection() as conn:
        assert pool.available_num == 0 and pool.total_num == 1
        first_thread = conn.thread_id()
        assert query(conn, "SELECT 7") == ((7,),)
    assert conn.returned
    assert pool.available_num == 1 and pool.total_num == 1
    with pool.connection() as again:
        assert again.thread_id() == first_thread  # the same server session, reused
    stats = pool.get_stats()
    assert stats["borrows"] == stats["returns"] == 2
    assert stats["rollbacks_on_return"] == 0
    assert server_view.count(admin) == 1


def test_with_block_that_raises_rolls_back_and_gives_back(
    make_pool: Callable[..., ConnectionPool], make_table: Callable[..., str], admin: Any
) -> None:
    table = make_table("rows")
    pool = make_pool(maxsize=2, pool_name="with-raises")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), pool.connection() as conn:
        conn.begin()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` (v) VALUES (%s)", (41,))
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            assert cur.fetchone() == (1,)  # visible inside its own transaction
        raise Boom()

    assert conn.returned
    assert pool.available_num == 1 and pool.total_num == 1
    assert pool.get_stats()["rollbacks_on_return"] == 1
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)  # nobody ever sees it
    with pool.connection() as conn:
        assert query(conn, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)
        assert not conn.server_status & 1


def test_with_block_that_raises_without_transaction_sends_no_rollback(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, pool_name="with-raises-clean")
    with pytest.raises(ValueError), pool.connection() as conn:
        query(conn, "SELECT 1")
        raise ValueError("outside any transaction")
    assert pool.get_stats()["rollbacks_on_return"] == 0
    assert pool.available_num == 1 and pool.total_num == 1


def test_counters_are_exact_and_match_the_server(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any
) -> None:
    pool = make_pool(maxsize=4, pre_create_num=2, pool_name="counters")
    # the constructor opened them: both sides agree before any borrow
    assert (pool.available_num, pool.total_num) == (2, 2)
    assert server_view.count(admin) == 2
    assert pool.get_stats()["connections_made"] == 2

    a = pool.get_conn()
    assert (pool.available_num, pool.total_num) == (1, 2)
    b = pool.get_conn()
    assert (pool.available_num, pool.total_num) == (0, 2)
    c = pool.get_conn()  # opened on demand
    assert (pool.available_num, pool.total_num) == (0, 3)
    assert server_view.count(admin) == 3
    assert len({a.thread_id(), b.thread_id(), c.thread_id()}) == 3
    assert server_view.thread_ids(admin) == {a.thread_id(), b.thread_id(), c.thread_id()}

    pool.release(b)
    assert (pool.available_num, pool.total_num) == (1, 3)
    c.close()
    with a:
        pass
    assert (pool.available_num, pool.total_num) == (3, 3)
    assert server_view.count(admin) == 3
    stats = pool.get_stats()
    assert stats["borrows"] == stats["returns"] == 3
    assert (stats["open"], stats["idle"], stats["borrowed"], stats["waiting"]) == (3, 3, 0, 0)


def test_maxsize_caps_borrows_and_the_server(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any
) -> None:
    pool = make_pool(maxsize=2, pool_name="maxsize")
    held = [pool.get_conn(), pool.get_conn()]
    with pytest.raises(pymysqlpool.PoolTimeout) as caught:
        pool.get_conn(timeout=0.2)
    assert isinstance(caught.value, pymysqlpool.GetConnectionFromPoolError)
    assert isinstance(caught.value, TimeoutError)
    with pytest.raises(pymysqlpool.PoolTimeout):
        pool.get_conn(timeout=0)
    assert (pool.available_num, pool.total_num) == (0, 2)
    assert server_view.count(admin) == 2
    stats = pool.get_stats()
    assert stats["borrow_timeouts"] == 2 and stats["borrows"] == 2 and stats["waiting"] == 0

    pool.release(held.pop())
    again = pool.get_conn(timeout=0.2)  # a freed slot is lent again
    assert (pool.available_num, pool.total_num) == (0, 2)
    pool.release(again)
    pool.release(held.pop())
    assert server_view.count(admin) == 2


def test_idle_connection_past_con_lifetime_is_replaced_one_for_one(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any
) -> None:
    pool = make_pool(maxsize=4, size=4, pre_create_num=1, con_lifetime=1, pool_name="lifetime-idle")
    with pool.connection() as conn:
        old = conn.thread_id()
    assert server_view.thread_ids(admin) == {old}

    # Nobody borrows: the maintenance thread retires the connection at its
    # lifetime and opens one successor (pre_create_num=1), never more.
    seen: set[int] = set()
    most = 0
    deadline = time.monotonic() + 3.5  # covers two or three lifetimes at a 1 s maintenance tick
    for _ in range(200):
        if time.monotonic() > deadline:
            break
        ids = server_view.thread_ids(admin)
        seen |= ids
        most = max(most, len(ids))
        time.sleep(0.05)
    assert old not in server_view.thread_ids(admin)
    assert seen - {old}, "the retired connection was not replaced"
    assert most <= 1, f"retiring 1 idle connection left {most} open on the server (pre_create_num=1)"
    assert pool.total_num <= 1
    assert pool.get_stats()["closed_lifetime"] >= 1

    with pool.connection() as conn:
        new = conn.thread_id()
        assert query(conn, "SELECT 1") == ((1,),)
    assert new != old
    assert pool.total_num == 1
    assert server_view.count(admin) == 1


def test_borrowed_connection_past_con_lifetime_is_closed_on_return(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any
) -> None:
    pool = make_pool(maxsize=1, con_lifetime=1, pool_name="lifetime-borrowed")
    conn = pool.get_conn()
    old = conn.thread_id()
    time.sleep(1.1)  # longer than any jittered lifetime (0.95..1 s)
    pool.release(conn)
    assert pool.get_stats()["closed_lifetime"] == 1
    # The socket was really closed (the maintenance thread may already have
    # opened the successor of the retired connection, so count by thread id).
    assert wait_until(lambda: old not in server_view.thread_ids(admin), timeout=5.0)
    with pool.connection() as conn:
        assert conn.thread_id() != old
        assert query(conn, "SELECT 1") == ((1,),)
    assert pool.total_num == 1
    assert server_view.count(admin) == 1
