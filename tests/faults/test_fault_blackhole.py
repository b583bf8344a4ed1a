"""Scenario 4: the network black-holes every packet, then heals."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from _faultkit import JOIN_TIMEOUT, assert_consistent, connection_id, create_user, error_kinds, session_ids, user_kwargs

from pymysqlpool import ConnectionPool, PoolTimeout
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.faults

WARM = 3
BORROWERS = 4


def borrow_and_query(pool: ConnectionPool) -> None:
    with pool.connection() as conn:
        connection_id(conn)


def test_blackhole_then_heal(
    throwaway_server: ThrowawayMariaDB,
    make_proxy: Callable[[int], TCPProxy],
    make_pool: Callable[..., Any],
    fault_report: Callable[..., None],
) -> None:
    user = "u_blackhole"
    create_user(throwaway_server, user)
    proxy = make_proxy(throwaway_server.port)
    pool = make_pool(
        maxsize=BORROWERS,
        timeout=2,
        connect_timeout=1,
        # The pool bounds only its own waits; the borrower's query needs its own
        # limit, or a SELECT sent into the black hole would wait forever.
        read_timeout=3,
        write_timeout=3,
        **user_kwargs(throwaway_server, user, port=proxy.port),
    )
    conns = [pool.get_conn() for _ in range(WARM)]
    for conn in conns:
        pool.release(conn)
    conns.clear()
    time.sleep(pool._config.validation_interval + 0.1)  # idle ones are pinged before lending

    proxy.blackhole()
    outcomes: list[BaseException | None] = [None] * BORROWERS
    finished = [False] * BORROWERS

    def attempt(index: int) -> None:
        try:
            borrow_and_query(pool)
        except Exception as exc:
            outcomes[index] = exc
        finished[index] = True

    workers = [threading.Thread(target=attempt, args=(i,), daemon=True) for i in range(BORROWERS)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for worker in workers:
        worker.join(max(deadline - time.monotonic(), 0.0))
    hung = [worker.name for worker in workers if worker.is_alive()]
    # Heal before asserting, so a failure does not leave threads stuck in the hole.
    proxy.heal()
    healed = time.monotonic()
    assert hung == [], f"borrowers still blocked in the black hole: {hung}"
    assert all(finished)
    errors = [exc for exc in outcomes if exc is not None]
    assert len(errors) == BORROWERS, "a borrow succeeded through a black hole"
    for exc in errors:
        assert isinstance(exc, (PoolTimeout, pymysql.err.OperationalError)), repr(exc)
    during = assert_consistent(pool)
    assert during["borrow_timeouts"] + during["borrow_errors"] >= 1

    recovered: float | None = None
    for _ in range(50):  # bounded: 50 tries of at most timeout=2 s each, expected to need one
        try:
            borrow_and_query(pool)
        except (PoolTimeout, pymysql.err.OperationalError):
            time.sleep(0.1)
            continue
        recovered = time.monotonic()
        break
    fault_report(
        "black hole (4 borrowers), then heal",
        len(errors),
        None if recovered is None else recovered - healed,
        error_kinds(errors),
    )
    assert recovered is not None, "the pool did not recover after the network healed"

    conns = [pool.get_conn() for _ in range(WARM)]
    for conn in conns:
        connection_id(conn)
        pool.release(conn)
    assert_consistent(pool)
    # The server's view matches the pool's once the half-open connections
    # released by heal() have been closed.
    assert wait_until(lambda: len(session_ids(throwaway_server, user)) == pool.total_num, timeout=10), (
        f"pool counts {pool.total_num}, server has {len(session_ids(throwaway_server, user))}"
    )
