"""Connection life cycle against the fake driver: lifetime and its jitter,
validation before lending, leak reclaim, in-place reconnect and the stats."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, List, Optional, Tuple

import pytest

from pymysqlpool import ConnectionPool, PoolClosed, PoolTimeout, ReturnConnectionToPoolError
from pymysqlpool.stats import COUNTERS, GAUGES
from support.leaks import LeakWarnings
from support.waiting import wait_until

from .fakes import FakeConnectError, FakeResult, FakeServer
from .test_threads import join_all

CLOSED_COUNTERS = [name for name in COUNTERS if name.startswith("closed_")] + ["leaks_reclaimed"]


def conserved(pool: ConnectionPool) -> bool:
    """Every connection made is either open or was closed under one reason."""
    stats = pool.get_stats()
    return stats["connections_made"] - sum(stats[k] for k in CLOSED_COUNTERS) == stats["open"]


def queued_borrower(pool: ConnectionPool) -> Tuple[threading.Thread, List[Any]]:
    """A thread that borrows (timeout 5 s) once the pool is at maxsize, records
    the raw connection it got and gives it back; returned once it is queued."""
    got: List[Any] = []

    def waiter() -> None:
        with pool.connection(timeout=5) as c:
            got.append(c.raw)

    t = threading.Thread(target=waiter)
    t.start()
    assert wait_until(lambda: pool.get_stats()["waiting"] == 1)
    return t, got


# -- lifetime -------------------------------------------------------------------


def test_expired_connection_is_closed_on_return(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(con_lifetime=0.05, size=0)
    conn = pool.get_conn()
    fake = conn.raw
    time.sleep(0.06)
    conn.close()
    assert fake.disposed
    assert pool.total_num == 0 and server.open_count == 0
    assert pool.get_stats()["closed_lifetime"] == 1
    assert conserved(pool)


def test_expired_idle_connection_is_replaced_at_borrow(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(con_lifetime=0.05, size=0)
    with pool.connection() as conn:
        first = conn.raw
    time.sleep(0.06)
    with pool.connection(timeout=1) as conn:
        assert conn.raw is not first
        assert not conn.raw.disposed
    assert first.disposed
    stats = pool.get_stats()
    assert stats["closed_lifetime"] == 1
    assert stats["connections_made"] == 2
    assert pool.total_num == server.open_count == 1
    assert conserved(pool)


def test_connection_retired_for_age_is_replaced_in_the_background(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    # max_idle only shortens the maintenance tick here: one idle conn is within size.
    pool = make_pool(con_lifetime=0.1, size=1, max_idle=0.2)
    with pool.connection() as conn:
        first = conn.raw
    assert wait_until(lambda: first.disposed and len(server.made) >= 2 and pool.available_num == 1)
    assert pool.get_stats()["closed_lifetime"] >= 1
    assert server.open_count == pool.total_num


def test_lifetime_jitter_spreads_expiries_below_the_limit(make_pool: Callable[..., ConnectionPool]) -> None:
    limit = 1000.0
    pool = make_pool(maxsize=60, con_lifetime=limit)
    conns = [pool.get_conn(timeout=0) for _ in range(60)]
    spans = [c._slot.expires - c._slot.created for c in conns]
    assert all(spans_ok <= limit + 1e-6 for spans_ok in spans)
    assert all(span >= 0.95 * limit - 1e-6 for span in spans)
    assert max(spans) - min(spans) > 0.01 * limit, "expiries are not spread"
    for c in conns:
        c.close()


# -- validation -------------------------------------------------------------------


def test_zero_window_pings_every_reuse(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(validation_interval=0)
    for _ in range(5):
        with pool.connection():
            pass
    assert len(server.made) == 1
    assert server.made[0].pings == 4  # the first borrow dialed; the four reuses pinged


def test_large_window_clean_reuse_sends_nothing(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(validation_interval=1000)
    for _ in range(5):
        with pool.connection():
            pass
    fake = server.made[0]
    assert len(server.made) == 1
    assert (fake.pings, fake.rollbacks, fake.commits, fake.queries, fake.autocommit_calls) == (0, 0, 0, 0, 0)


def test_failed_ping_replaces_the_connection_silently(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(validation_interval=0)
    with pool.connection() as conn:
        first = conn.raw
    first.ping_fails = True
    with pool.connection(timeout=0) as conn:
        assert conn.raw is not first
        conn.ping(reconnect=False)  # a working one
    assert first.disposed and first.pings == 1
    stats = pool.get_stats()
    assert stats["closed_failed_check"] == 1
    assert stats["borrows"] == stats["returns"] == 2
    assert pool.total_num == server.open_count == 1
    assert conserved(pool)


def test_dead_idle_connection_makes_its_siblings_suspect(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(validation_interval=1000)
    a, b = pool.get_conn(), pool.get_conn()
    a.close()
    b.close()
    for fake in server.made:
        fake.break_(noticed=False)  # a server restart kills both sessions
    # Nothing is due for a ping, but pre_ping finds the first one dead...
    with pool.get_connection(pre_ping=True) as conn:
        assert not conn.raw.server_gone
    # ...so the other idle one is pinged too before it is lent.
    with pool.connection(timeout=0) as conn:
        assert not conn.raw.server_gone
    assert pool.get_stats()["closed_failed_check"] == 2
    assert all(f.disposed for f in server.made[:2])


def test_check_callback_false_replaces(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    seen: List[Any] = []

    def check(raw: Any) -> bool:
        seen.append(raw)
        return raw is not server.made[0]

    pool = make_pool(validation_interval=0, check=check)
    with pool.connection() as conn:
        first = conn.raw
    with pool.connection(timeout=0) as conn:
        assert conn.raw is server.made[1]
    assert seen == [first]  # the fresh connection was not checked
    assert first.disposed and first.pings == 0  # check= replaces the ping
    assert pool.get_stats()["closed_failed_check"] == 1
    with pool.connection(timeout=0) as conn:
        assert conn.raw is server.made[1]
    assert seen == [first, server.made[1]]


def test_check_callback_raising_replaces(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    def check(raw: Any) -> None:
        if raw is server.made[0]:
            raise RuntimeError("bad session")

    pool = make_pool(validation_interval=0, check=check)
    with pool.connection():
        pass
    with pool.connection(timeout=0) as conn:
        assert conn.raw is server.made[1]
    assert pool.get_stats()["closed_failed_check"] == 1


def test_pre_ping_always_pings(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(validation_interval=1000)
    with pool.connection():
        pass
    fake = server.made[0]
    with pool.get_connection(pre_ping=True) as conn:
        assert conn.raw is fake
    assert fake.pings == 1
    with pool.get_connection() as conn:
        assert conn.raw is fake
    assert fake.pings == 1
    fake.ping_fails = True
    with pool.get_connection(pre_ping=True) as conn:
        assert conn.raw is server.made[1]
    assert fake.disposed


# -- leaks --------------------------------------------------------------------------


def _leak(pool: ConnectionPool) -> Any:
    """Borrow and drop the proxy without returning it; return the fake."""
    conn = pool.get_conn(timeout=0)
    fake = conn.raw
    del conn
    gc.collect()
    return fake


def _leak_warnings(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "pymysqlpool" and r.levelno == logging.WARNING and "garbage-collected" in r.getMessage()
    ]


def test_dropped_connection_is_reclaimed_for_the_next_borrow(
    make_pool: Callable[..., ConnectionPool],
    server: FakeServer,
    caplog: pytest.LogCaptureFixture,
    leak_warnings: LeakWarnings,
) -> None:
    caplog.set_level(logging.WARNING, logger="pymysqlpool")
    pool = make_pool(maxsize=1)
    fake = _leak(pool)
    with pool.connection(timeout=2) as conn:  # would time out if the slot were lost
        assert conn.raw is not fake
    assert fake.disposed
    stats = pool.get_stats()
    assert stats["leaks_reclaimed"] == 1
    assert stats["leaks_detected"] == 1
    assert pool.total_num == server.open_count == 1
    assert len(_leak_warnings(caplog)) == 1
    assert len(leak_warnings.messages) == 1 and "garbage-collected" in leak_warnings.messages[0]
    assert conserved(pool)


def test_dropped_connection_is_reclaimed_by_maintenance(
    make_pool: Callable[..., ConnectionPool],
    server: FakeServer,
    caplog: pytest.LogCaptureFixture,
    leak_warnings: LeakWarnings,
) -> None:
    caplog.set_level(logging.WARNING, logger="pymysqlpool")
    pool = make_pool(maxsize=2, size=0)
    fake = _leak(pool)
    assert wait_until(lambda: pool.total_num == 0)
    assert fake.disposed and server.open_count == 0
    assert pool.get_stats()["leaks_reclaimed"] == 1
    assert len(_leak_warnings(caplog)) == 1
    assert len(leak_warnings.messages) == 1  # warned by the maintenance thread, seen by the test


def test_connection_dropped_after_pool_close_is_closed(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, leak_warnings: LeakWarnings
) -> None:
    pool = make_pool(maxsize=2)
    conn = pool.get_conn()
    fake = conn.raw
    pool.close()
    del conn
    gc.collect()
    # Nobody borrows from a closed pool again: the pool itself must let it go.
    assert wait_until(lambda: fake.disposed, timeout=1.0)
    assert pool.total_num == 0 and server.open_count == 0
    assert len(leak_warnings.messages) == 1


# -- reconnect in place -------------------------------------------------------------


def test_ping_reconnect_swaps_a_dead_connection(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(maxsize=1)
    conn = pool.get_conn()
    old = conn.raw
    old.break_()
    conn.ping()  # 0.5.0 default: reconnect=True
    assert conn.raw is not old and conn.raw is server.made[1]
    assert old.disposed
    assert pool.total_num == server.open_count == 1
    conn.close()
    assert pool.available_num == 1
    assert conserved(pool), pool.get_stats()


# -- stats ------------------------------------------------------------------------------


def test_stats_keys_and_pop_resets_counters_only(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=3, pre_create_num=1, size=2)
    held = pool.get_conn()
    with pool.connection() as conn:
        conn.begin()
    stats = pool.get_stats()
    assert set(stats) == set(COUNTERS) | set(GAUGES)
    assert stats["borrows"] == 2 and stats["returns"] == 1 and stats["rollbacks_on_return"] == 1
    popped = pool.pop_stats()
    assert {k: popped[k] for k in COUNTERS if not k.endswith("_ms")} == {
        k: stats[k] for k in COUNTERS if not k.endswith("_ms")
    }
    after = pool.get_stats()
    assert all(after[k] == 0 for k in COUNTERS), after
    gauges = {k: after[k] for k in GAUGES}
    assert gauges == {k: stats[k] for k in GAUGES}
    assert gauges["pool_min"] == 1 and gauges["pool_size"] == 2 and gauges["pool_max"] == 3
    assert gauges["open"] == 2 and gauges["idle"] == 1 and gauges["borrowed"] == 1
    held.close()
    assert pool.get_stats()["returns"] == 1


def test_prefill_opens_pre_create_num(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(maxsize=4, pre_create_num=3)
    assert len(server.made) == 3
    assert pool.total_num == pool.available_num == server.open_count == 3
    assert pool.get_stats()["connections_made"] == 3


def test_closed_pool_refuses_and_closes_returns(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(maxsize=3)
    out = pool.get_conn()
    with pool.connection():
        pass
    pool.close()
    pool.close()  # idempotent
    assert pool.closed
    assert pool.available_num == 0 and pool.total_num == 1 and server.open_count == 1
    with pytest.raises(PoolClosed):
        pool.get_conn()
    out.close()
    assert pool.total_num == server.open_count == 0
    stats = pool.get_stats()
    assert stats["closed_on_pool_close"] == 2
    assert stats["borrow_errors"] == 1
    assert conserved(pool)


def test_pool_as_context_manager(server: FakeServer) -> None:
    with ConnectionPool(connection_factory=server, maxsize=2) as pool, pool.connection():
        pass
    assert pool.closed and server.open_count == 0


# -- maintenance ---------------------------------------------------------------------


def test_long_borrow_is_reported_with_its_stack(
    make_pool: Callable[..., ConnectionPool], caplog: pytest.LogCaptureFixture, leak_warnings: LeakWarnings
) -> None:
    caplog.set_level(logging.WARNING, logger="pymysqlpool")
    pool = make_pool(leak_timeout=0.05)
    conn = pool.get_conn()
    assert wait_until(lambda: pool.get_stats()["leaks_detected"] == 1)
    reports = [r.getMessage() for r in caplog.records if "has been borrowed for" in r.getMessage()]
    assert len(reports) == 1
    assert "test_long_borrow_is_reported_with_its_stack" in reports[0]
    assert leak_warnings.messages == [reports[0]]  # the same report, as a warning
    conn.close()
    assert pool.get_stats()["leaks_reclaimed"] == 0  # reported, not taken away
    assert pool.available_num == 1


def test_idle_beyond_size_retired_after_max_idle(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(maxsize=4, size=1, max_idle=0.05)
    held = [pool.get_conn() for _ in range(3)]
    for conn in held:
        conn.close()
    # The maintenance thread takes both out of idle, then closes them: wait for the count.
    assert wait_until(lambda: pool.get_stats()["closed_idle"] == 2)
    assert pool.available_num == 1
    assert pool.total_num == server.open_count == 1
    assert conserved(pool)


def test_keepalive_pings_idle_and_replaces_dead(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(keepalive_interval=0.05, pre_create_num=1)
    assert wait_until(lambda: pool.get_stats()["keepalive_pings"] >= 1)
    first = server.made[0]
    assert first.pings >= 1
    first.break_(noticed=False)
    assert wait_until(lambda: first.disposed and pool.available_num == 1)  # refilled to pre_create_num
    assert pool.get_stats()["closed_broken"] == 1
    assert server.open_count == pool.total_num == 1


def test_configure_runs_once_per_connection_and_its_transaction_is_committed(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    configured: List[Any] = []

    def configure(raw: Any) -> None:
        configured.append(raw)
        raw.begin()  # e.g. a SET inside an implicit transaction

    pool = make_pool(configure=configure, maxsize=2)
    for _ in range(3):
        with pool.connection() as conn:
            assert not conn.raw.in_trans
    assert configured == server.made[:1]
    assert server.made[0].commits == 1
    assert pool.get_stats()["rollbacks_on_return"] == 0


def test_configure_failure_closes_the_connection(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    def configure(raw: Any) -> None:
        raise RuntimeError("SET failed")

    pool = make_pool(configure=configure)
    with pytest.raises(RuntimeError, match="SET failed"):
        pool.get_conn(timeout=0)
    assert len(server.made) == 1 and server.made[0].disposed
    stats = pool.get_stats()
    assert stats["connect_errors"] == 1 and stats["borrow_errors"] == 1 and stats["borrows"] == 0
    assert pool.total_num == 0 and stats["connecting"] == 0


def test_unread_further_results_are_drained_on_return(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(maxsize=1)
    with pool.connection() as conn:
        fake = conn.raw
        fake._result = FakeResult(fake, pending=2)  # first result read in full, two more to come
    assert fake._result is None
    assert fake.next_results == 2
    assert fake.rollbacks == 0 and not fake.disposed
    assert pool.available_num == 1


@pytest.mark.parametrize("how", ["unbuffered rows left", "answer half read"])
@pytest.mark.parametrize("failed", [False, True])
def test_connection_left_mid_answer_is_closed_not_reused(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, how: str, failed: bool
) -> None:
    pool = make_pool(maxsize=1)
    conn = pool.get_conn()
    fake = conn.raw
    if how == "unbuffered rows left":
        fake._result = FakeResult(fake, unbuffered_active=True)
    else:
        fake._exchanging = True  # an interrupt landed between a command and the end of its answer
    pool.release(conn, failed=failed)
    assert fake.disposed and fake.drained_rows == 0 and fake.queries == 0 and fake.rollbacks == 0
    stats = pool.get_stats()
    assert stats["closed_unread"] == 1 and stats["closed_broken"] == 0
    assert pool.total_num == server.open_count == 0
    with pool.connection(timeout=0) as again:
        assert again.raw is not fake


def test_leak_frees_the_slot_for_a_waiter(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, leak_warnings: LeakWarnings
) -> None:
    pool = make_pool(maxsize=1)
    conn = pool.get_conn()
    t, got = queued_borrower(pool)
    fake = conn.raw
    del conn
    gc.collect()
    join_all([t])
    assert got and got[0] is not fake and fake.disposed
    assert pool.get_stats()["leaks_reclaimed"] == 1
    assert len(leak_warnings.messages) == 1


def test_default_borrow_timeout_is_the_pools(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, timeout=0.02)
    assert pool.timeout == 0.02
    held = pool.get_conn()
    with pytest.raises(PoolTimeout):
        pool.get_conn()
    with pytest.raises(PoolTimeout):
        pool.connection()
    held.close()


def test_restart_costs_one_borrow_a_few_pings_then_the_rest_are_closed_unpinged(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    # Six idle connections, all silently dropped by a server restart. Opened by
    # borrowing, not pre_create_num, so the maintenance thread has nothing to refill.
    pool = make_pool(maxsize=6, validation_interval=0, keepalive_interval=0)
    for conn in [pool.get_conn() for _ in range(6)]:
        conn.close()
    for fake in server.live_snapshot():
        fake.break_(noticed=False)
    pings_before = server.total_pings  # the six set-up borrows each pinged (window 0)
    with pool.connection() as conn:
        assert conn.raw is server.made[-1] and not conn.raw.server_gone  # a fresh one
    stats = pool.get_stats()
    assert server.total_pings - pings_before == 3  # three tried, the other three presumed dead
    assert stats["closed_failed_check"] == 6
    assert stats["borrows"] == 7 and stats["borrow_errors"] == 0  # six to set up, one here
    assert pool.total_num == server.open_count == 1
    assert conserved(pool)


def test_zero_timeout_borrow_still_gets_full_connect_and_ping_time(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # timeout=0 means "do not queue", not "give the network no time": the
    # handshake and the validation ping are bounded by connect_timeout.
    import pymysqlpool._driver as driver

    waits: List[Any] = []

    def connect(kwargs: Any, timeout: Any, tls: Any = None) -> Any:
        waits.append(("connect", timeout))
        return server(**kwargs)

    real_ping = driver.ping

    def ping(raw: Any, timeout: Any = None) -> None:
        waits.append(("ping", timeout))
        real_ping(raw, timeout)

    monkeypatch.setattr(driver, "connect", connect)
    monkeypatch.setattr(driver, "session_wait_timeout", lambda raw, timeout=None: None)
    monkeypatch.setattr(driver, "ping", ping)
    pool = ConnectionPool(host="127.0.0.1", user="u", connect_timeout=7, maxsize=1, validation_interval=0)
    try:
        with pool.connection(timeout=0):
            pass
        with pool.connection(timeout=0):
            pass
        assert waits == [("connect", 7.0), ("ping", 7.0)]
    finally:
        pool.close()


# -- counters that agree with what clients saw ------------------------------------


def test_dial_completing_after_close_is_counted_as_closed(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pools: List[ConnectionPool] = []

    def slow_factory(**kwargs: Any) -> Any:
        conn = server(**kwargs)
        pools[0].close()  # the pool closes while this connect is in flight
        return conn

    pool = make_pool(maxsize=1, connection_factory=slow_factory)
    pools.append(pool)
    with pytest.raises(PoolClosed):
        pool.get_conn(timeout=0)
    stats = pool.get_stats()
    assert stats["connections_made"] == 1 and stats["closed_on_pool_close"] == 1
    assert conserved(pool) and server.open_count == 0


def test_a_borrow_that_queues_twice_counts_once_as_waited(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """A waiter handed a dead connection queues again: still one borrow that
    waited, so borrow_wait_ms / borrows_waited is the mean wait."""
    pool = make_pool(maxsize=1, validation_interval=0)
    held = pool.get_conn()
    t, got = queued_borrower(pool)
    dead = held.raw
    dead.ping_fails = True
    held.close()  # handed to the waiter, fails its ping; the waiter dials
    join_all([t])
    assert got and got[0] is not dead
    stats = pool.get_stats()
    assert stats["borrows_waited"] == 1 and stats["borrows"] == stats["returns"] == 2
    assert conserved(pool)


def test_infinite_timeouts_wait_until_a_connection_comes_back(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    got: List[Any] = []

    def waiter(how: str) -> None:
        conn = pool.get_conn(timeout=float("inf")) if how == "inf" else pool.get_connection(10, 1e308)
        got.append(conn)
        conn.close()

    for how in ("inf", "huge retry_interval"):
        t = threading.Thread(target=waiter, args=(how,))
        t.start()
        assert wait_until(lambda: pool.get_stats()["waiting"] == 1)
        held.close()
        join_all([t])
        held = pool.get_conn()
    assert len(got) == 2
    held.close()


def test_release_of_a_look_alike_is_refused_clearly(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1)

    class LookAlike:
        _pool = pool
        _slot = None

    for thing in (LookAlike(), object(), None):
        with pytest.raises(ReturnConnectionToPoolError):
            pool.release(thing)  # type: ignore[arg-type]
    with pool.connection(timeout=0):
        pass


def test_a_failed_dial_hands_its_slot_to_the_oldest_waiter(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """A borrower whose connect fails gives the right to dial to the borrower
    queued behind it at once, instead of taking it back after its back-off."""
    gate = threading.Event()
    calls = {"n": 0}

    def factory(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the first borrower's dial: held until the waiter queues, then refused
            assert gate.wait(5)
            raise FakeConnectError(2003, "Can't connect (test)")
        return server(**kwargs)

    pool = make_pool(maxsize=1, validation_interval=0, connection_factory=factory)
    with pool.connection() as warm:
        warm.raw.ping_fails = True  # the idle connection fails its ping: the next borrow dials
    order: List[str] = []

    def borrow(name: str) -> None:
        with pool.connection(timeout=5):
            order.append(name)
            time.sleep(0.05)

    first = threading.Thread(target=borrow, args=("first",))
    first.start()
    assert wait_until(lambda: pool.get_stats()["connecting"] == 1)
    second = threading.Thread(target=borrow, args=("queued",))
    second.start()
    assert wait_until(lambda: pool.get_stats()["waiting"] == 1)
    gate.set()
    join_all([first, second])
    assert order == ["queued", "first"]
    assert conserved(pool)


# -- what a new user sees ------------------------------------------------------------


def test_a_leak_is_a_warning_shown_by_default(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    """A warning category, not only a log record on a logger with a NullHandler:
    under the default filters it is shown, and it can be filtered by category."""
    import warnings

    from pymysqlpool import ConnectionLeakWarning

    assert issubclass(ConnectionLeakWarning, RuntimeWarning)  # not ignored by Python's default filters
    pool = make_pool(maxsize=1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()  # Python's defaults, not pytest's
        _leak(pool)
        with pool.connection(timeout=2):
            pass
    leaks = [w for w in seen if issubclass(w.category, ConnectionLeakWarning)]
    assert len(leaks) == 1 and "garbage-collected" in str(leaks[0].message)
    assert "leak_timeout" in str(leaks[0].message)  # says how to get the borrower's stack


def test_with_leak_timeout_the_warning_carries_the_borrowers_stack(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    import warnings

    from pymysqlpool import ConnectionLeakWarning

    pool = make_pool(maxsize=1, leak_timeout=0.05)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ConnectionLeakWarning)
        conn = pool.get_conn()  # held past leak_timeout: reported with where it was borrowed
        assert wait_until(lambda: pool.get_stats()["leaks_detected"] == 1)
        conn.close()
    messages = [str(w.message) for w in seen if issubclass(w.category, ConnectionLeakWarning)]
    assert len(messages) == 1
    assert "has been borrowed for" in messages[0]
    assert "test_with_leak_timeout_the_warning_carries_the_borrowers_stack" in messages[0]


@pytest.mark.parametrize(
    ("held_for", "leak_timeout", "hint"), [(120.0, None, True), (5.0, None, False), (120.0, 600.0, False)]
)
def test_a_timeout_while_everything_is_held_for_minutes_hints_at_leak_timeout(
    make_pool: Callable[..., ConnectionPool], held_for: float, leak_timeout: Optional[float], hint: bool
) -> None:
    pool = make_pool(maxsize=2, leak_timeout=leak_timeout)
    held = [pool.get_conn(), pool.get_conn()]
    for conn in held:
        conn._slot.borrowed_at = time.monotonic() - held_for  # as if borrowed that long ago
    with pytest.raises(PoolTimeout) as info:
        pool.get_conn(timeout=0.01)
    assert ("leak_timeout=" in str(info.value)) is hint
    for conn in held:
        conn.close()
