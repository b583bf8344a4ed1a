"""Fast tier: open/wait, close(timeout), drain, resize, max_waiting, check,
reconnect_failed and callable connect arguments, on the fake driver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pymysqlpool import (
    ConnectionPool,
    GetConnectionFromPoolError,
    PoolClosed,
    PoolTimeout,
    TooManyRequests,
)
from support.waiting import wait_until

from .fakes import FakeServer


def test_open_false_lends_nothing_until_opened_then_warms_up(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    server.fail_next = 3  # the database is not up yet
    pool = make_pool(maxsize=4, pre_create_num=2, open=False)
    assert server.connect_attempts == 0 and pool.closed
    with pytest.raises(PoolClosed, match="closed"):
        pool.get_conn(timeout=0)
    with pytest.raises(PoolClosed, match="not open"):
        pool.wait(0.1)
    pool.open()
    with pytest.raises(PoolTimeout, match="last connect error"):
        pool.wait(0.0)
    pool.wait(10.0)  # the maintenance thread retried with back-off
    assert pool.total_num >= 2 and server.connect_failures == 3
    pool.release(pool.get_conn())
    pool.open()  # opening an open pool does nothing


def test_wait_names_the_last_connect_error(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    server.fail_rate = 1.0
    pool = make_pool(maxsize=2, pre_create_num=1, open=False)
    pool.open()
    with pytest.raises(PoolTimeout, match="refused"):
        pool.wait(0.3)


def test_closed_pool_cannot_be_opened(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, open=False)
    assert pool.close() == 0
    with pytest.raises(PoolClosed):
        pool.open()


def test_close_with_timeout_waits_for_borrowers_then_forces(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(maxsize=3, pre_create_num=1)
    kept = pool.get_conn()
    returned = pool.get_conn()
    threading.Timer(0.05, returned.close).start()
    started = time.monotonic()
    assert pool.close(timeout=0.3) == 1
    assert time.monotonic() - started >= 0.3
    assert returned.returned
    with pytest.raises(PoolClosed):
        pool.get_conn()
    kept.close()  # the forced one comes back later: closed, counted once
    stats = pool.get_stats()
    assert stats["open"] == 0 and stats["closed_on_pool_close"] == 2
    assert server.open_count == 0
    assert pool.close(timeout=0.1) == 0


def test_close_without_borrowers_forces_nothing(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=2, pre_create_num=2)
    assert pool.close(timeout=5.0) == 0


def test_drain_replaces_idle_now_and_borrowed_on_return(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(maxsize=3, pre_create_num=2)
    lent = pool.get_conn()
    old_lent = lent.raw
    assert pool.drain() == 2
    assert pool.get_stats()["closed_drained"] == 1
    assert old_lent in server.live  # still borrowed: untouched until it comes back
    lent.query("SELECT 1")
    pool.release(lent)
    assert old_lent.disposed
    with pool.connection() as conn:
        assert conn.raw not in (old_lent, server.made[1])
    assert pool.get_stats()["closed_drained"] == 2
    assert wait_until(lambda: pool.total_num >= 2)  # warmth restored in the background


def test_resize_grow_serves_waiters_at_once(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.get_conn(timeout=5.0)))
    waiter.start()
    assert wait_until(lambda: pool.get_stats()["waiting"] == 1)
    pool.resize(maxsize=2)
    waiter.join(5.0)
    assert len(got) == 1 and pool.maxsize == 2
    got[0].close()
    held.close()


def test_resize_shrink_closes_idle_now_and_borrowed_on_return(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(maxsize=4, size=4)
    conns = [pool.get_conn() for _ in range(4)]
    conns[0].close()  # one idle
    pool.resize(maxsize=2, size=1)
    assert pool.maxsize == 2 and pool.size == 1
    assert server.open_count == 3  # idle extra closed at once
    for conn in conns[1:]:
        conn.close()
    assert server.open_count == 2  # one borrowed extra closed on return
    stats = pool.get_stats()
    assert stats["closed_resized"] == 2 and stats["open"] == 2
    with pytest.raises(ValueError):
        pool.resize(size=3)
    with pytest.raises(ValueError):
        pool.resize(maxsize=0)


def test_max_waiting_sheds_load(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, max_waiting=1)
    held = pool.get_conn()
    served: list[Any] = []
    waiter = threading.Thread(target=lambda: served.append(pool.get_conn(timeout=5.0)))
    waiter.start()
    assert wait_until(lambda: pool.get_stats()["waiting"] == 1)
    started = time.monotonic()
    with pytest.raises(TooManyRequests) as info:
        pool.get_conn(timeout=5.0)
    assert time.monotonic() - started < 1.0  # at once, not after the timeout
    assert isinstance(info.value, GetConnectionFromPoolError)
    assert pool.get_stats()["borrows_rejected"] == 1
    held.close()
    waiter.join(5.0)
    assert len(served) == 1  # the queued borrower was served
    served[0].close()


def test_max_waiting_zero_never_queues(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, max_waiting=0)
    with pool.connection(), pytest.raises(TooManyRequests):
        pool.get_conn()


def test_check_validates_every_idle_connection(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(maxsize=3, pre_create_num=3)
    server.made[1].break_(noticed=False)
    assert pool.check() == 1
    assert pool.available_num == 2 and pool.get_stats()["closed_failed_check"] == 1
    assert all(c.pings == 1 for c in server.made[:3] if c is not server.made[1])


def test_reconnect_failed_is_called_once_per_outage(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    calls: list[ConnectionPool] = []
    server.fail_rate = 1.0
    pool = make_pool(maxsize=2, pre_create_num=1, open=False, reconnect_timeout=0.2, reconnect_failed=calls.append)
    pool.open()
    assert wait_until(lambda: len(calls) == 1)
    time.sleep(0.3)
    assert calls == [pool]  # once, however many attempts failed
    server.fail_rate = 0.0
    pool.wait(10.0)


def test_callable_connect_arguments_are_evaluated_at_each_connect(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    tokens = iter(["t1", "t2", "t3"])
    pool = make_pool(maxsize=2, password=lambda: next(tokens), user="app")
    with pool.connection(), pool.connection():
        pass
    assert [kw["password"] for kw in server.kwargs_seen] == ["t1", "t2"]
    assert "t1" not in repr(pool) and "t1" not in str(pool.get_stats())


def test_callable_user_is_not_called_for_the_label(make_pool: Callable[..., ConnectionPool]) -> None:
    def user() -> str:
        raise AssertionError("called for a label")

    pool = make_pool(maxsize=1, user=user)
    assert "<callable>" in repr(pool)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_waiting": -1}, ValueError),
        ({"max_waiting": 1.5}, TypeError),  # wrong type: TypeError; wrong value: ValueError
        ({"reconnect_timeout": -1}, ValueError),
        ({"reconnect_timeout": float("nan")}, ValueError),
        ({"reconnect_failed": "page me"}, TypeError),
        ({"open": "no"}, TypeError),
        ({"kill_on_abandon": 1}, TypeError),
        ({"kill_on_abandon": None}, TypeError),
        ({"events": 42}, TypeError),
    ],
)
def test_absurd_control_arguments_are_refused(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, kwargs: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        make_pool(maxsize=1, **kwargs)
    assert server.connect_attempts == 0


def test_absurd_control_calls_are_refused_and_change_nothing(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=2, pre_create_num=1)
    for bad in ({"maxsize": -3}, {"maxsize": 0}, {"size": -1}):
        with pytest.raises(ValueError, match="size"):
            pool.resize(**bad)
    for bad in ({"maxsize": True}, {"size": "2"}, {"maxsize": 2.0}):
        with pytest.raises(TypeError, match=f"pool {pool.name!r}: (max)?size must be an int"):
            pool.resize(**bad)
    assert pool.maxsize == 2
    with pytest.raises(ValueError):
        pool.wait(-1)
    with pytest.raises(ValueError):
        pool.close(timeout=float("nan"))
    assert not pool.closed  # a refused close() did not half-close the pool
    assert pool.close(timeout=1) == 0


def test_drain_resize_and_check_under_concurrent_borrowers(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """Borrowers hammer the pool while another thread drains, resizes and
    checks it: nobody ever shares a connection, no borrow fails but by
    timeout, and once everyone is done the books match the server."""
    import random

    pool = make_pool(maxsize=4, size=2, pre_create_num=1, validation_interval=0.0)
    stop = threading.Event()
    failures: list[BaseException] = []
    served = [0]

    def borrower(seed: int) -> None:
        rng = random.Random(seed)
        me = object()
        for _ in range(20_000):  # bounded; stop ends it sooner
            if stop.is_set():
                return
            try:
                conn = pool.get_conn(timeout=2.0)
            except PoolTimeout:
                continue
            except BaseException as exc:
                failures.append(exc)
                return
            fake = conn.raw
            fake.claim(me)
            if rng.random() < 0.2:
                conn.query("SELECT 1")
            fake.unclaim(me)
            conn.close()
            served[0] += 1

    threads = [threading.Thread(target=borrower, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    rng = random.Random(7)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        action = rng.choice(["drain", "grow", "shrink", "check"])
        if action == "drain":
            pool.drain()
        elif action == "check":
            pool.check()
        else:
            pool.resize(maxsize=rng.randint(1, 3) if action == "shrink" else rng.randint(4, 6), size=1)
        time.sleep(0.01)
    pool.resize(maxsize=2, size=1)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == [] and served[0] > 0
    assert server.ownership_violations == []
    stats = pool.get_stats()
    assert stats["borrowed"] == 0 and stats["connecting"] == 0
    assert wait_until(lambda: pool.total_num == server.open_count)
    assert server.open_count <= 2  # settled at the final maxsize
    assert stats["borrows"] == stats["returns"]


class GatedServer(FakeServer):
    """Connects wait until ``gate`` is set, so a test can act while they are in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = 0

    def __call__(self, **kwargs: Any) -> Any:
        with self.lock:
            self.waiting += 1
        self.gate.wait(10)
        return super().__call__(**kwargs)


def _borrow_in_thread(pool: ConnectionPool, got: list[Any]) -> threading.Thread:
    thread = threading.Thread(target=lambda: got.append(pool.get_conn(timeout=10)))
    thread.start()
    return thread


def test_drain_replaces_a_connection_that_was_being_opened(make_pool: Callable[..., ConnectionPool]) -> None:
    gated = GatedServer()
    pool = make_pool(maxsize=2, connection_factory=gated)
    got: list[Any] = []
    thread = _borrow_in_thread(pool, got)
    assert wait_until(lambda: gated.waiting == 1)
    pool.drain()  # the connect under way may use the old credentials
    gated.gate.set()
    thread.join(10)
    got[0].close()
    assert gated.made[0].disposed
    assert pool.get_stats()["closed_drained"] == 1


def test_resize_below_connections_being_opened_settles_at_the_new_maxsize(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    gated = GatedServer()
    pool = make_pool(maxsize=3, size=3, connection_factory=gated)
    got: list[Any] = []
    threads = [_borrow_in_thread(pool, got) for _ in range(3)]
    assert wait_until(lambda: gated.waiting == 3)
    pool.resize(maxsize=1, size=1)  # nothing open yet to mark: all three are being opened
    gated.gate.set()
    for thread in threads:
        thread.join(10)
    for conn in got:
        conn.close()
    assert gated.open_count == 1  # exactly the new maxsize: two shed, one kept
    assert pool.get_stats()["closed_resized"] == 2


def test_drained_idle_connections_are_replaced_in_the_background(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(maxsize=3, size=3)  # pre_create_num=0: only the drain asks for successors
    first, second = pool.get_conn(), pool.get_conn()
    first.close()
    second.close()
    old = set(server.live_snapshot())
    pool.drain()
    assert wait_until(lambda: pool.available_num == 2)
    assert not (set(server.live_snapshot()) & old)


def test_singleton_made_with_open_false_is_still_the_one_pool(server: FakeServer, clean_singletons: None) -> None:
    from pymysqlpool import ConnectionPoolSingleton

    first = ConnectionPoolSingleton(name="later", maxsize=1, open=False, connection_factory=server)
    assert ConnectionPoolSingleton(name="later", maxsize=1, open=False, connection_factory=server) is first
    first.open()
    with first.connection():
        pass
    first.close()
    again = ConnectionPoolSingleton(name="later", maxsize=1, open=False, connection_factory=server)
    assert again is not first  # a closed pool is replaced
    again.close()
