"""The thread signals that an asynchronous exception cannot break (_signals):
what each promises, and that a lock left held by an interrupted waiter does
not hang the others."""

from __future__ import annotations

import threading
import time

import pytest

from pymysqlpool._signals import Latch, Wakeup, start_thread
from support.waiting import wait_until


def test_a_wakeup_is_kept_until_taken_once() -> None:
    wake = Wakeup()
    assert not wake.wait(0)
    wake.set()
    wake.set()  # one pending: a second set adds nothing
    assert wake.wait(0)
    assert not wake.wait(0.01)
    wake.set()
    wake.clear()
    assert not wake.wait(0)
    assert not wake.wait(-1.0)  # a negative timeout is no endless wait


def test_a_wakeup_from_another_thread_ends_the_wait() -> None:
    wake = Wakeup()
    threading.Timer(0.05, wake.set).start()
    started = time.monotonic()
    assert wake.wait(10)
    assert time.monotonic() - started < 9  # woken, not timed out (a bound, not a speed)


def test_a_latch_wakes_every_waiter_and_stays_set() -> None:
    latch = Latch()
    assert not latch.is_set() and not latch.wait(0.01)
    woken: list[bool] = []
    waiters = [threading.Thread(target=lambda: woken.append(latch.wait(10))) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    latch.set()
    latch.set()
    assert wait_until(lambda: len(woken) == 4, timeout=10)
    assert woken == [True] * 4 and latch.is_set() and latch.wait(0) and latch.wait()


def test_a_latch_lock_left_held_by_an_interrupted_waiter_delays_no_one() -> None:
    """A waiter interrupted between taking the lock and passing it on keeps
    it: the others still see the flag, at once or within a slice."""
    latch = Latch()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(latch.wait(10)))
    waiter.start()
    latch.set()
    latch._lock.acquire(timeout=1)  # taken and never passed on, as an interrupt would leave it
    assert latch.wait(0) and latch.wait(1)
    assert wait_until(lambda: result == [True], timeout=10)


@pytest.mark.parametrize("raises", [False, True])
def test_start_thread_sets_its_latch_when_the_target_ends(raises: bool) -> None:
    go = Latch()

    def target() -> None:
        assert go.wait(10)
        if raises:
            raise RuntimeError("ended by an error")

    errors: list[str] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(str(args.exc_value))
    try:
        thread, ended = start_thread(target, "unit-signals")
        assert thread.daemon and thread.name == "unit-signals"
        assert not ended.wait(0.02)  # still running
        go.set()
        assert ended.wait(10)
        assert wait_until(lambda: not thread.is_alive(), timeout=10)
    finally:
        threading.excepthook = old_hook
    assert errors == (["ended by an error"] if raises else [])
