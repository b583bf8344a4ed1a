"""Scenario 2: another session KILLs every idle connection of the pool."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from _faultkit import assert_consistent, connection_id, create_user, error_kinds, session_ids, user_kwargs

from pymysqlpool import ConnectionPool
from support.sessions import kill_sessions
from support.throwaway_mariadb import ThrowawayMariaDB

pytestmark = pytest.mark.faults

WARM = 4


def warm_up(pool: ConnectionPool) -> set[int]:
    """Open WARM connections at once and park them idle; return their server ids."""
    conns = [pool.get_conn() for _ in range(WARM)]
    ids = {connection_id(conn) for conn in conns}
    for conn in conns:
        pool.release(conn)
    assert pool.available_num == WARM
    return ids


def test_kill_idle_then_borrow_after_validation_interval(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any], fault_report: Callable[..., None]
) -> None:
    """Default validation_interval (0.5 s): connections idle longer than that
    are pinged before lending, so the dead ones are replaced unseen."""
    user = "u_kill_validated"
    create_user(throwaway_server, user)
    pool = make_pool(maxsize=WARM, timeout=5, connect_timeout=2, **user_kwargs(throwaway_server, user))
    old = warm_up(pool)
    kill_sessions(throwaway_server.admin_query, old, gone_within=5)
    time.sleep(pool._config.validation_interval + 0.2)  # idle past the validation window

    started = time.monotonic()
    errors: list[BaseException | None] = []
    conns = []
    first_ok: float | None = None
    for _ in range(WARM):  # hold them all: every dead idle connection gets its turn
        try:
            conn = pool.get_conn()
            conns.append(conn)
            assert connection_id(conn) not in old
            first_ok = first_ok or time.monotonic()
        except pymysql.err.MySQLError as exc:
            errors.append(exc)
    for conn in conns:
        pool.release(conn)
    fault_report(
        "KILL idle, validation_interval=0.5",
        len(errors),
        None if first_ok is None else first_ok - started,
        error_kinds(errors),
    )
    assert errors == []
    stats = assert_consistent(pool)
    assert stats["closed_failed_check"] == WARM
    assert stats["connections_made"] == 2 * WARM
    assert len(session_ids(throwaway_server, user)) == pool.total_num == WARM


@pytest.mark.parametrize("return_style", ["with", "release"])
def test_kill_idle_then_borrow_inside_validation_interval(
    return_style: str,
    throwaway_server: ThrowawayMariaDB,
    make_pool: Callable[..., Any],
    fault_report: Callable[..., None],
) -> None:
    """A large validation_interval skips the ping before lending. Two outcomes
    are acceptable: the pool notices the server hung up without a round trip
    (the socket is readable) and replaces the connection unseen, or the first
    borrower gets the dead connection and its query fails with a connection
    error. Either way at most one borrower sees an error: the pool then drops
    that connection and, suspecting a mass failure, pings every other idle
    one, so all later borrows succeed and no killed session is lent again."""
    user = f"u_kill_unvalidated_{return_style}"
    create_user(throwaway_server, user)
    pool = make_pool(
        maxsize=WARM, timeout=5, connect_timeout=2, validation_interval=60, **user_kwargs(throwaway_server, user)
    )
    old = warm_up(pool)
    kill_sessions(throwaway_server.admin_query, old, gone_within=5)
    ended = time.monotonic()

    first_error: BaseException | None = None
    try:
        if return_style == "with":
            with pool.connection() as conn:
                connection_id(conn)
        else:
            conn = pool.get_conn()
            try:
                connection_id(conn)
            finally:
                pool.release(conn)
    except pymysql.err.OperationalError as exc:
        first_error = exc
    if first_error is not None:
        # 2013 (lost connection) or 1927 (connection was killed): a connection error.
        assert first_error.args[0] in (2006, 2013, 1927), first_error

    conns = [pool.get_conn() for _ in range(WARM)]
    first_ok = time.monotonic()
    new = {connection_id(conn) for conn in conns}
    for conn in conns:
        pool.release(conn)
    fault_report(
        f"KILL idle, validation_interval=60 ({return_style})",
        int(first_error is not None),
        first_ok - ended,
        error_kinds([first_error]) or "dead sockets noticed before lending",
    )
    assert not (new & old)
    stats = assert_consistent(pool)
    # Each killed connection was closed once: found broken on return (the one
    # that failed a borrower) or before lending.
    assert stats["closed_broken"] == int(first_error is not None)
    assert stats["closed_broken"] + stats["closed_failed_check"] == WARM
    assert len(session_ids(throwaway_server, user)) == pool.total_num == WARM
