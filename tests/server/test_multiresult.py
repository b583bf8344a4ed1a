"""Connections returned with further result sets unread (issue 9, item 6).

A multi-statement query or a ``CALL`` answers with several result sets. A
borrower that reads only the first and gives the connection back leaves the
rest on the wire: the next borrower must get only its own rows, and PyMySQL
must not have had to clean up behind the pool (its "Previous unbuffered
result was left incomplete" is a ``UserWarning``, an error in these tests).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pymysql.cursors
import pytest
from pymysql.constants import CLIENT
from server_helpers import query, raw_connect

from pymysqlpool import ConnectionPool, ConnectionReturnedError, PooledConnection
from pymysqlpool._driver import results_pending
from support.shells import is_closed

pytestmark = pytest.mark.server


class Boom(Exception):
    pass


def _give_back(pool: ConnectionPool, conn: PooledConnection, how: str) -> None:
    if how == "release":
        pool.release(conn)
    elif how == "close":
        conn.close()
    elif how == "with":
        with conn:
            pass
    else:
        with pytest.raises(Boom), conn:
            raise Boom


@pytest.fixture
def procedure(admin: Any, prefix: str) -> Iterator[str]:
    """A stored procedure answering with three result sets."""
    name = f"{prefix}_three"
    query(admin, f"CREATE PROCEDURE `{name}`() BEGIN SELECT 'A1'; SELECT 'A2' UNION ALL SELECT 'A2b'; SELECT 'A3'; END")
    yield name
    query(admin, f"DROP PROCEDURE IF EXISTS `{name}`")


def _next_borrower_gets_only_its_own_rows(pool: ConnectionPool) -> None:
    token = f"B-{secrets.token_hex(4)}"
    conn = pool.get_conn()
    try:
        with conn.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute("SELECT %s", (token,))
            assert cur.fetchall() == ((token,),)
            assert not cur.nextset()
        assert query(conn, "SELECT 1") == ((1,),)
    finally:
        pool.release(conn)


@pytest.mark.parametrize("how", ["release", "close", "with", "with_error"])
@pytest.mark.parametrize("cursorclass", [pymysql.cursors.Cursor, pymysql.cursors.SSCursor], ids=["buffered", "ss"])
@pytest.mark.parametrize("statement", ["multi", "call"])
def test_unread_result_sets_never_reach_the_next_borrower(
    make_pool: Callable[..., ConnectionPool],
    request: pytest.FixtureRequest,
    how: str,
    cursorclass: type,
    statement: str,
) -> None:
    if statement == "call":
        sql = f"CALL `{request.getfixturevalue('procedure')}`()"
    else:
        sql = "SELECT 'A1'; SELECT 'A2' UNION ALL SELECT 'A2b'; SELECT 'A3'"
    pool = make_pool(maxsize=1, client_flag=CLIENT.MULTI_STATEMENTS, pool_name="multi")
    try:
        conn = pool.get_conn()
        cur = conn.cursor(cursorclass)
        cur.execute(sql)
        assert cur.fetchone() == ("A1",)  # the rest of this set and the next sets stay unread
        _give_back(pool, conn, how)
        for _ in range(2):
            _next_borrower_gets_only_its_own_rows(pool)
        stats = pool.get_stats()
        assert stats["open"] == stats["idle"] == 1
        if cursorclass is pymysql.cursors.Cursor:
            # The first set was read whole: the rest waits at a packet boundary,
            # so it is drained and the session kept -- not taken for a dead server.
            assert stats["closed_broken"] == stats["closed_unread"] == 0
            assert stats["connections_made"] == 1
        else:  # stopped inside an unbuffered set: closed, never drained
            assert stats["closed_unread"] == 1 and stats["closed_broken"] == 0
    finally:
        pool.close()  # before the procedure fixture drops the procedure
    _forget(cur)


def _forget(cur: Any) -> None:
    """If the pool closed the connection instead of draining it, PyMySQL's
    result object still believes rows are coming and, once collected, tries
    to read them from the closed socket (an "exception ignored" in __del__,
    at a random later moment). Closed is a correct outcome; silence that."""
    result = cur._result
    if result is not None and result.unbuffered_active and is_closed(result.connection):
        result.unbuffered_active = False


@pytest.mark.threads_only("aiomysql's SSCursor.nextset() reads the next set buffered: its fetchone() then returns None")
def test_second_result_set_half_read(make_pool: Callable[..., ConnectionPool]) -> None:
    """Moved on with nextset() and stopped in the middle of the second set."""
    pool = make_pool(maxsize=1, client_flag=CLIENT.MULTI_STATEMENTS, pool_name="multi-half")
    conn = pool.get_conn()
    cur = conn.cursor(pymysql.cursors.SSCursor)
    cur.execute("SELECT 'A1'; SELECT 'A2' UNION ALL SELECT 'A2b'; SELECT 'A3'")
    assert cur.fetchall() == [("A1",)]
    assert cur.nextset()
    assert cur.fetchone() == ("A2",)
    pool.release(conn)
    _next_borrower_gets_only_its_own_rows(pool)
    pool.close()
    _forget(cur)


@pytest.mark.threads_only("the thread pool's own cursor classes (pymysqlpool.cursors)")
@pytest.mark.parametrize("cursorclass", [pymysql.cursors.Cursor, pymysql.cursors.DictCursor], ids=["tuple", "dict"])
def test_cursor_reads_its_pending_sets_on_execute_and_close(
    make_pool: Callable[..., ConnectionPool], cursorclass: type
) -> None:
    """The cursors ask nextset() only when a further set can be there (a
    speed-up, see cursors.Cursor): a cursor reused or closed with sets unread
    still reads them itself, leaving the connection at a packet boundary."""
    pool = make_pool(maxsize=1, client_flag=CLIENT.MULTI_STATEMENTS, pool_name="multi-cursor")
    row = (lambda v: (v,)) if cursorclass is pymysql.cursors.Cursor else (lambda v: {"v": v})
    try:
        with pool.connection() as conn:
            cur = conn.cursor(cursorclass)
            cur.execute("SELECT 'A1' AS v; SELECT 'A2' AS v; SELECT 'A3' AS v")
            assert list(cur.fetchall()) == [row("A1")]
            cur.execute("SELECT 'B' AS v")  # A2 and A3 read first, by the cursor
            assert list(cur.fetchall()) == [row("B")]
            assert not cur.nextset()
            cur.execute("SELECT 'C1' AS v; SELECT 'C2' AS v")
            cur.close()
            assert not results_pending(conn.raw)  # read by close(), not left to the next command
            with conn.cursor(cursorclass) as other:
                other.execute("SELECT %s AS v", ("D",))
                assert list(other.fetchall()) == [row("D")]
            cur.close()  # closing twice does nothing
        stats = pool.get_stats()
        assert stats["closed_unread"] == stats["closed_broken"] == 0 and stats["connections_made"] == 1
    finally:
        pool.close()


@pytest.mark.threads_only("the thread pool's own cursor classes (pymysqlpool.cursors)")
def test_cursor_kept_after_return_sends_nothing(make_pool: Callable[..., ConnectionPool]) -> None:
    """execute() skips PyMySQL's nextset() check on a fresh cursor: the
    statement's own check refuses a cursor whose borrow ended, with or
    without arguments, before anything reaches the next borrower's session."""
    pool = make_pool(maxsize=1, pool_name="kept-cursor")
    try:
        conn = pool.get_conn()
        cur = conn.cursor()
        used = conn.cursor()
        used.execute("SELECT 1")
        pool.release(conn)
        holder = pool.get_conn()
        try:
            for stale in (cur, used):
                with pytest.raises(ConnectionReturnedError):
                    stale.execute("SET @kept = 1")
                with pytest.raises(ConnectionReturnedError):
                    stale.execute("SET @kept = %s", (1,))
            assert query(holder, "SELECT @kept") == ((None,),)
        finally:
            pool.release(holder)
    finally:
        pool.close()


def test_pymysql_cleanup_warnings_are_errors_here() -> None:
    """The guard the tests above rely on: PyMySQL cleaning up a half-read
    unbuffered result behind its user fails the test instead of warning."""
    conn = raw_connect()
    try:
        cur = conn.cursor(pymysql.cursors.SSCursor)
        cur.execute("SELECT 1 UNION ALL SELECT 2")
        assert cur.fetchone() == (1,)
        with pytest.raises(UserWarning, match="unbuffered"):
            conn.query("SELECT 3")
        assert cur.fetchall() == [(2,)]  # read to the end, as the warning asks
    finally:
        conn.close()
