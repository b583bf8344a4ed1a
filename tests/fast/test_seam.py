"""The pools' public seam (docs/integrations.md, "The pools' public seam"):
what the cluster and the integrations may read and steer, one test per
member, against the fake driver."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, List

import pytest
from pymysql.constants import CLIENT

from pymysqlpool import ConnectionPool, ConnectionReturnedError, PoolClosed, _forking
from pymysqlpool._core import PoolCore
from support.waiting import wait_until

from .fakes import FakeConnectError, FakeServer

# -- what a pool shows ------------------------------------------------------------


def test_borrowed_is_the_stats_count_not_open_minus_idle(make_pool: Callable[..., ConnectionPool]) -> None:
    """A connection being checked in is neither idle nor borrowed: ``borrowed``
    agrees with the stats while the check-in hook runs, when open - idle would
    still count it."""
    seen: List[Any] = []
    ready = threading.Event()

    class Hook:
        def on_checkin(self, raw: Any, used: float) -> None:
            seen.append((pool.borrowed, pool.total_num, pool.available_num))
            seen.append(PoolCore.least_borrowed([other, pool], 0) is pool)  # 1 < 2: the balancing agrees
            ready.set()

    pool = make_pool(maxsize=3, pre_create_num=0)
    other = make_pool(maxsize=3, pre_create_num=0)
    others = [other.get_conn(), other.get_conn()]
    assert pool.borrowed == 0
    first, second = pool.get_conn(), pool.get_conn()
    assert pool.borrowed == 2 == pool.get_stats()["borrowed"]
    pool.add_events(Hook())
    first.close()
    assert ready.wait(5)
    assert seen == [(1, 2, 0), True]  # held while the hook runs: open 2, idle 0, borrowed 1
    assert pool.borrowed == 1 == pool.get_stats()["borrowed"]
    second.close()
    assert pool.borrowed == 0 == pool.get_stats()["borrowed"]
    for conn in others:
        conn.close()


def test_least_borrowed_and_first_with_room_balance_by_the_stats_count(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    a, b, c = (make_pool(maxsize=2, pre_create_num=0, pool_name=n) for n in "abc")
    pools = [a, b, c]
    held = [a.get_conn(), a.get_conn(), b.get_conn()]  # a full, b one lent, c none
    assert PoolCore.least_borrowed(pools, 0) is c
    assert PoolCore.least_borrowed([a, b], 0) is b
    assert PoolCore.least_borrowed([b, c, a], 4) is c  # the start wraps around
    held.append(c.get_conn())
    assert PoolCore.least_borrowed(pools, 1) is b and PoolCore.least_borrowed(pools, 2) is c  # a tie: from start
    assert PoolCore.first_with_room(pools, 0) is b  # a is full
    held += [b.get_conn(), c.get_conn()]
    assert PoolCore.first_with_room(pools, 0) is None  # all full
    for conn in held:
        conn.close()
    assert PoolCore.first_with_room(pools, 2) is c


def test_reset_session_client_flag_and_connect_timeout_show_the_settings(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    plain = make_pool(pre_create_num=0)
    assert (plain.reset_session, plain.client_flag, plain.connect_timeout) == (False, 0, 10.0)
    tuned = make_pool(pre_create_num=0, reset_session=True, client_flag=CLIENT.FOUND_ROWS, connect_timeout=3)
    assert (tuned.reset_session, tuned.client_flag, tuned.connect_timeout) == (True, CLIENT.FOUND_ROWS, 3.0)
    # The pool's own waits are bounded by it: a callable (a value computed at
    # each connect, for the other keywords) is refused, not read as the default.
    with pytest.raises(TypeError, match="connect_timeout must be a number of seconds, not a callable"):
        make_pool(pre_create_num=0, connect_timeout=lambda: 3)


# -- lifecycle ----------------------------------------------------------------------


def test_start_opens_once_and_never_after_close(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(open=False, pre_create_num=0)
    assert pool.closed and not pool.shut_down  # made closed, not shut: it may be opened
    assert pool.start() is True
    assert not pool.closed
    assert pool.start() is False  # open already
    pool.get_conn().close()
    pool.close()
    assert pool.closed and pool.shut_down
    with pytest.raises(PoolClosed):
        pool.start()


def test_prefill_opens_pre_create_num_and_raises_the_connect_error(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(open=False, pre_create_num=2, maxsize=3)
    pool.start()
    pool.prefill()
    assert pool.total_num == 2 == server.open_count
    failing = make_pool(open=False, pre_create_num=2, maxsize=3)
    failing.start()
    server.fail_next = 5
    with pytest.raises(FakeConnectError):
        failing.prefill()
    assert failing.total_num == 0 and server.open_count == 2  # the first pool's two alone


def test_start_maintenance_warms_a_started_pool_in_the_background(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(open=False, pre_create_num=2, maxsize=3)
    pool.start_maintenance()  # not started: nothing runs
    pool.start()
    assert pool.total_num == 0
    pool.start_maintenance()
    pool.start_maintenance()  # a second call starts no second upkeep
    assert wait_until(lambda: pool.total_num == 2, 5)
    assert server.open_count == 2


# -- what a cluster tells a node pool ---------------------------------------------------


def test_fail_fast_ends_the_next_failed_borrow_at_once(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(pre_create_num=0, maxsize=2)
    assert not pool.ever_connected
    pool.get_conn().close()
    assert pool.ever_connected
    conn = pool.get_conn()  # the one idle connection is lent: the next borrow must dial
    server.fail_next = 1000
    pool.fail_fast()
    assert not pool.ever_connected
    started = time.monotonic()
    with pytest.raises(FakeConnectError):
        pool.get_conn(timeout=30)
    assert time.monotonic() - started < 30  # ended on the failed connect, not by its timeout
    server.fail_next = 0
    pool.get_conn().close()  # dialed: the one connection is still lent
    assert pool.ever_connected  # a connect succeeded again
    conn.close()


def test_suspect_idle_validates_idle_connections_before_lending(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(pre_create_num=1, validation_interval=1e9)
    pool.get_conn().close()
    assert server.total_pings == 0  # within the validation window: lent unpinged
    pool.suspect_idle()
    with pool.connection() as conn:
        assert conn.raw.pings == 1  # last used before the suspicion: pinged first
    pool.get_conn().close()
    assert server.total_pings == 1  # used since: trusted again


def test_lent_raw_and_lender_read_a_borrowed_connection(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(pre_create_num=0)
    conn = pool.get_conn()
    assert conn.lent_raw is conn.raw and conn.lender is pool
    conn.close()
    assert conn.lent_raw is None and conn.lender is pool  # given back: no connection, same lender


def test_returned_error_names_the_pool_of_a_given_back_connection(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(pre_create_num=0, pool_name="seam-returned")
    conn = pool.get_conn()
    conn.close()
    error = conn.returned_error()
    assert isinstance(error, ConnectionReturnedError) and "'seam-returned'" in str(error)


def test_replace_session_puts_a_new_session_in_a_lent_slot(make_pool: Callable[..., ConnectionPool]) -> None:
    """What the proxy's ping(reconnect=True) does with a dead connection:
    the slot keeps its place, with a new session; the dead one is closed."""
    pool = make_pool(maxsize=1, pre_create_num=0)
    conn = pool.get_conn()
    dead = conn.raw
    dead.ping_fails = True
    conn.ping()  # reconnect=True, 0.5.0's default: through replace_session
    assert conn.raw is not dead and dead.disposed
    assert conn.raw.ping(reconnect=False) is None
    stats = pool.get_stats()
    assert stats["open"] == 1 and stats["borrowed"] == 1 and stats["connections_made"] == 2
    conn.close()
    assert pool.get_stats()["idle"] == 1


# -- one fork registry ---------------------------------------------------------------


def test_the_fork_registry_resets_in_registration_order_and_keeps_nothing_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cluster registers after its node pools: in a child they are reset first."""
    monkeypatch.setattr(_forking, "_owners", weakref.WeakKeyDictionary())  # this process's pools stay as they are

    class Owner:
        def __init__(self, name: str) -> None:
            self.name = name

    calls: List[str] = []
    first, second = Owner("node pool"), Owner("cluster")
    _forking.register(first, lambda owner: calls.append(owner.name))
    _forking.register(second, lambda owner: calls.append(owner.name))
    _forking._after_fork_in_child()  # what os.fork() runs in the child
    assert calls == ["node pool", "cluster"]
    probe = weakref.ref(first)
    del first
    gc.collect()
    assert probe() is None  # the registry holds its owners weakly
    calls.clear()
    _forking._after_fork_in_child()
    assert calls == ["cluster"]
