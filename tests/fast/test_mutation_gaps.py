"""Behaviours the fast tier did not pin down, found by mutation testing of the
core's plan modules (scripts/mutate.py): each test here failed against a
mutant that every other test let pass."""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import pymysql
import pytest

from pymysqlpool import ConnectionPool, PoolTimeout
from pymysqlpool._plans import CLOSE, DIAL, KILL, RESET
from pymysqlpool._slot import GONE, KILLING
from support.leaks import LeakWarnings
from support.waiting import wait_until

from .fakes import FakeConnection, FakeServer
from .test_core_machine import Clock, Shell, borrowed, make_core
from .test_state_machine import FakeClock
from .test_steering import steering


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


def test_a_long_borrow_is_reported_once_however_many_rounds_see_it(
    server: FakeServer, leak_warnings: LeakWarnings
) -> None:
    """docs/stats.md: ``leaks_detected`` counts borrows reported by
    leak_timeout; a borrow still out at the next rounds is not reported again."""
    clock = FakeClock()
    with ConnectionPool(maxsize=2, size=0, leak_timeout=1.0, keepalive_interval=1.5, connection_factory=server) as pool:
        pool._use_clock(clock)
        stays, goes = pool.get_conn(), pool.get_conn()
        witness = stays.raw  # the older idle one: borrows take the newest
        stays.close()
        goes.close()
        clock.now += 0.1  # a borrow after the last return: a real clock moves on between them
        held = pool.get_conn()
        assert held.raw is not witness
        clock.now += 2.0
        assert wait_until(lambda: pool.get_stats()["leaks_detected"] == 1)
        for _ in range(2):
            # Each keep-alive ping of the idle one ends a round that looked at the long borrow again.
            pings = witness.pings
            clock.now += 2.0
            assert wait_until(lambda pings=pings: witness.pings > pings)
        assert pool.get_stats()["leaks_detected"] == 1
        assert len(leak_warnings.messages) == 1
        held.close()


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


def test_a_reset_cut_mid_answer_by_an_error_is_killed_in_its_place() -> None:
    """CHANGELOG: the return's reset cut after its command was sent -- timed
    out by connect_timeout (an error, not only an interrupt) -- is killed
    like an abandoned statement: the server runs the ROLLBACK on."""
    clock = Clock()
    shell = Shell(make_core(clock, 1, timeout=30.0), clock)
    core = shell.core
    (proxy,) = borrowed(shell, 1)
    slot = proxy._slot
    assert slot is not None
    proxy._raw.dirty = True  # a transaction open: the return rolls back
    run = shell.give_back(proxy)
    assert run is not None and run.request[0] == RESET
    slot.raw.mid = True  # the ROLLBACK sent, its answer not read (the real driver's mark)
    shell.answer(run, "fail")
    (close,) = [run for run in shell.plans if run.request[0] == CLOSE]
    shell.answer(close, "ok")
    assert slot.state == KILLING and slot.raw.closed
    (kill,) = [run for run in shell.plans if run.kind == "kill"]
    assert kill.request[0] == KILL and kill.request[1][0] == slot.raw.session
    shell.answer(kill, "ok")
    assert slot.state == GONE and core._stats.kills == 1
    shell.finish_all()
    shell.check_books()


def test_a_dial_cut_in_its_set_up_fires_neither_on_connect_nor_on_close() -> None:
    """docs/guide.md, Events: on_close pairs with on_connect. A connect cut in
    its set-up never fired on_connect; its kill ending fires no on_close."""
    events: List[Tuple[str, Any]] = []

    class Recorder:
        def on_connect(self, raw: Any, ms: float) -> None:
            events.append(("connect", raw))

        def on_close(self, raw: Any, reason: str) -> None:
            events.append(("close", raw))

    clock = Clock()
    shell = Shell(make_core(clock, 1, timeout=30.0, events=Recorder()), clock)
    dial = shell.borrow()
    assert dial is not None and dial.request[0] == DIAL
    shell.answer(dial, "interrupt", 1)  # the server made the session; the shell closed it mid set-up
    (kill,) = [run for run in shell.plans if run.kind == "kill"]
    shell.answer(kill, "ok")
    assert shell.core._stats.kills == 1
    assert events == []
    shell.finish_all()
    shell.check_books()


def test_a_shrink_closes_the_longest_rested_idle_connections_first(server: FakeServer) -> None:
    """resize() down closes idle extras from the longest rested: the one kept
    is the one a borrow would take next (the most recently used)."""
    with ConnectionPool(maxsize=3, size=0, connection_factory=server) as pool:
        conns = [pool.get_conn() for _ in range(3)]
        newest = conns[-1].raw
        for conn in conns:
            conn.close()  # the last one given back rests the shortest
        pool.resize(maxsize=1)
        assert server.live_snapshot() == [newest]
        assert pool.get_stats()["closed_resized"] == 2


def test_a_cluster_is_named_by_pool_name_or_name_else_cluster() -> None:
    """The cluster's name (its log lines, errors and the metrics' ``pool``
    label): ``pool_name`` or ``name`` as given, else "cluster"."""
    assert steering().name == "cluster"
    assert steering(name="orders").name == "orders"
    assert steering(pool_name="billing").name == "billing"
