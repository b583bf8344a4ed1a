"""close(timeout) and wait() sleep until the count they wait for changes
(_closing.py): woken by the core, not by a poll, and never past their bound."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import pytest

from pymysqlpool import ConnectionPool, PoolClosed, PoolTimeout

from .fakes import FakeServer


def _until(test: Callable[[], bool], seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while not test():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def _raising_in_thread(
    call: Callable[[], Any], catch: type[BaseException] = BaseException
) -> tuple[threading.Thread, list[BaseException]]:
    """``call`` on a daemon thread, started now; what it raises (of ``catch``) lands in the list."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except catch as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def test_close_with_a_timeout_wakes_when_the_last_borrowed_connection_comes_back(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    pool = make_pool(maxsize=2, pre_create_num=1)
    conn = pool.get_conn()
    cut: list[int] = []
    closer = threading.Thread(target=lambda: cut.append(pool.close(timeout=60)), daemon=True)
    closer.start()
    try:
        assert _until(lambda: bool(pool._waiters.watchers)), "close() never came to wait"
        watcher = pool._waiters.watchers[0]
        pool.release(conn)  # closed on return: the open count drops to 0
        closer.join(10)  # the 60 s grace is the bound; the return is what ends the wait
        assert not closer.is_alive() and cut == [0]
        assert not pool._waiters.watchers and watcher.wait(0) is False  # woken once, consumed
    finally:
        if closer.is_alive():
            pool._interrupt_late(0.0)


def test_close_with_a_timeout_cuts_what_is_still_out_at_its_deadline(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=2, pre_create_num=1)
    conn = pool.get_conn()
    started = time.monotonic()
    assert pool.close(timeout=0.2) == 1
    assert time.monotonic() - started >= 0.2 - 0.01
    pool.release(conn)
    assert pool.get_stats()["open"] == 0


def test_wait_wakes_when_the_warm_up_is_done_and_raises_once_the_pool_closes(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    pool = make_pool(maxsize=2, pre_create_num=2, open=False)
    pool.open(wait=True, timeout=30)
    assert pool.get_stats()["open"] >= 2

    def refuse(**kwargs: Any) -> Any:
        raise OSError("refused by the test")

    # Open, and never warm: wait() must sleep (a pool never opened raises at once).
    other = make_pool(maxsize=2, pre_create_num=2, open=False, connection_factory=refuse)
    other.open()
    thread, failed = _raising_in_thread(lambda: other.wait(60))
    assert _until(lambda: bool(other._waiters.watchers) or bool(failed))
    assert not failed, failed  # asleep on the pool's counts
    other.close()  # wakes the watcher: a closed pool cannot warm up
    thread.join(10)  # the 60 s bound is not what ends it
    assert not thread.is_alive() and len(failed) == 1 and isinstance(failed[0], PoolClosed), failed


def test_wait_times_out_at_its_bound_naming_the_connect_error(make_pool: Callable[..., ConnectionPool]) -> None:
    def refuse(**kwargs: Any) -> Any:
        raise OSError("refused by the test")

    pool = make_pool(maxsize=2, pre_create_num=1, open=False, connection_factory=refuse)
    pool.open()
    started = time.monotonic()
    with pytest.raises(PoolTimeout, match="refused by the test"):
        pool.wait(0.3)
    assert time.monotonic() - started >= 0.3 - 0.01


def test_asyncio_close_with_a_timeout_wakes_when_the_borrowed_connection_comes_back(async_pool_class: Any) -> None:
    async def main() -> int:
        pool = async_pool_class(maxsize=2, pre_create_num=1, host="127.0.0.1")
        async with pool:
            await pool.wait(5)
            conn = await pool.get_conn()
            closing = asyncio.ensure_future(pool.close(timeout=60))
            for _ in range(1000):
                if pool._waiters.watchers:
                    break
                await asyncio.sleep(0)
            assert pool._waiters.watchers, "close() never came to wait"
            await pool.release(conn)
            return await asyncio.wait_for(closing, 10)

    assert asyncio.run(main()) == 0


def test_wait_and_close_end_in_real_time_when_the_core_s_clock_stands_still(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    """A WAIT's timeout is real seconds: with the core given a clock that
    never moves (as the state machine tests give one), wait() still times
    out and close(timeout) still cuts, each after its own real bound."""

    def refuse(**kwargs: Any) -> Any:
        raise OSError("refused by the test")

    pool = make_pool(maxsize=2, pre_create_num=1, open=False, connection_factory=refuse)
    pool._use_clock(lambda: 1000.0)
    pool.open()
    waiter, outcome = _raising_in_thread(lambda: pool.wait(0.2), PoolTimeout)
    waiter.join(10)
    assert not waiter.is_alive() and outcome, "wait() never ended"

    other = make_pool(maxsize=2, pre_create_num=1)
    other._use_clock(lambda: 1000.0)
    conn = other.get_conn()
    cut: list[int] = []
    closer = threading.Thread(target=lambda: cut.append(other.close(timeout=0.2)), daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive() and cut == [1], cut
    other.release(conn)
