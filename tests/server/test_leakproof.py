"""Nothing a borrower leaves behind reaches the next borrower, and a clean
return sends nothing to the server.

Each pool here has maxsize=1, so the next borrower provably gets the same
server session (checked with its thread id)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from server_helpers import query

from pymysqlpool import ConnectionPool, PooledConnection

pytestmark = pytest.mark.server

_IN_TRANS = 1

STATUS_SQL = (
    "SHOW SESSION STATUS WHERE Variable_name IN"
    " ('Bytes_received', 'Questions', 'Com_rollback', 'Com_commit', 'Com_set_option', 'Com_admin_commands')"
)


def session_status(conn: Any) -> dict[str, int]:
    """Counters of this session only: other clients of the shared server cannot move them."""
    return {name: int(value) for name, value in query(conn, STATUS_SQL)}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


def count_rows(conn: Any, table: str) -> int:
    return int(query(conn, f"SELECT COUNT(*) FROM `{table}`")[0][0])


def insert(conn: Any, table: str, value: int) -> None:
    query(conn, f"INSERT INTO `{table}` (v) VALUES (%s)", (value,))


def next_borrower(pool: ConnectionPool, thread: int) -> PooledConnection:
    conn = pool.get_conn(timeout=5)
    assert conn.thread_id() == thread, "maxsize=1: the next borrower must get the same session"
    return conn


@pytest.fixture
def table(make_table: Callable[..., str]) -> str:
    return make_table("leak")


def test_open_transaction_is_rolled_back_on_release(
    make_pool: Callable[..., ConnectionPool], table: str, admin: Any
) -> None:
    pool = make_pool(maxsize=1, autocommit=True, pool_name="leak-begin")
    conn = pool.get_conn()
    thread = conn.thread_id()
    conn.begin()
    insert(conn, table, 1)
    assert conn.server_status & _IN_TRANS
    pool.release(conn)  # no commit

    assert count_rows(admin, table) == 0
    conn = next_borrower(pool, thread)
    try:
        assert not conn.server_status & _IN_TRANS
        assert conn.get_autocommit() is True
        assert count_rows(conn, table) == 0
        insert(conn, table, 2)  # autocommit really is on again: visible at once
        assert count_rows(admin, table) == 1
    finally:
        pool.release(conn)
    assert pool.get_stats()["rollbacks_on_return"] == 1


@pytest.mark.parametrize("how", ["method", "sql"])
def test_autocommit_switched_off_is_rolled_back_and_restored(
    make_pool: Callable[..., ConnectionPool], table: str, admin: Any, how: str
) -> None:
    pool = make_pool(maxsize=1, autocommit=True, pool_name=f"leak-{how}")
    conn = pool.get_conn()
    thread = conn.thread_id()
    if how == "method":
        conn.autocommit(False)
    else:
        query(conn, "SET autocommit=0")
    insert(conn, table, 1)
    pool.release(conn)

    assert count_rows(admin, table) == 0
    conn = next_borrower(pool, thread)
    try:
        assert conn.get_autocommit() is True
        assert query(conn, "SELECT @@autocommit") == ((1,),)
        assert count_rows(conn, table) == 0
        insert(conn, table, 2)  # autocommit really is on again: visible at once
        assert count_rows(admin, table) == 1
    finally:
        pool.release(conn)
    assert pool.get_stats()["rollbacks_on_return"] == 1


def test_autocommit_off_by_sql_without_any_write_is_restored(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, autocommit=True, pool_name="leak-sql-nowrite")
    with pool.connection() as conn:
        thread = conn.thread_id()
        query(conn, "SET SESSION autocommit = OFF")
    conn = next_borrower(pool, thread)
    try:
        assert query(conn, "SELECT @@autocommit") == ((1,),)
    finally:
        pool.release(conn)


def test_autocommit_false_pool_never_shows_uncommitted_work(
    make_pool: Callable[..., ConnectionPool], table: str, admin: Any
) -> None:
    pool = make_pool(maxsize=1, autocommit=False, pool_name="leak-ac-off")
    conn = pool.get_conn()
    thread = conn.thread_id()
    assert conn.get_autocommit() is False
    insert(conn, table, 1)  # opens a transaction implicitly
    pool.release(conn)

    assert count_rows(admin, table) == 0
    conn = next_borrower(pool, thread)
    try:
        assert conn.get_autocommit() is False
        assert count_rows(conn, table) == 0
        insert(conn, table, 2)
        conn.commit()  # committed work is kept
    finally:
        pool.release(conn)
    assert count_rows(admin, table) == 1
    assert pool.get_stats()["rollbacks_on_return"] == 2


def test_autocommit_false_pool_restores_its_mode(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, autocommit=False, pool_name="leak-ac-off-mode")
    with pool.connection() as conn:
        thread = conn.thread_id()
        conn.autocommit(True)
    conn = next_borrower(pool, thread)
    try:
        assert conn.get_autocommit() is False
        assert query(conn, "SELECT @@autocommit") == ((0,),)
    finally:
        pool.release(conn)


@pytest.mark.parametrize("autocommit", [False, True])
def test_read_snapshot_is_not_carried_to_the_next_borrower(
    make_pool: Callable[..., ConnectionPool], table: str, admin: Any, autocommit: bool
) -> None:
    pool = make_pool(maxsize=1, autocommit=autocommit, pool_name=f"leak-snapshot-{autocommit}")
    conn = pool.get_conn()
    thread = conn.thread_id()
    if autocommit:
        conn.autocommit(False)  # the borrower opens a REPEATABLE READ snapshot itself
    assert count_rows(conn, table) == 0
    pool.release(conn)

    insert(admin, table, 1)  # committed by someone else after the snapshot was taken
    conn = next_borrower(pool, thread)
    try:
        assert count_rows(conn, table) == 1
    finally:
        pool.release(conn)


def test_unread_unbuffered_result_is_closed_not_handed_on(
    make_pool: Callable[..., ConnectionPool], table: str, admin: Any
) -> None:
    query(admin, f"INSERT INTO `{table}` (v) SELECT seq FROM seq_1_to_500")
    pool = make_pool(maxsize=1, pool_name="leak-unbuffered")
    conn = pool.get_conn()
    thread = conn.thread_id()
    cur = conn.cursor(pymysql.cursors.SSCursor)
    cur.execute(f"SELECT v FROM `{table}` ORDER BY id")
    assert cur.fetchone() == (1,)
    pool.release(conn)  # 499 rows unread: closed, never drained on the next borrower's time

    conn = pool.get_conn(timeout=5)
    try:
        assert conn.thread_id() != thread
        assert query(conn, "SELECT 12345") == ((12345,),)
        assert count_rows(conn, table) == 500
    finally:
        pool.release(conn)
    assert pool.get_stats()["closed_unread"] == 1


def test_clean_return_sends_nothing(make_pool: Callable[..., ConnectionPool]) -> None:
    # no pings on borrow or in the background: only the return itself is measured
    pool = make_pool(maxsize=1, validation_interval=3600, keepalive_interval=0, pool_name="leak-no-round-trip")
    conn = pool.get_conn()
    thread = conn.thread_id()
    first = session_status(conn)
    second = session_status(conn)
    per_read = delta(first, second)  # what reading the status costs by itself
    assert per_read["Bytes_received"] > 0 and per_read["Com_rollback"] == 0

    pool.release(conn)
    conn = next_borrower(pool, thread)
    third = session_status(conn)
    assert delta(second, third) == per_read  # release + borrow sent not a byte

    for _ in range(50):
        pool.release(conn)
        conn = pool.get_conn()
    fourth = session_status(conn)
    assert delta(third, fourth) == per_read
    pool.release(conn)
    assert pool.get_stats()["rollbacks_on_return"] == 0


def test_dirty_return_costs_one_rollback(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, validation_interval=3600, keepalive_interval=0, pool_name="leak-one-rollback")
    conn = pool.get_conn()
    thread = conn.thread_id()
    before = session_status(conn)
    conn.begin()
    pool.release(conn)
    conn = next_borrower(pool, thread)
    after = session_status(conn)
    pool.release(conn)
    change = delta(before, after)
    assert change["Com_rollback"] == 1
    assert change["Com_set_option"] == 0  # autocommit was never changed: not re-sent
    assert change["Com_admin_commands"] == 0


def test_reset_session_clears_session_state(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, reset_session=True, init_command="SET @from_init = 'yes'", pool_name="leak-reset")
    with pool.connection() as conn:
        thread = conn.thread_id()
        query(conn, "SET @secret = 42")
        query(conn, "CREATE TEMPORARY TABLE pt_tmp_secret (x INT)")
        query(conn, "SET autocommit = 0")
    conn = next_borrower(pool, thread)
    try:
        assert query(conn, "SELECT @secret, @from_init, @@autocommit") == ((None, "yes", 1),)
        with pytest.raises(pymysql.err.ProgrammingError):
            query(conn, "SELECT * FROM pt_tmp_secret")
    finally:
        pool.release(conn)
    assert pool.get_stats()["session_resets"] == 2  # one per return
