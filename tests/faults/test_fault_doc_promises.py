"""Promises of docs/ about an outage that no other fault test showed as
written (found by an audit of every promise of the docs against the tests).

docs/guide.md, "Errors": "when a server that did answer before is
unreachable, it retries with back-off until its timeout and then raises
`PoolTimeout` with the last connection error as its cause"; docs/failure-
handling.md, server restart: "borrows while the server is down wait (retrying
with back-off) up to `timeout`, then `PoolTimeout`; every borrow after the
server is back succeeds". tests/faults/test_fault_restart.py shows the load
recover but no borrow there outlives a restart this short. The adversary
here: a server that stays unreachable (its port refused by a proxy) for longer
than the borrow's timeout, after the pool had connected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from pymysqlpool import PoolTimeout
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB

pytestmark = pytest.mark.faults

TIMEOUT = 1.5
CONNECT_TIMEOUT = 2.0
SLACK = 5.0  # scheduling noise on a loaded machine: far below what a broken bound would show


def test_a_borrow_during_an_outage_retries_until_its_timeout_and_names_the_cause(
    throwaway_server: ThrowawayMariaDB,
    tcp_proxy: TCPProxy,
    make_pool: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # docs/guide.md, "Logging": "Connection failures and leaks are warnings;
    # opening, closing and replacing connections is debug."
    caplog.set_level(logging.DEBUG, logger="pymysqlpool")
    pool = make_pool(
        maxsize=2,
        timeout=TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
        **{**throwaway_server.connect_kwargs(), "port": tcp_proxy.port},
    )
    held = pool.get_conn()  # the pool has connected: a refused connect now means an outage
    try:
        tcp_proxy.refuse()
        started = time.monotonic()
        with pytest.raises(PoolTimeout) as info:
            pool.get_conn()  # nothing idle: this borrow must dial, and cannot
        took = time.monotonic() - started
        cause = info.value.__cause__
        assert isinstance(cause, pymysql.err.OperationalError) and cause.args[0] == 2003, repr(cause)
        assert took >= TIMEOUT - 0.05, f"gave up after {took:.2f} s, before its timeout: not retried"
        assert took < TIMEOUT + CONNECT_TIMEOUT + SLACK, f"took {took:.2f} s"
        stats = pool.get_stats()
        assert stats["connect_errors"] >= 2, stats  # retried with back-off, not one attempt
        assert stats["borrow_timeouts"] == 1 and stats["borrow_errors"] == 0
        assert stats["connecting"] == 0 and stats["open"] == 1

        failures = [r for r in caplog.records if r.name == "pymysqlpool" and "cannot connect" in r.getMessage()]
        assert failures and all(r.levelno == logging.WARNING for r in failures), failures
        caplog.clear()

        tcp_proxy.heal()
        with pool.connection(timeout=10) as conn, conn.cursor() as cur:  # the server is back: served
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)
    finally:
        pool.release(held)
    stats = pool.get_stats()
    assert stats["open"] == stats["idle"] == 2
    opened = [r for r in caplog.records if r.name == "pymysqlpool" and "opened a connection" in r.getMessage()]
    assert opened and all(r.levelno == logging.DEBUG for r in opened), opened
