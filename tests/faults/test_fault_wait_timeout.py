"""Scenario 3: the server drops sessions idle longer than a short wait_timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from _faultkit import assert_consistent, connection_id, create_user, error_kinds, user_kwargs

from pymysqlpool import ConnectionPool
from support.throwaway_mariadb import ThrowawayMariaDB

pytestmark = pytest.mark.faults

CONNS = 3
CYCLES = 2


def idle_cycles(pool: ConnectionPool, idle: float) -> tuple[list[set[int]], list[BaseException], float]:
    """Use CONNS connections at once, then leave them idle ``idle`` seconds, CYCLES times.

    Returns the server ids seen per round, the errors users saw, and the
    longest time a first borrow after an idle period took.
    """
    rounds: list[set[int]] = []
    errors: list[BaseException] = []
    slowest = 0.0
    for cycle in range(CYCLES + 1):
        if cycle:
            time.sleep(idle)
        started = time.monotonic()
        conns = []
        try:
            for _ in range(CONNS):
                conns.append(pool.get_conn())
                if len(conns) == 1:
                    slowest = max(slowest, time.monotonic() - started)
            rounds.append({connection_id(conn) for conn in conns})
        except pymysql.err.MySQLError as exc:
            errors.append(exc)
        finally:
            for conn in conns:
                pool.release(conn)
    return rounds, errors, slowest


def make_short_wait_pool(
    server: ThrowawayMariaDB, make_pool: Callable[..., Any], user: str, wait_timeout: int, **kwargs: Any
) -> ConnectionPool:
    create_user(server, user)
    pool: ConnectionPool = make_pool(
        maxsize=CONNS,
        timeout=5,
        connect_timeout=2,
        init_command=f"SET SESSION wait_timeout={wait_timeout}",
        **user_kwargs(server, user),
        **kwargs,
    )
    return pool


def test_keepalive_outruns_wait_timeout(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any], fault_report: Callable[..., None]
) -> None:
    """keepalive_interval defaults to 60 s but is capped at half the session's
    wait_timeout (1 s here): the idle connections are pinged in time and survive."""
    pool = make_short_wait_pool(throwaway_server, make_pool, "u_wait_keepalive", 2)
    rounds, errors, slowest = idle_cycles(pool, idle=3.0)
    stats = assert_consistent(pool)
    fault_report("wait_timeout=2, keepalive on, idle 3 s", len(errors), slowest, error_kinds(list(errors)))
    assert errors == []
    assert stats["keepalive_pings"] > 0
    # Kept alive means the very same sessions, none lost to the server's timeout.
    assert rounds[1:] == rounds[:1] * CYCLES
    assert stats["closed_broken"] == stats["closed_failed_check"] == 0
    assert stats["connections_made"] == CONNS


def test_validation_covers_wait_timeout_without_keepalive(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any], fault_report: Callable[..., None]
) -> None:
    """keepalive_interval=0: the server drops the idle sessions, and the ping
    before lending finds them dead and replaces them; users see nothing."""
    pool = make_short_wait_pool(throwaway_server, make_pool, "u_wait_no_keepalive", 2, keepalive_interval=0)
    rounds, errors, slowest = idle_cycles(pool, idle=3.0)
    stats = assert_consistent(pool)
    fault_report("wait_timeout=2, keepalive off, idle 3 s", len(errors), slowest, error_kinds(list(errors)))
    assert errors == []
    assert stats["keepalive_pings"] == 0
    assert stats["closed_failed_check"] >= CONNS
    assert all(not (later & rounds[0]) for later in rounds[1:])  # every session was replaced


def test_keepalive_outruns_a_one_second_wait_timeout(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any], fault_report: Callable[..., None]
) -> None:
    """wait_timeout=1 caps the keep-alive at 0.5 s. The maintenance thread must
    wake often enough to honour it, or the server drops the idle sessions."""
    pool = make_short_wait_pool(throwaway_server, make_pool, "u_wait_one_second", 1)
    rounds, errors, slowest = idle_cycles(pool, idle=2.0)
    stats = assert_consistent(pool)
    fault_report(
        "wait_timeout=1, keepalive on, idle 2 s",
        len(errors),
        slowest,
        f"sessions lost to wait_timeout: {stats['closed_broken'] + stats['closed_failed_check']}",
    )
    assert errors == []
    assert stats["keepalive_pings"] > 0
    assert stats["closed_broken"] == stats["closed_failed_check"] == 0, stats
    assert rounds[1:] == rounds[:1] * CYCLES
