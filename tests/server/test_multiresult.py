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

from pymysqlpool import ConnectionPool, PooledConnection
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
