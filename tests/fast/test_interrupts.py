"""Interrupts (KeyboardInterrupt and other BaseExceptions) in the middle of a
borrow must leave the pool's books straight and lose no connection."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, List

import pytest

import pymysqlpool._waiting
from pymysqlpool import ConnectionPool, PoolTimeout
from pymysqlpool._slot import HELD, OUT
from support.leaks import LeakWarnings
from support.waiting import wait_until

from .fakes import FakeServer
from .test_lifecycle import conserved
from .test_threads import join_all


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt without upsetting pytest."""


def _interrupt_after_wake(monkeypatch: pytest.MonkeyPatch, proceed: threading.Event) -> List[bool]:
    """Make waiters raise Interrupt once their wait ends, after ``proceed`` is set."""
    woken: List[bool] = []
    real_wait = pymysqlpool._waiting.ThreadWaiter.wait

    def wait(self: Any, timeout: float) -> bool:
        got = real_wait(self, timeout)
        woken.append(got)
        assert proceed.wait(10)
        raise Interrupt

    monkeypatch.setattr(pymysqlpool._waiting.ThreadWaiter, "wait", wait)
    return woken


def _waiter_thread(pool: ConnectionPool, errors: List[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            pool.get_conn(timeout=10)
        except BaseException as exc:
            errors.append(exc)

    return threading.Thread(target=run)


def test_interrupted_waiter_passes_its_connection_on(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    proceed = threading.Event()
    woken = _interrupt_after_wake(monkeypatch, proceed)
    errors: List[BaseException] = []
    t = _waiter_thread(pool, errors)
    t.start()
    assert wait_until(lambda: pool.get_stats()["waiting"] == 1)
    held.close()  # handed to the waiter, which is interrupted before it can use it
    proceed.set()
    join_all([t])
    assert woken == [True] and len(errors) == 1 and isinstance(errors[0], Interrupt)
    stats = pool.get_stats()
    assert stats["waiting"] == 0 and stats["borrowed"] == 0
    assert pool.available_num == pool.total_num == server.open_count == 1
    assert stats["borrows"] == stats["returns"] == 1


def test_connection_handed_to_interrupted_waiter_after_close_is_closed(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    proceed = threading.Event()
    _interrupt_after_wake(monkeypatch, proceed)
    errors: List[BaseException] = []
    t = _waiter_thread(pool, errors)
    t.start()
    assert wait_until(lambda: pool.get_stats()["waiting"] == 1)
    held.close()  # handed to the waiter...
    pool.close()  # ...the pool closes before the waiter takes it...
    proceed.set()  # ...and the waiter is interrupted
    join_all([t])
    assert len(errors) == 1 and isinstance(errors[0], Interrupt)
    # A closed pool must not keep a connection idle: nobody will ever close it.
    assert pool.available_num == 0
    assert pool.total_num == server.open_count == 0


def test_interrupted_wait_without_grant_leaves_the_queue(
    make_pool: Callable[..., ConnectionPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = make_pool(maxsize=1)
    held = pool.get_conn()
    real_wait = pymysqlpool._waiting.ThreadWaiter.wait

    def wait(self: Any, timeout: float) -> bool:
        real_wait(self, 0)
        raise Interrupt

    monkeypatch.setattr(pymysqlpool._waiting.ThreadWaiter, "wait", wait)
    with pytest.raises(Interrupt):
        pool.get_conn(timeout=10)
    monkeypatch.undo()
    assert pool.get_stats()["waiting"] == 0
    held.close()
    assert pool.available_num == 1


def test_interrupted_connect_gives_the_slot_back(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    calls = {"n": 0}

    def factory(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Interrupt
        return server(**kwargs)

    pool = make_pool(maxsize=1, connection_factory=factory)
    with pytest.raises(Interrupt):
        pool.get_conn(timeout=0)
    stats = pool.get_stats()
    assert stats["connecting"] == 0 and stats["borrows"] == 0 and pool.total_num == 0
    assert stats["connect_errors"] == 0  # the borrower interrupted it: no failed connect
    with pool.connection(timeout=0):  # the one slot is free again
        pass


def test_interrupted_ping_discards_the_connection(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    pool = make_pool(maxsize=1, validation_interval=0)
    with pool.connection() as conn:
        fake = conn.raw

    def ping(reconnect: bool = False) -> None:
        raise Interrupt

    fake.ping = ping
    with pytest.raises(Interrupt):
        pool.get_conn(timeout=0)
    assert fake.disposed
    assert pool.total_num == server.open_count == 0
    assert pool.get_stats()["borrowed"] == 0
    with pool.connection(timeout=0) as conn:
        assert conn.raw is not fake


# -- an interrupt at every step ---------------------------------------------------


def books_exact(pool: ConnectionPool, server: FakeServer) -> None:
    """The quiet pool's books: every open connection idle or lent, none lost,
    every connection made either open or counted as closed."""
    assert wait_until(lambda: pool.get_stats()["connecting"] == 0)  # a background refill may be under way
    stats = pool.get_stats()
    assert stats["connecting"] == 0 and stats["waiting"] == 0
    assert stats["open"] == stats["idle"] + stats["borrowed"] == pool._open
    assert stats["open"] == len(pool._slots) == server.open_count
    assert conserved(pool)
    with pool._lock:
        pool._books.check_invariants(lending=not pool.closed)


def all_slots_usable(pool: ConnectionPool) -> None:
    conns = [pool.get_conn(timeout=1) for _ in range(pool.maxsize)]
    for conn in conns:
        pool.release(conn)


def raise_interrupt(*args: Any, **kwargs: Any) -> Any:
    raise Interrupt


def _dirty_return(pool: ConnectionPool) -> None:
    conn = pool.get_conn(timeout=1)
    conn.begin()
    pool.release(conn)


def _failed_with_block(pool: ConnectionPool) -> None:
    with pytest.raises(RuntimeError), pool.connection(timeout=1):
        raise RuntimeError("the borrower's own error")


def _validated_borrow(pool: ConnectionPool) -> None:
    pool.release(pool.get_connection(pre_ping=True))


def _close_pool(pool: ConnectionPool) -> None:
    pool.close()


# (what to break, which call of the fake or the driver raises Interrupt, what the borrower does)
INJECTIONS = [
    ("rollback on return", "FakeConnection.rollback", _dirty_return),
    ("autocommit restore on return", "FakeConnection.autocommit", _dirty_return),
    ("reset of a failed with-block", "_driver.reset", _failed_with_block),
    ("session reset on return", "_driver.reset_session", _dirty_return),
    ("socket probe on return", "_driver.mid_answer", _dirty_return),
    ("validation ping", "FakeConnection.ping", _validated_borrow),
    ("dial", "FakeServer.__call__", _validated_borrow),
    ("bookkeeping after a dial", "ConnectionPool._book_dialed", _validated_borrow),
    ("lending", "ConnectionPool._mark_lent", _validated_borrow),
    ("proxy creation", "pool.lend", _validated_borrow),
    ("polite close on pool close", "FakeConnection.close", _close_pool),
    ("unbooking on pool close", "ConnectionPool._unbook", _close_pool),
]


@pytest.mark.parametrize(("step", "target", "action"), INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_interrupt_at_any_step_keeps_the_books_exact(
    make_pool: Callable[..., ConnectionPool],
    server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    target: str,
    action: Callable[[ConnectionPool], None],
) -> None:
    import pymysqlpool._driver as driver
    import pymysqlpool.connection as connection
    import pymysqlpool.pool as pool_module

    from . import fakes

    owners = {
        "FakeConnection": fakes.FakeConnection,
        "FakeServer": fakes.FakeServer,
        "_driver": driver,
        "ConnectionPool": pool_module.ConnectionPool,
        "PooledConnection": connection.PooledConnection,
        "pool": pool_module,
    }
    owner_name, attr = target.split(".")
    owner = owners[owner_name]
    kwargs: dict[str, Any] = {"maxsize": 2, "pre_create_num": 1}
    if "session reset" in step:
        kwargs["reset_session"] = True
    if "dial" in step:
        kwargs["pre_create_num"] = 0
    pool = make_pool(**kwargs)
    real = getattr(owner, attr)
    calls = {"n": 0}

    def once(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Interrupt
        return real(*args, **kw)

    monkeypatch.setattr(owner, attr, once)
    with pytest.raises(Interrupt):
        action(pool)
    monkeypatch.undo()
    if pool.closed:
        assert pool.total_num == server.open_count == 0
        assert conserved(pool)
        return
    books_exact(pool, server)
    assert pool.get_stats()["borrowed"] == 0
    all_slots_usable(pool)
    books_exact(pool, server)


def test_interrupt_during_the_return_closes_the_connection_it_was_cleaning(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """0.5.0-era bug: maxsize=1, KeyboardInterrupt during the ROLLBACK of a
    return, and every later borrow raised PoolTimeout for ever."""
    pool = make_pool(maxsize=1)
    conn = pool.get_conn()
    fake = conn.raw
    conn.begin()
    fake.rollback = raise_interrupt
    with pytest.raises(Interrupt):
        pool.release(conn)
    assert fake.disposed and conn.returned  # its session state is unknown: never reused
    stats = pool.get_stats()
    assert stats["open"] == stats["idle"] == stats["borrowed"] == 0
    assert stats["returns"] == 1 and stats["closed_broken"] == 1
    with pool.connection(timeout=0) as again:
        assert again.raw is not fake


def test_interrupt_as_a_warmed_connection_is_parked_loses_no_place(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt at the call that parks a connection the warm-up just
    booked: the slot is counted open and held, not yet idle. The warm-up's
    clean-up closes it and stops counting it, so the pool can still open all
    ``maxsize`` connections (a slot left NEW would have been counted open
    for ever: unbooking a NEW slot counts a dial, not an open)."""
    from pymysqlpool._books import Books

    pool = make_pool(maxsize=2, pre_create_num=2, open=False)
    assert pool.start()
    real_park = Books.park
    parks: List[Any] = []

    def park(books: Books, slot: Any, now: float) -> None:
        parks.append(slot.state)
        if len(parks) == 1:
            raise Interrupt
        real_park(books, slot, now)

    monkeypatch.setattr(Books, "park", park)
    with pytest.raises(Interrupt):
        pool.prefill()
    monkeypatch.undo()
    assert parks == [HELD]  # interrupted at the first park, before any store of its own
    stats = pool.get_stats()
    assert stats["open"] == stats["idle"] == stats["borrowed"] == pool.total_num == server.open_count == 0
    assert stats["closed_on_pool_close"] == stats["connections_made"] == 2  # both warmed, both closed
    assert conserved(pool)
    with pool._lock:
        pool._books.check_invariants()
    all_slots_usable(pool)
    books_exact(pool, server)


# -- asynchronous exceptions: the storm ---------------------------------------------


def _async_raise(thread: threading.Thread, exc_type: type) -> bool:
    import ctypes

    assert thread.ident is not None
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))
    return bool(hit == 1)


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="before CPython 3.11 an asynchronous exception can land between any two bytecodes,"
    " even between two attribute stores, so no pure-Python bookkeeping can be made atomic",
)
def test_asynchronous_exception_storm_loses_no_slot(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, leak_warnings: LeakWarnings
) -> None:
    """Asynchronous exceptions land between any two calls of borrowers and
    returners, also inside the clean-up of an earlier one; afterwards the books
    must be exact and, once the maintenance's reconcile has closed what was
    orphaned (a slot lent to nobody, held by no step, a right to dial nobody
    uses), every slot usable again."""
    import random
    import time

    pool = make_pool(maxsize=8, size=8, validation_interval=0.0005, keepalive_interval=0, max_idle=0)
    stop = threading.Event()
    rng = random.Random(7)

    def worker() -> None:
        while not stop.is_set():
            try:
                with pool.connection(timeout=0.5) as conn:
                    if rng.random() < 0.3:
                        conn.begin()
            except Interrupt:
                continue
            except Exception:
                continue

    old_interval = sys.getswitchinterval()
    old_hook = sys.unraisablehook
    # An exception landing in a proxy's __del__ is "unraisable"; pytest's own
    # hook would keep its traceback, and so the half-finalized proxy, alive.
    unraisable: List[str] = []
    sys.unraisablehook = lambda info: unraisable.append(type(info.exc_value).__name__)
    # A worker hit outside its own try ends; that is the injector's doing, not the pool's.
    ended: List[str] = []
    old_thread_hook = threading.excepthook
    threading.excepthook = lambda args: ended.append(args.exc_type.__name__)
    sys.setswitchinterval(1e-5)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(32)]
    for t in threads:
        t.start()
    injected = 0
    deadline = time.monotonic() + 8.0
    try:
        while injected < 1500 and time.monotonic() < deadline:
            if _async_raise(rng.choice(threads), Interrupt):
                injected += 1
            time.sleep(0.0005)
    finally:
        stop.set()
        sys.setswitchinterval(old_interval)
    # A worker may be hit once more while leaving: make sure each one ends.
    end = time.monotonic() + 10
    for t in threads:
        while t.is_alive() and time.monotonic() < end:
            t.join(0.05)
    sys.unraisablehook = old_hook
    threading.excepthook = old_thread_hook
    assert not any(t.is_alive() for t in threads)
    assert set(unraisable) | set(ended) <= {"Interrupt"}
    assert injected >= 200
    import gc

    gc.collect()
    pool._run(pool._reclaim_plan())
    # The maintenance reconciles after a grace (2 x connect_timeout + 1 s);
    # with every worker gone nothing is in progress, so no grace here.
    pool._run(pool._reconcile_plan(0, {}))
    stats = pool.get_stats()
    books = f"{stats}, held={pool._held}, slots={len(pool._slots)}, unraisable={len(unraisable)}"
    assert stats["connecting"] == 0 and stats["waiting"] == 0 and pool._held == 0, books
    assert stats["open"] == len(pool._slots) and stats["open"] <= pool.maxsize, books
    assert conserved(pool), books
    # Proxies an interrupt orphaned are reclaimed, each with one warning (none
    # if an interrupt cut the reclaim between its count and its warning).
    leaks = leak_warnings.messages
    assert len(leaks) <= stats["leaks_detected"] and all("garbage-collected" in m for m in leaks), books
    pool._books.check_invariants(lending=not pool.closed)
    borrowed: List[Any] = []
    for _ in range(pool.maxsize):
        try:
            borrowed.append(pool.get_conn(timeout=0.2))
        except PoolTimeout:
            break
    for conn in borrowed:
        pool.release(conn)
    # The one loss left: an exception inside a dropped proxy's __del__
    # (reported as unraisable) before it told the pool; its slot looks lent.
    # Measured: 0 in 30 runs (before the reconcile took held slots and rights
    # to dial, 3 of 40 runs lost 1 to 3 slots).
    assert pool.maxsize - len(borrowed) <= len(unraisable), books
    assert not server.ownership_violations


def test_reconcile_closes_a_slot_lent_to_no_proxy_after_the_grace(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """What an exception inside a borrow's own clean-up can leave: a slot
    granted (OUT) that no proxy ever held. The maintenance closes it once it
    stayed so for the grace period, and says how many it closed; a lent slot
    is left alone."""
    pool = make_pool(maxsize=3, pre_create_num=2)
    lent = pool.get_conn()
    with pool._lock:  # granted, and then the borrower vanished
        orphan = pool._idle.pop()
        orphan.state = OUT
        pool._stats.borrows += 1
    assert orphan is not None and not orphan.proxied
    seen: dict = {}
    assert pool._run(pool._reconcile_plan(60.0, seen)) == 0  # within the grace: maybe a borrow in progress
    assert list(seen) == [orphan]
    assert pool._run(pool._reconcile_plan(0.0, seen)) == 1
    stats = pool.get_stats()
    assert stats["closed_orphaned"] == 1 and stats["open"] == 1 and stats["borrowed"] == 1
    assert not seen and orphan.raw.disposed
    pool.release(lent)
    assert conserved(pool)


def test_reconcile_closes_a_slot_counted_idle_but_not_queued_at_once(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """An exception between marking a slot idle and queueing it (possible
    between any two bytecodes before CPython 3.11) leaves a slot no borrow
    can find: closed by the next round, no grace needed."""
    pool = make_pool(maxsize=2, pre_create_num=2)
    # The maintenance's own reconcile would race this one to the lost slot
    # (then this call finds nothing): it is stopped, so this call is the round.
    assert pool._maintenance is not None
    pool._maintenance.stop()
    with pool._lock:
        lost = pool._idle.popleft()  # still IDLE, no longer in the queue
    assert pool._run(pool._reconcile_plan(60.0, {})) == 1
    stats = pool.get_stats()
    assert stats["closed_orphaned"] == 1 and stats["open"] == 1 and lost.raw.disposed
    assert conserved(pool)
    first, second = pool.get_conn(timeout=0.5), pool.get_conn(timeout=0.5)  # both slots usable
    pool.release(first)
    pool.release(second)
