"""Interrupts (KeyboardInterrupt and other BaseExceptions) in the middle of a
borrow must leave the pool's books straight and lose no connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, List

import pytest

import pymysqlpool._waiting
from pymysqlpool import ConnectionPool

from .fakes import FakeServer
from .test_threads import join_all, wait_until


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt without upsetting pytest."""


def _interrupt_after_wake(monkeypatch: pytest.MonkeyPatch, proceed: threading.Event) -> List[bool]:
    """Make waiters raise Interrupt once their wait ends, after ``proceed`` is set."""
    woken: List[bool] = []
    real_wait = pymysqlpool._waiting.Waiter.wait

    def wait(self: Any, timeout: float) -> bool:
        got = real_wait(self, timeout)
        woken.append(got)
        assert proceed.wait(10)
        raise Interrupt

    monkeypatch.setattr(pymysqlpool._waiting.Waiter, "wait", wait)
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
    wait_until(lambda: pool.get_stats()["waiting"] == 1)
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
    wait_until(lambda: pool.get_stats()["waiting"] == 1)
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
    real_wait = pymysqlpool._waiting.Waiter.wait

    def wait(self: Any, timeout: float) -> bool:
        real_wait(self, 0)
        raise Interrupt

    monkeypatch.setattr(pymysqlpool._waiting.Waiter, "wait", wait)
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
