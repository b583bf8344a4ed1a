"""Behaviours the fast tier did not pin down, found by mutation testing of the
core's plan modules (scripts/mutate.py): each test here failed against a
mutant that every other test let pass."""

from __future__ import annotations

from typing import Any, Callable, List

import pymysql
import pytest

from pymysqlpool import ConnectionPool, PoolTimeout

from .fakes import FakeConnection, FakeServer
from .test_state_machine import FakeClock


class _SlowConnects:
    """A connection_factory whose every connect, made or failed, takes
    ``seconds`` of the pool's (fake) clock."""

    def __init__(self, server: FakeServer, clock: FakeClock, seconds: float) -> None:
        self.server, self.clock, self.seconds = server, clock, seconds

    def __call__(self, **kwargs: Any) -> FakeConnection:
        self.clock.now += self.seconds
        return self.server(**kwargs)


def test_connect_ms_adds_the_time_of_every_connect_made_or_failed(server: FakeServer) -> None:
    """docs/stats.md: ``connect_ms`` is the total time spent opening
    connections; a failed attempt's time is spent too."""
    clock = FakeClock()
    with ConnectionPool(maxsize=3, size=0, connection_factory=_SlowConnects(server, clock, 0.25)) as pool:
        pool._use_clock(clock)
        a, b = pool.get_conn(), pool.get_conn()
        assert pool.get_stats()["connect_ms"] == pytest.approx(500.0)
        server.fail_next = 1
        with pytest.raises(PoolTimeout):
            pool.get_conn(timeout=0)  # the failed connect ends the borrow: no time left to retry
        stats = pool.get_stats()
        assert stats["connect_errors"] == 1
        assert stats["connect_ms"] == pytest.approx(750.0)
        a.close()
        b.close()


def test_a_retry_s_validation_gets_only_what_is_left_of_timeout_plus_connect_timeout(server: FakeServer) -> None:
    """README/borrow_plan: every network wait of a borrow is cut to what is
    left of ``timeout + connect_timeout``. The first validation ping gets all
    of connect_timeout; the one after a failed validation only the rest."""
    clock = FakeClock()
    with ConnectionPool(
        maxsize=3, size=0, connect_timeout=10, validation_interval=0.5, connection_factory=server
    ) as pool:
        pool._use_clock(clock)
        held = [pool.get_conn(), pool.get_conn()]
        for conn in held:
            conn.close()
        budgets: List[float] = []

        def dead_ping(raw: FakeConnection) -> Callable[..., None]:
            def ping(reconnect: bool = False) -> None:
                budgets.append(raw._read_timeout)  # the pool caps the socket waits for the ping here
                clock.now += 5.0  # a slow, failing answer
                raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")

            return ping

        for raw in server.live_snapshot():
            raw.ping = dead_ping(raw)
        clock.now += 1.0  # past the validation window: both are pinged before use
        conn = pool.get_conn(timeout=2)  # ends by t+2+10: after 5 s spent, 7 are left
        assert budgets == [pytest.approx(10.0), pytest.approx(7.0)]
        assert pool.get_stats()["closed_failed_check"] == 2
        conn.close()


def test_a_return_to_a_closed_pool_closes_without_a_reset(server: FakeServer) -> None:
    """A connection given back after close() is closed, not cleaned first:
    no ROLLBACK (the server rolls back what a closed session left), so a
    frozen server cannot hold the return for connect_timeout."""
    pool = ConnectionPool(maxsize=2, size=0, connection_factory=server)
    conn = pool.get_conn()
    fake = conn.raw
    conn.begin()  # a transaction left open
    assert fake.in_trans
    pool.close()
    conn.close()
    assert fake.disposed and fake.rollbacks == 0
    stats = pool.get_stats()
    assert stats["closed_on_pool_close"] == 1 and stats["rollbacks_on_return"] == 0
