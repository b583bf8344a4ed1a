"""Concurrency against the fake driver: the maxsize bound, exclusive ownership,
exact counters, FIFO hand-off and borrow timeouts."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Dict, List

import pytest

from pymysqlpool import (
    ConnectionPool,
    GetConnectionFromPoolError,
    PoolClosed,
    PoolTimeout,
    ReturnConnectionToPoolError,
)
from support.waiting import wait_until

from .fakes import FakeConnectError, FakeServer

JOIN_TIMEOUT = 30.0


def join_all(threads: List[threading.Thread]) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(timeout=max(deadline - time.monotonic(), 0.01))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads did not finish: {stuck}"


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads far more often than usual to shake out races."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def test_many_threads_with_failing_connects(make_pool: Callable[..., ConnectionPool], busy_switching: None) -> None:
    threads_n, rounds, maxsize = 64, 40, 6
    server = FakeServer(fail_rate=0.2, seed=7)
    pool = make_pool(maxsize=maxsize, timeout=20, connection_factory=server)
    lock = threading.Lock()
    tally: Dict[str, int] = dict.fromkeys(["borrowed", "errors", "dirty", "broken", "other"], 0)
    samples: List[Dict[str, Any]] = []
    done = threading.Event()
    failures: List[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        me = object()
        mine = dict.fromkeys(tally, 0)
        try:
            for _ in range(rounds):
                try:
                    conn = pool.get_conn(timeout=20)
                except (FakeConnectError, PoolTimeout):
                    mine["errors"] += 1
                    continue
                mine["borrowed"] += 1
                fake = conn.raw
                fake.claim(me)
                roll = rng.random()
                if roll < 0.15:
                    conn.begin()
                    mine["dirty"] += 1
                elif roll < 0.25:
                    conn.autocommit(False)
                    mine["dirty"] += 1
                elif roll < 0.32:
                    fake.break_()
                    mine["broken"] += 1
                if rng.random() < 0.3:
                    time.sleep(0)
                fake.unclaim(me)
                conn.close()
        except BaseException as exc:  # surfaced by the main thread
            failures.append(exc)
        with lock:
            for key, value in mine.items():
                tally[key] += value

    def monitor() -> None:
        while not done.is_set():
            stats = pool.get_stats()
            samples.append({**stats, "server_open": server.open_count})
            time.sleep(0.002)

    watcher = threading.Thread(target=monitor, name="monitor")
    watcher.start()
    workers = [threading.Thread(target=worker, args=(i,), name=f"w{i}") for i in range(threads_n)]
    for t in workers:
        t.start()
    try:
        join_all(workers)
    finally:
        done.set()
        join_all([watcher])
    assert not failures, failures[:3]

    assert server.ownership_violations == []
    assert server.high_water <= maxsize
    assert samples
    for s in samples:
        assert s["open"] + s["connecting"] <= maxsize
        assert s["server_open"] <= maxsize
        assert s["idle"] == 0 or s["waiting"] == 0, "a connection sat idle while a borrower waited"
        assert s["borrowed"] >= 0

    stats = pool.get_stats()
    assert tally["borrowed"] + tally["errors"] == threads_n * rounds
    assert stats["borrows"] == tally["borrowed"]
    assert stats["returns"] == tally["borrowed"]
    assert stats["borrow_errors"] == tally["errors"]
    assert stats["rollbacks_on_return"] == tally["dirty"]
    assert stats["closed_broken"] == tally["broken"]
    assert stats["connections_made"] == len(server.made)
    assert stats["connect_errors"] == server.connect_failures
    assert stats["borrowed"] == 0 and stats["waiting"] == 0 and stats["connecting"] == 0
    assert stats["open"] == stats["idle"] == pool.available_num == pool.total_num
    assert server.open_count == pool.total_num
    assert len(server.made) - tally["broken"] == pool.total_num
    for fake in server.live_snapshot():
        assert not fake.in_trans and fake.get_autocommit()
        assert fake.owner is None
    pool.close()
    assert server.open_count == 0


def test_waiters_are_served_first_come_first_served(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, timeout=10)
    held = pool.get_conn()
    the_fake = held.raw
    order: List[int] = []
    idle_after_handoff: List[int] = []
    got: List[Any] = []
    lock = threading.Lock()
    waiters = 6

    def waiter(k: int) -> None:
        conn = pool.get_conn(timeout=10)
        with lock:
            order.append(k)
            got.append(conn.raw)
        conn.close()
        with lock:
            idle_after_handoff.append(pool.available_num)

    threads = []
    for k in range(waiters):
        t = threading.Thread(target=waiter, args=(k,), name=f"waiter{k}")
        t.start()
        threads.append(t)
        assert wait_until(lambda k=k: pool.get_stats()["waiting"] == k + 1)
    held.close()
    # Handed straight to the oldest waiter: it never became idle.
    assert pool.available_num == 0
    join_all(threads)
    assert order == list(range(waiters))
    assert all(raw is the_fake for raw in got)
    # Every return but the last found a waiter and skipped the idle list.
    assert idle_after_handoff[:-1] == [0] * (waiters - 1)
    stats = pool.get_stats()
    assert stats["connections_made"] == 1
    assert stats["borrows_waited"] == waiters
    assert stats["borrows"] == stats["returns"] == waiters + 1
    assert stats["waiting"] == 0 and stats["idle"] == 1


def test_borrow_timeout(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    with pytest.raises(PoolTimeout) as info:
        pool.get_conn(timeout=0.05)
    assert isinstance(info.value, GetConnectionFromPoolError)
    assert isinstance(info.value, TimeoutError)
    stats = pool.get_stats()
    assert stats["waiting"] == 0
    assert stats["borrow_timeouts"] == 1
    assert stats["borrows_waited"] == 1
    # The pool still works and the held connection was not disturbed.
    held.close()
    with pool.connection(timeout=0) as again:
        assert again.raw is not None
    assert pool.get_stats()["waiting"] == 0


def test_timeout_in_another_thread_leaves_queue_clean(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    outcome: List[BaseException] = []

    def impatient() -> None:
        try:
            pool.get_conn(timeout=0.05)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=impatient)
    t.start()
    join_all([t])
    assert len(outcome) == 1 and isinstance(outcome[0], PoolTimeout)
    assert pool.get_stats()["waiting"] == 0
    held.close()
    assert pool.available_num == 1  # nobody left in the queue to hand it to


def test_get_connection_0_5_0_timeout(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_connection()
    with pytest.raises(GetConnectionFromPoolError):
        pool.get_connection(retry_num=2, retry_interval=0.02)
    assert pool.get_stats()["waiting"] == 0
    held.close()


def test_timed_out_waiter_in_the_middle_is_skipped(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    served: List[str] = []
    errors: Dict[str, BaseException] = {}
    lock = threading.Lock()

    def waiter(name: str, timeout: float) -> None:
        try:
            conn = pool.get_conn(timeout=timeout)
        except BaseException as exc:
            errors[name] = exc
            return
        with lock:
            served.append(name)
        conn.close()

    specs = [("first", 10.0), ("impatient", 0.1), ("last", 10.0)]
    threads = {}
    for count, (name, timeout) in enumerate(specs, 1):
        threads[name] = threading.Thread(target=waiter, args=(name, timeout))
        threads[name].start()
        assert wait_until(lambda count=count: pool.get_stats()["waiting"] == count)
    join_all([threads["impatient"]])
    assert isinstance(errors.get("impatient"), PoolTimeout)
    assert pool.get_stats()["waiting"] == 2
    held.close()
    join_all(list(threads.values()))
    assert served == ["first", "last"]
    assert pool.get_stats()["waiting"] == 0


def test_close_fails_waiters(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    errors: List[BaseException] = []

    def waiter() -> None:
        try:
            pool.get_conn(timeout=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for count, t in enumerate(threads, 1):
        t.start()
        assert wait_until(lambda count=count: pool.get_stats()["waiting"] == count)
    pool.close()
    join_all(threads)
    assert len(errors) == 3 and all(isinstance(e, PoolClosed) for e in errors)
    stats = pool.get_stats()
    assert stats["waiting"] == 0
    assert stats["borrow_errors"] == 3, "borrows failed by close() are borrow errors too"
    held.close()
    assert server.open_count == 0 and pool.total_num == 0


def test_racing_timeouts_lose_no_connection(make_pool: Callable[..., ConnectionPool], busy_switching: None) -> None:
    """Waiters time out while connections are handed over: a grant that races
    a timeout must be either used or passed on, never lost."""
    maxsize, threads_n, rounds = 2, 32, 30
    server = FakeServer()
    pool = make_pool(maxsize=maxsize, connection_factory=server)
    lock = threading.Lock()
    tally = {"ok": 0, "timeouts": 0}

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        ok = timeouts = 0
        for _ in range(rounds):
            try:
                conn = pool.get_conn(timeout=rng.choice([0, 0.0005, 0.002, 0.01]))
            except PoolTimeout:
                timeouts += 1
                continue
            ok += 1
            if rng.random() < 0.5:
                time.sleep(0.0005)
            conn.close()
        with lock:
            tally["ok"] += ok
            tally["timeouts"] += timeouts

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    join_all(threads)
    stats = pool.get_stats()
    assert tally["ok"] + tally["timeouts"] == threads_n * rounds
    assert stats["borrows"] == stats["returns"] == tally["ok"]
    assert stats["borrow_timeouts"] == tally["timeouts"]
    assert stats["waiting"] == 0 and stats["borrowed"] == 0 and stats["connecting"] == 0
    assert stats["open"] == stats["idle"] == server.open_count
    assert server.high_water <= maxsize
    # Every connection still works for a borrower: none is stranded.
    held = [pool.get_conn(timeout=1) for _ in range(maxsize)]
    for conn in held:
        conn.close()


def test_close_while_busy_leaves_nothing_open(make_pool: Callable[..., ConnectionPool], busy_switching: None) -> None:
    maxsize = 4
    server = FakeServer(fail_rate=0.1, seed=3)
    pool = make_pool(maxsize=maxsize, connection_factory=server, pre_create_num=2)
    started = threading.Event()
    outcomes: List[BaseException] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(10_000):  # bounded; ends at PoolClosed long before
            try:
                conn = pool.get_conn(timeout=5)
            except (PoolTimeout, FakeConnectError):
                continue
            except BaseException as exc:
                with lock:
                    outcomes.append(exc)
                return
            started.set()
            if rng.random() < 0.2:
                conn.begin()
            if rng.random() < 0.1:
                conn.raw.break_()
            conn.close()
        with lock:
            outcomes.append(AssertionError("worker never saw the pool close"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    assert started.wait(10)
    time.sleep(0.02)
    pool.close()
    join_all(threads)
    assert len(outcomes) == 16 and all(isinstance(e, PoolClosed) for e in outcomes), outcomes[:3]
    stats = pool.get_stats()
    assert stats["open"] == stats["idle"] == stats["borrowed"] == stats["connecting"] == stats["waiting"] == 0
    assert pool.total_num == 0
    assert wait_until(lambda: server.open_count == 0, timeout=2)
    assert server.high_water <= maxsize
    assert stats["borrows"] == stats["returns"]


def test_a_return_racing_another_return_of_the_same_proxy_is_refused(
    make_pool: Callable[..., ConnectionPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads give one proxy back at once: both read its slot before
    taking the lock; the one that gets the lock second is refused, and the
    slot is parked once (not twice, not lent to two borrowers)."""
    pool = make_pool(maxsize=2, pre_create_num=1)
    conn = pool.get_conn()
    real = pool._needs_reset  # the driver's, kept by the pool
    raced = []

    def needs_reset(raw: Any, autocommit: bool) -> bool:
        # Runs before the lock is taken: the other return happens now.
        if not raced:
            raced.append(True)
            pool.release(conn)
        return real(raw, autocommit)

    monkeypatch.setattr(pool, "_needs_reset", needs_reset)
    with pytest.raises(ReturnConnectionToPoolError):
        pool.release(conn)
    monkeypatch.undo()
    stats = pool.get_stats()
    assert stats["returns"] == 1 and stats["idle"] == 1 and stats["borrowed"] == 0
    assert list(pool._idle).count(next(iter(pool._slots))) == 1
