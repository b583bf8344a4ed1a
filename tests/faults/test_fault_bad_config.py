"""Scenario 6: wrong password, unknown database, closed port.

Retrying cannot fix any of them, so each borrow must fail at once with the
driver's own error, after one connection attempt: no retry storm against a
server that is already refusing us.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from _faultkit import admin_connection, assert_consistent, global_status

from pymysqlpool import ConnectionPool
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.faults

BORROW_TIMEOUT = 10.0  # long enough that a retry loop would show up as many attempts


def bad_kwargs(kind: str, server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy]) -> dict[str, Any]:
    kwargs = {**server.connect_kwargs(), "connect_timeout": 2}
    if kind == "wrong password":
        kwargs["password"] = "not-the-password"
    elif kind == "unknown database":
        kwargs["database"] = "no_such_database_here"
    else:
        # A port held bound but not listening: connects are refused, and no
        # other process can start listening there during the test.
        proxy = make_proxy(server.port)
        proxy.refuse()
        kwargs["port"] = proxy.port
    return kwargs


@pytest.mark.parametrize(
    ("kind", "code"), [("wrong password", 1045), ("unknown database", 1049), ("closed port", 2003)]
)
def test_unfixable_connect_error_fails_once_and_fast(
    kind: str,
    code: int,
    fresh_server: ThrowawayMariaDB,
    make_proxy: Callable[[int], TCPProxy],
    make_pool: Callable[..., Any],
    fault_report: Callable[..., None],
) -> None:
    admin = admin_connection(fresh_server)  # one session: reading status opens no connection
    try:
        connections_before = global_status(admin, "Connections")
        aborted_before = global_status(admin, "Aborted_connects")
        kwargs = bad_kwargs(kind, fresh_server, make_proxy)
        pool: ConnectionPool = make_pool(maxsize=4, timeout=BORROW_TIMEOUT, **kwargs)
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as info:
            pool.get_conn()
        took = time.monotonic() - started
        attempts = global_status(admin, "Connections") - connections_before
        # The server counts an aborted connect as its thread ends, which can be
        # just after the client read the error.
        if code != 2003:
            wait_until(lambda: global_status(admin, "Aborted_connects") > aborted_before, 5)
        aborted = global_status(admin, "Aborted_connects") - aborted_before
    finally:
        admin.close()
    fault_report(f"{kind} (borrow timeout {BORROW_TIMEOUT:g} s)", 1, None, f"{info.value.args[0]} after {took:.3f} s")

    assert info.value.args[0] == code, info.value
    stats = assert_consistent(pool)
    assert stats["connect_errors"] == 1  # one attempt, no retries
    assert stats["borrow_errors"] == 1
    assert stats["borrow_timeouts"] == 0
    assert stats["borrows"] == stats["connections_made"] == 0
    assert pool.total_num == 0
    if code == 2003:
        assert attempts == aborted == 0  # nothing reached the server
    else:
        assert 1 <= attempts <= 2, f"the server saw {attempts} connection attempts"
        assert 1 <= aborted <= 2

    # The failure left no state behind: the next borrow fails the same way.
    with pytest.raises(pymysql.err.OperationalError) as again:
        pool.get_conn()
    assert again.value.args[0] == code
    assert pool.get_stats()["connect_errors"] == 2
    assert_consistent(pool)


def test_wrong_password_with_prefill_fails_in_the_constructor(
    fresh_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy]
) -> None:
    kwargs = bad_kwargs("wrong password", fresh_server, make_proxy)
    admin = admin_connection(fresh_server)
    try:
        before = global_status(admin, "Connections")
        with pytest.raises(pymysql.err.OperationalError) as info:
            ConnectionPool(maxsize=4, pre_create_num=3, timeout=BORROW_TIMEOUT, **kwargs)
        attempts = global_status(admin, "Connections") - before
    finally:
        admin.close()
    assert info.value.args[0] == 1045
    assert attempts == 1  # the first failure stops the prefill
