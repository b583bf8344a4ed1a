"""Scenario 5: the server refuses connections beyond a per-user limit (error 1226)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from _faultkit import (
    JOIN_TIMEOUT,
    assert_consistent,
    connection_id,
    create_user,
    error_kinds,
    session_ids,
    user_kwargs,
)

from pymysqlpool import ConnectionPool, PoolTimeout
from support.throwaway_mariadb import ThrowawayMariaDB

pytestmark = pytest.mark.faults

LIMIT = 3  # MAX_USER_CONNECTIONS of the account
MAXSIZE = 6  # the pool believes it may open more than the server allows


class Sampler:
    """Watches ``total_num`` from a thread; records the largest value seen."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.highest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(100_000):  # bounded; stop() ends it long before
            self.highest = max(self.highest, self.pool.total_num)
            if self._stop.wait(0.005):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT)
        assert not self._thread.is_alive()


def limited_pool(server: ThrowawayMariaDB, make_pool: Callable[..., Any], user: str, **kwargs: Any) -> ConnectionPool:
    create_user(server, user, max_connections=LIMIT)
    pool: ConnectionPool = make_pool(maxsize=MAXSIZE, connect_timeout=2, **user_kwargs(server, user), **kwargs)
    return pool


def assert_clear_limit_error(exc: BaseException) -> None:
    """A PoolTimeout that names the server's refusal, or the refusal itself."""
    if isinstance(exc, pymysql.err.OperationalError):
        assert exc.args[0] == 1226, exc
        return
    assert isinstance(exc, PoolTimeout), repr(exc)
    text = str(exc)
    assert "1226" in text or "max_user_connections" in text, text
    assert isinstance(exc.__cause__, pymysql.err.OperationalError) and exc.__cause__.args[0] == 1226


def test_borrow_beyond_the_server_limit_fails_clearly(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any], fault_report: Callable[..., None]
) -> None:
    user = "u_limit_single"
    pool = limited_pool(throwaway_server, make_pool, user, timeout=2)
    with Sampler(pool) as sampler:
        held = [pool.get_conn() for _ in range(LIMIT)]
        for conn in held:
            connection_id(conn)
        with pytest.raises((PoolTimeout, pymysql.err.OperationalError)) as info:
            pool.get_conn(timeout=1.5)
        assert_clear_limit_error(info.value)
        during = assert_consistent(pool, all_returned=False)
        assert during["open"] == during["borrowed"] == LIMIT
        assert during["connecting"] == 0
        assert during["connect_errors"] >= 1
        assert during["borrow_timeouts"] + during["borrow_errors"] == 1
        for conn in held:
            pool.release(conn)
    assert sampler.highest <= LIMIT
    stats = assert_consistent(pool)
    assert pool.total_num == pool.available_num == LIMIT
    assert stats["connections_made"] == LIMIT
    assert len(session_ids(throwaway_server, user)) == LIMIT
    # The refused borrow left nothing behind: all LIMIT connections lend again.
    again = [pool.get_conn(timeout=2) for _ in range(LIMIT)]
    for conn in again:
        pool.release(conn)
    fault_report("max_user_connections=3, 4th borrow", 1, None, type(info.value).__name__)


def test_timeout_of_refused_dials_counts_as_borrow_timeout(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any]
) -> None:
    """docs/stats.md: ``borrow_timeouts`` counts the borrows that raised
    PoolTimeout, ``borrow_errors`` those that failed for another reason."""
    pool = limited_pool(throwaway_server, make_pool, "u_limit_counters", timeout=1)
    held = [pool.get_conn() for _ in range(LIMIT)]
    try:
        with pytest.raises(PoolTimeout):
            pool.get_conn()
        stats = pool.get_stats()
    finally:
        for conn in held:
            pool.release(conn)
    assert (stats["borrow_timeouts"], stats["borrow_errors"]) == (1, 0), stats


def test_many_threads_against_the_server_limit(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any], fault_report: Callable[..., None]
) -> None:
    """MAXSIZE threads each borrow, hold briefly and return, a few rounds: the
    ones the server refuses fail with the clear error, the counts never drift."""
    user = "u_limit_threads"
    pool = limited_pool(throwaway_server, make_pool, user, timeout=1.5)
    outcomes: list[BaseException | None] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(3):
            error: BaseException | None = None
            try:
                with pool.connection() as conn:
                    connection_id(conn)
                    time.sleep(0.2)
            except Exception as exc:
                error = exc
            with lock:
                outcomes.append(error)

    with Sampler(pool) as sampler:
        workers = [threading.Thread(target=run, daemon=True) for _ in range(MAXSIZE)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        assert not any(worker.is_alive() for worker in workers)
    assert len(outcomes) == 3 * MAXSIZE
    failed = [exc for exc in outcomes if exc is not None]
    fault_report(f"max_user_connections=3, {MAXSIZE} threads x 3 borrows", len(failed), None, error_kinds(failed))
    for exc in outcomes:
        if exc is not None:
            assert_clear_limit_error(exc)
    assert any(exc is None for exc in outcomes)
    assert sampler.highest <= LIMIT
    stats = assert_consistent(pool)
    assert pool.total_num == pool.available_num <= LIMIT
    assert stats["borrow_timeouts"] + stats["borrow_errors"] == sum(exc is not None for exc in outcomes)
    assert len(session_ids(throwaway_server, user)) == pool.total_num


def test_refused_borrower_gets_a_connection_returned_meanwhile(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any]
) -> None:
    """The pool is below maxsize, so a 4th borrower dials, and the server
    refuses (1226). When a holder then gives a connection back, the waiting
    borrower should get it rather than keep dialing until its timeout."""
    user = "u_limit_handover"
    pool = limited_pool(throwaway_server, make_pool, user, timeout=4)
    held = [pool.get_conn() for _ in range(LIMIT)]
    result: list[BaseException | int] = []

    def fourth() -> None:
        try:
            with pool.connection() as conn:
                result.append(connection_id(conn))
        except Exception as exc:
            result.append(exc)

    worker = threading.Thread(target=fourth, daemon=True)
    worker.start()
    time.sleep(0.5)  # the 4th borrower is now retrying its refused dial
    first = held.pop()
    first_id = connection_id(first)
    pool.release(first)
    worker.join(JOIN_TIMEOUT)
    assert not worker.is_alive()
    for conn in held:
        pool.release(conn)
    assert_consistent(pool)
    assert result == [first_id], f"the 4th borrower did not get the returned connection: {result!r}"
