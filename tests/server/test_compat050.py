"""Programs written for pymysql-pool 0.5.0 run unchanged against the real server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from server_helpers import ServerView, query

import pymysqlpool
from pymysqlpool import ConnectionPool
from support.sessions import kill_sessions

pytestmark = [pytest.mark.server, pytest.mark.threads_only("the 0.5.0 API is the thread pool's")]


@pytest.fixture
def pool050(make_pool: Callable[..., ConnectionPool], prefix: str) -> ConnectionPool:
    return make_pool(size=5, maxsize=10, name=f"{prefix}-050", pre_create_num=1, con_lifetime=3600, autocommit=True)


def test_constructor_keywords(pool050: ConnectionPool, prefix: str, server_view: ServerView, admin: Any) -> None:
    assert (pool050.size, pool050.maxsize, pool050.name) == (5, 10, f"{prefix}-050")
    assert (pool050.available_num, pool050.total_num) == (1, 1)
    assert server_view.count(admin) == 1


def test_constructor_positional(make_pool: Callable[..., ConnectionPool], prefix: str) -> None:
    pool = make_pool(2, 3, f"{prefix}-pos", 1, 3600, False)
    assert (pool.size, pool.maxsize, pool.name, pool.total_num) == (2, 3, f"{prefix}-pos", 1)
    with pool.get_connection() as conn:
        assert conn.get_autocommit() is False
        assert query(conn, "SELECT @@autocommit") == ((0,),)


def test_get_connection_with_pre_ping(pool050: ConnectionPool) -> None:
    conn = pool050.get_connection(retry_num=3, retry_interval=0.1, pre_ping=True)
    try:
        assert isinstance(conn, pymysqlpool.PooledConnection)
        assert query(conn, "SELECT 1") == ((1,),)
    finally:
        conn.close()
    with pool050.get_connection() as conn:  # all defaults
        assert query(conn, "SELECT 2") == ((2,),)


def test_pre_ping_replaces_a_dead_idle_connection(pool050: ConnectionPool, admin: Any) -> None:
    with pool050.get_connection() as conn:
        dead = conn.thread_id()
    kill_sessions(lambda sql: query(admin, sql), {dead}, gone_within=10.0)  # this test's own connection
    with pool050.get_connection(pre_ping=True) as conn:
        assert conn.thread_id() != dead
        assert query(conn, "SELECT 1") == ((1,),)
    assert pool050.get_stats()["closed_failed_check"] == 1
    # the maintenance thread may have opened the successor meanwhile (pre_create_num=1)
    assert 1 <= pool050.total_num <= 2


def test_close_and_with_give_back_keeping_the_socket(
    pool050: ConnectionPool, server_view: ServerView, admin: Any
) -> None:
    conn = pool050.get_connection()
    thread = conn.thread_id()
    conn.close()  # 0.5.0: back to the pool, not closed
    assert conn.returned
    assert (pool050.available_num, pool050.total_num) == (1, 1)
    assert server_view.thread_ids(admin) == {thread}

    with pool050.get_connection() as conn:
        assert conn.thread_id() == thread
    assert conn.returned
    assert (pool050.available_num, pool050.total_num) == (1, 1)

    conn = pool050.get_connection()
    assert conn.thread_id() == thread  # the same session all along
    conn.close()
    assert server_view.thread_ids(admin) == {thread}
    stats = pool050.get_stats()
    assert stats["borrows"] == stats["returns"] == 3 and stats["connections_made"] == 1


def test_dict_cursor_and_db_helpers(pool050: ConnectionPool, make_table: Callable[..., str]) -> None:
    table = make_table("items")
    with pool050.get_connection() as conn:
        cur = conn.cursor(pymysqlpool.DictCursor)
        first = cur.db_modify(f"INSERT INTO `{table}` (v) VALUES (%s)", (10,))
        assert first == {"rowcount": 1, "lastrowid": 1}
        many = cur.db_modify(f"INSERT INTO `{table}` (v) VALUES (%s)", [(20,), (30,), (40,)], exec_many=True)
        # one multi-row INSERT: lastrowid is the first id of the batch, as in MySQL
        assert many == {"rowcount": 3, "lastrowid": 2}
        rows = cur.db_query(f"SELECT id, v FROM `{table}` WHERE v >= %s ORDER BY id", (20,))
        assert list(rows) == [{"id": 2, "v": 20}, {"id": 3, "v": 30}, {"id": 4, "v": 40}]
        assert all(type(row) is dict for row in rows)

        updated = cur.db_modify(f"UPDATE `{table}` SET v = v + 1 WHERE v > %s", (15,))
        assert updated["rowcount"] == 3
        bumped = cur.db_modify(f"UPDATE `{table}` SET v = v * 2 WHERE id = %s", [(1,), (2,)], exec_many=True)
        assert bumped["rowcount"] == 2
        assert cur.db_query(f"SELECT v FROM `{table}` WHERE id = %(id)s", {"id": 1}) == [{"v": 20}]
        assert cur.db_query(f"SELECT v FROM `{table}` WHERE id = 99") in ((), [])  # still a sequence

        # the default cursor has the helpers too, and rows are tuples
        plain = conn.cursor()
        assert isinstance(plain, pymysqlpool.Cursor)
        assert plain.db_query(f"SELECT v FROM `{table}` ORDER BY id") == ((20,), (42,), (31,), (41,))
        deleted = plain.db_modify(f"DELETE FROM `{table}` WHERE v > %s", (40,))
        assert deleted == {"rowcount": 2, "lastrowid": 0}

        # PyMySQL's own DictCursor class is upgraded to the one with the helpers
        swapped = conn.cursor(pymysql.cursors.DictCursor)
        assert swapped.db_query(f"SELECT COUNT(*) AS n FROM `{table}`") == [{"n": 2}]


def test_singleton_one_pool_per_name(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any, prefix: str
) -> None:
    kwargs = {**server_view.connect_kwargs, "name": f"{prefix}-single", "maxsize": 3, "pre_create_num": 2}
    made: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def build() -> None:
        try:
            start.wait(timeout=10)
            made.append(pymysqlpool.ConnectionPoolSingleton(**kwargs))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert not errors
        assert len(made) == 8 and all(pool is made[0] for pool in made)
        shared = made[0]
        assert isinstance(shared, ConnectionPool)
        assert server_view.count(admin) == 2  # constructed once, not eight times
        with shared.get_connection() as conn:
            assert query(conn, "SELECT 1") == ((1,),)
        with pytest.raises(ValueError, match="other settings"):
            pymysqlpool.ConnectionPoolSingleton(**{**kwargs, "maxsize": 4})
    finally:
        for pool in {id(p): p for p in made}.values():
            pool.close()
    # a closed pool is not handed out again
    fresh = pymysqlpool.ConnectionPoolSingleton(**{**kwargs, "pre_create_num": 0})
    try:
        assert fresh is not made[0] and not fresh.closed
    finally:
        fresh.close()


def test_get_connection_from_pool_error_catches_a_timeout(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, pool_name="050-timeout")
    held = pool.get_connection()
    try:
        with pytest.raises(pymysqlpool.GetConnectionFromPoolError):
            pool.get_connection(retry_num=2, retry_interval=0.1)
        assert pool.get_stats()["borrow_timeouts"] == 1
    finally:
        held.close()


def test_return_connection_to_pool_error_on_double_return(pool050: ConnectionPool) -> None:
    conn = pool050.get_connection()
    conn.close()
    before = (pool050.available_num, pool050.total_num, pool050.get_stats()["returns"])
    with pytest.raises(pymysqlpool.ReturnConnectionToPoolError):
        conn.close()
    with pytest.raises(pymysqlpool.ReturnConnectionToPoolError):
        pool050.release(conn)
    assert (pool050.available_num, pool050.total_num, pool050.get_stats()["returns"]) == before


@pytest.fixture
def captured_records() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    log = logging.getLogger("pymysqlpool")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield records
    log.removeHandler(handler)
    log.setLevel(old_level)


def test_logger_is_the_pymysqlpool_logger(
    make_pool: Callable[..., ConnectionPool], captured_records: list[logging.LogRecord]
) -> None:
    assert pymysqlpool.logger is logging.getLogger("pymysqlpool")
    pool = make_pool(maxsize=1, pool_name="050-logger")
    with pool.get_connection():
        pass
    pool.close()
    assert any(r.name == "pymysqlpool" and "050-logger" in r.getMessage() for r in captured_records)
