"""Interrupts and deadlines against a real server behind a fault proxy.

1. KeyboardInterrupt while the pool rolls back a returned connection (the
   ROLLBACK is stuck in a black hole): the slot must not be lost for ever.
2. Every idle connection black-holed: a borrow must end by its timeout plus
   connect_timeout however many validation pings fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from _faultkit import assert_consistent, connection_id, create_user, user_kwargs

from pymysqlpool import PoolTimeout
from support.interrupts import raise_after
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB

pytestmark = pytest.mark.faults


@pytest.mark.threads_only("KeyboardInterrupt in the returning thread; its asyncio form (cancellation): test_async_pool")
def test_keyboard_interrupt_during_rollback_on_return_loses_no_slot(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy], make_pool: Callable[..., Any]
) -> None:
    user = "u_interrupt_rollback"
    create_user(throwaway_server, user)
    proxy = make_proxy(throwaway_server.port)
    pool = make_pool(maxsize=1, timeout=5, connect_timeout=3, **user_kwargs(throwaway_server, user, port=proxy.port))
    conn = pool.get_conn()
    conn.begin()
    proxy.blackhole()
    started = time.monotonic()
    try:
        with raise_after(0.1, KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
            pool.release(conn)  # blocks in the ROLLBACK until the signal
    finally:
        proxy.heal(drop_stalled=True)
    assert time.monotonic() - started < 3, "the ROLLBACK was not interrupted"
    # Its place is kept until the kill of the cut ROLLBACK ended (bounded: 15 s).
    for _ in range(300):
        if not pool.get_stats()["killing"]:
            break
        time.sleep(0.05)
    stats = pool.get_stats()
    assert stats["kills"] + stats["kill_failures"] == 1, stats
    assert stats["open"] == stats["idle"] == stats["borrowed"] == stats["connecting"] == 0, stats
    assert stats["returns"] == 1 and stats["closed_broken"] == 1
    # The one slot is free again: the next borrow connects anew and works.
    with pool.connection(timeout=5) as again:
        assert connection_id(again) > 0
    assert_consistent(pool)


def test_borrow_ends_by_timeout_plus_connect_timeout_when_idle_connections_are_black_holed(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy], make_pool: Callable[..., Any]
) -> None:
    user = "u_deadline"
    create_user(throwaway_server, user)
    proxy = make_proxy(throwaway_server.port)
    timeout, connect_timeout = 0.5, 1.0
    pool = make_pool(
        maxsize=4,
        validation_interval=0,  # every idle connection is pinged before it is lent
        connect_timeout=connect_timeout,
        **user_kwargs(throwaway_server, user, port=proxy.port),
    )
    conns = [pool.get_conn() for _ in range(4)]
    for conn in conns:
        pool.release(conn)
    proxy.blackhole()
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.get_conn(timeout=timeout)
        took = time.monotonic() - started
    finally:
        proxy.heal(drop_stalled=True)
    # The contract (not a speed): timeout + connect_timeout, plus scheduling noise.
    assert took < timeout + connect_timeout + 0.4, f"borrow took {took:.2f} s"
    stats = pool.get_stats()
    assert stats["borrow_timeouts"] == 1 and stats["borrowed"] == 0
    with pool.connection(timeout=5) as conn:
        assert connection_id(conn) > 0
