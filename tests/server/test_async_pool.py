"""AsyncConnectionPool against the shared server: what only asyncio can do to a pool.

Cancellation lands at any ``await``: while a borrower is queued, while an idle
connection is validated, while a return rolls back, while the pool closes, and
thousands of times at random in a storm. After each, the books are exact (every
open connection is idle, lent or held by the pool), every slot can be lent, the
server shows no more connections than the pool owns, and no borrower ever sees
another borrower's transaction. Also: a pool refuses a second event loop at
once, starts no thread, serves waiters in arrival order, bounds a borrow by its
timeout, and guards returned, double-returned, half-read and dropped
connections.

Every test runs its own event loop with ``asyncio.run`` (no pytest plugin), and
every ``asyncio.run`` is bounded by ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import random
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import aiomysql
import pymysql
import pytest
from server_helpers import ServerView, query, with_limits

from pymysqlpool import AsyncConnectionPool, AsyncPooledConnection
from pymysqlpool._slot import OUT
from pymysqlpool.errors import (
    ConnectionReturnedError,
    PoolClosed,
    PoolTimeout,
    ReturnConnectionToPoolError,
    WrongEventLoop,
)
from support.leaks import LeakWarnings
from support.server_env import mysql_kwargs
from support.waiting import settle

pytestmark = pytest.mark.server

TEST_LIMIT = 60.0  # seconds: no test's event loop runs longer
CONNECT_TIMEOUT = 2.0
ROWS = "id INT AUTO_INCREMENT PRIMARY KEY, kind INT NOT NULL, v INT NOT NULL"
BIG = "SELECT seq FROM seq_1_to_20000"
SMALL = "SELECT seq FROM seq_1_to_500"
UNBUFFERED_WARNING = "Previous unbuffered result"


def run(coro: Coroutine[Any, Any, Any], limit: float = TEST_LIMIT) -> Any:
    """Run ``coro`` on a new event loop, failing (not hanging) after ``limit`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, limit))


def make_async_pool(view: ServerView, **kwargs: Any) -> AsyncConnectionPool:
    """A pool whose connections the server view counts."""
    return AsyncConnectionPool(**{**view.connect_kwargs, "connect_timeout": CONNECT_TIMEOUT, **kwargs})


async def fetch(conn: AsyncPooledConnection, sql: str, args: Any = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return list(await cur.fetchall())


def lent_slots(pool: AsyncConnectionPool) -> int:
    return sum(1 for slot in pool._slots if slot.state == OUT)


def assert_books(pool: AsyncConnectionPool, lent: int = 0) -> dict[str, Any]:
    """The pool's books add up, counted from its slots, not from its gauges:
    every open connection is idle, lent (``lent`` of them) or held; nothing is
    being dialed or waited for; every connection made was closed or is open."""
    stats = pool.get_stats()
    assert pool._open == len(pool._slots), stats
    assert pool._open == len(pool._idle) + lent_slots(pool) + pool._held, stats
    assert lent_slots(pool) == lent, stats
    assert pool._held == stats["killing"], stats  # held: only slots whose abandoned session is being killed
    assert stats["connecting"] == 0 and stats["waiting"] == 0, stats
    assert 0 <= stats["open"] <= stats["pool_max"], stats
    closes = sum(value for name, value in stats.items() if name.startswith("closed_")) + stats["leaks_reclaimed"]
    assert stats["connections_made"] == closes + stats["open"] - stats["killing"], stats
    # Every borrow that happened ended: given back, or dropped and reclaimed.
    assert stats["borrows"] == stats["returns"] + stats["leaks_reclaimed"] + lent, stats
    return stats


async def assert_slots_usable(
    pool: AsyncConnectionPool, admin: Any, view: ServerView, table: str | None = None
) -> None:
    """Every one of ``maxsize`` slots can be lent at once, each a session of
    its own with no transaction open (nor, if ``table`` is given, any row of
    another borrower's uncommitted transaction); the server shows no more
    connections than the pool owns."""
    conns = [await pool.get_conn(timeout=5) for _ in range(pool.maxsize)]
    try:
        ids = set()
        for conn in conns:
            in_trans, conn_id = (await fetch(conn, "SELECT @@in_transaction, CONNECTION_ID()"))[0]
            assert in_trans == 0, "a borrower was lent a connection inside another borrower's transaction"
            ids.add(conn_id)
            if table is not None:
                assert (await fetch(conn, f"SELECT COUNT(*) FROM `{table}` WHERE kind = 1"))[0][0] == 0
        assert len(ids) == pool.maxsize
    finally:
        for conn in conns:
            await pool.release(conn)
    assert_books(pool)
    assert await settle(lambda: view.count(admin) == pool.total_num), (view.count(admin), pool.get_stats())
    assert view.count(admin) <= pool.maxsize


# -- the quick start ----------------------------------------------------------------


def test_quick_start_and_exact_stats(server_view: ServerView, admin: Any) -> None:
    async def main() -> None:
        async with make_async_pool(server_view, maxsize=10, pre_create_num=2, pool_name="api") as pool:
            assert pool.total_num == 2 and pool.available_num == 2
            async with pool.connection() as conn, conn.cursor() as cur:
                await cur.execute("SELECT 1")
                assert await cur.fetchone() == (1,)
            conn = await pool.get_conn(timeout=2)
            assert pool.available_num == 1
            await pool.release(conn)
            assert conn.returned
            assert pool.available_num == 2 and pool.total_num == 2
            stats = assert_books(pool)
            assert stats["borrows"] == stats["returns"] == 2
            assert stats["connections_made"] == 2 and stats["open"] == 2
            assert stats["rollbacks_on_return"] == 0  # a clean return sends nothing
            assert await settle(lambda: server_view.count(admin) == 2)
        assert pool.closed
        stats = pool.get_stats()
        assert stats["open"] == 0 and stats["closed_on_pool_close"] == 2
        assert stats["connections_made"] == stats["closed_on_pool_close"]

    run(main())


# -- cancellation at every await ---------------------------------------------------


def test_cancel_while_queued_and_after_hand_off(server_view: ServerView, admin: Any) -> None:
    """A cancelled waiter leaves the queue; one cancelled after a connection
    (or the right to dial) was handed to it passes that on, unused."""

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=2) as pool:
            held = [await pool.get_conn(timeout=5) for _ in range(2)]

            # Queued, then cancelled.
            waiter = asyncio.create_task(pool.get_conn(timeout=10))
            await asyncio.sleep(0)
            assert pool.get_stats()["waiting"] == 1
            waiter.cancel()
            await asyncio.wait({waiter}, timeout=5)
            assert waiter.cancelled()
            assert pool.get_stats()["waiting"] == 0
            assert_books(pool, lent=2)

            # Handed a connection by a clean return, cancelled before it ran:
            # the connection goes back to idle, not lost, not closed.
            waiter = asyncio.create_task(pool.get_conn(timeout=10))
            await asyncio.sleep(0)
            await pool.release(held.pop())
            assert waiter._fut_waiter is not None and waiter._fut_waiter.done()  # served, not yet run
            waiter.cancel()
            await asyncio.wait({waiter}, timeout=5)
            assert waiter.cancelled()
            assert pool.available_num == 1 and pool.total_num == 2
            assert_books(pool, lent=1)

            # Handed the right to dial (a broken connection was closed on
            # return), cancelled before it dialed: the right goes back.
            spare = await pool.get_conn(timeout=5)
            waiter = asyncio.create_task(pool.get_conn(timeout=10))
            await asyncio.sleep(0)
            assert pool.get_stats()["waiting"] == 1
            spare.raw.close()  # the socket is gone: closed on return
            await pool.release(spare)
            assert pool.get_stats()["connecting"] == 1  # the waiter holds the right to dial
            waiter.cancel()
            await asyncio.wait({waiter}, timeout=5)
            assert waiter.cancelled()
            stats = assert_books(pool, lent=1)
            assert stats["closed_broken"] == 1 and stats["open"] == 1

            await pool.release(held.pop())
            await assert_slots_usable(pool, admin, server_view)

    run(main())


async def _sweep(
    start: Callable[[], Coroutine[Any, Any, Any]],
    steps: int,
    after: Callable[[asyncio.Task[Any]], Any],
    delay: float = 0.0,
) -> int:
    """Start ``start()`` as a task, let the loop run ``steps`` times (then
    ``delay`` seconds more: network answers take real time), cancel it;
    ``after(task)`` settles what the task left. 1 if the cancel landed while
    the task ran (not before it started, not after it finished), else 0."""
    task = asyncio.create_task(start())
    for _ in range(steps):
        await asyncio.sleep(0)
    if delay:
        await asyncio.sleep(delay)
    started = steps > 0 or delay > 0
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    assert done, "a cancelled pool call did not end"
    await after(task)
    return int(started and task.cancelled())


async def _duration(start: Callable[[], Coroutine[Any, Any, Any]]) -> float:
    """How long ``start()`` takes when left alone (its result is discarded)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    await start()
    return loop.time() - began


def _delays(duration: float, points: int = 16) -> list[float]:
    """Cancel moments spread over an operation that takes ``duration``, and
    beyond it (its length varies from one run to the next)."""
    return [duration * 2.0 * i / points for i in range(points + 1)]


def test_cancel_during_validation_ping(server_view: ServerView, admin: Any) -> None:
    """validation_interval=0: every borrow of an idle connection pings it
    first; a cancel in the ping closes that connection (its answer is
    unread), and nothing else changes."""

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=3, pre_create_num=0, validation_interval=0) as pool:
            landed = 0
            for steps in range(8):
                for timeout in (None, 5.0):  # the direct path and the timed one
                    conns = [await pool.get_conn(timeout=5) for _ in range(pool.maxsize)]
                    for conn in conns:
                        await pool.release(conn)
                    before = pool.get_stats()

                    async def give_back(task: asyncio.Task[Any]) -> None:
                        if not task.cancelled():
                            await pool.release(task.result())

                    landed += await _sweep(functools.partial(pool.get_conn, timeout=timeout), steps, give_back)
                    stats = assert_books(pool)
                    # Only the connection being pinged may have been closed.
                    assert stats["closed_broken"] - before["closed_broken"] <= 1, stats
                    assert stats["closed_failed_check"] == 0, stats
            assert landed > 0
            stats = pool.get_stats()
            assert stats["closed_broken"] > 0, "no cancel landed inside a validation ping"
            await assert_slots_usable(pool, admin, server_view)

    run(main())


def test_cancel_during_dial_and_warm_up(server_view: ServerView, admin: Any) -> None:
    """A borrow that must open a connection, and a pool warming up in ``async
    with``, cancelled at each step of the handshake and set-up: the right to
    dial goes back, a half-made connection is closed, the books stay exact,
    and the server keeps none of it."""

    async def main() -> None:
        probe = make_async_pool(server_view, maxsize=1)

        async def borrow_and_return() -> None:
            await probe.release(await probe.get_conn(timeout=5))

        dial = await _duration(borrow_and_return)
        await probe.close(timeout=0)
        landed = finished = 0
        for delay in _delays(dial):
            steps = 1
            pool = make_async_pool(server_view, maxsize=2)

            async def give_back(task: asyncio.Task[Any], pool: AsyncConnectionPool = pool) -> None:
                if not task.cancelled():
                    await pool.release(task.result())

            hit = await _sweep(functools.partial(pool.get_conn, timeout=5), steps, give_back, delay)
            landed += hit
            finished += int(pool.get_stats()["borrows"] == 1)
            stats = assert_books(pool)
            assert stats["open"] <= 1, stats
            await assert_slots_usable(pool, admin, server_view)
            await pool.close()
            assert await settle(lambda: server_view.count(admin) == 0)
        assert landed > 0 and finished > 0, (landed, finished)  # the moments spanned the whole dial

        probe = make_async_pool(server_view, maxsize=3, pre_create_num=3)
        warm = await _duration(probe.__aenter__)
        await probe.close()
        landed = finished = 0
        for delay in _delays(warm):
            pool = make_async_pool(server_view, maxsize=3, pre_create_num=3)

            async def leave(task: asyncio.Task[Any], pool: AsyncConnectionPool = pool) -> None:
                if not task.cancelled():
                    await pool.close()

            landed += await _sweep(pool.__aenter__, 0, leave, delay)
            finished += int(pool.get_stats()["connections_made"] == 3 and pool.get_stats()["connect_errors"] == 0)
            if delay:
                assert pool.closed  # a cancelled warm-up closes the pool
            stats = pool.get_stats()
            assert stats["open"] == 0 and stats["connecting"] == 0 and not pool._slots, stats
            closes = sum(value for name, value in stats.items() if name.startswith("closed_"))
            assert stats["connections_made"] == closes, stats
            assert await settle(lambda: server_view.count(admin) == 0)
        assert landed > 0 and finished > 0, (landed, finished)

    run(main())


def test_cancel_during_rollback_on_return(server_view: ServerView, admin: Any, make_table: Any) -> None:
    """A return cancelled while it rolls back closes the connection: its rows
    are never seen, by the server or by the next borrowers."""
    table = make_table("rows", ROWS)

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=2, pre_create_num=0) as pool:
            landed = 0
            for steps in range(8):
                conn = await pool.get_conn(timeout=5)
                await fetch(conn, "BEGIN")
                await fetch(conn, f"INSERT INTO `{table}` (kind, v) VALUES (1, %s)", (steps,))

                async def finish(task: asyncio.Task[Any], conn: AsyncPooledConnection = conn) -> None:
                    if not conn.returned:  # cancelled before the return started
                        await pool.release(conn)

                landed += await _sweep(lambda conn=conn: pool.release(conn), steps, finish)  # type: ignore[misc]
                assert conn.returned
                with pytest.raises(ConnectionReturnedError):
                    await fetch(conn, "SELECT 1")
                assert_books(pool)
                assert query(admin, f"SELECT COUNT(*) FROM `{table}`")[0][0] == 0
                await assert_slots_usable(pool, admin, server_view, table)
            assert landed > 0
            stats = pool.get_stats()
            assert stats["closed_broken"] > 0, "no cancel landed inside the rollback"
            assert stats["rollbacks_on_return"] > 0, "no return ran its rollback to the end"

    run(main())
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`")[0][0] == 0


def test_cancel_during_close(server_view: ServerView, admin: Any) -> None:
    """close() cancelled anywhere still leaves a closed pool: nothing lent any
    more, its idle connections closed, a borrowed one closed when it comes
    back, every close counted, the server shows none."""

    async def main() -> None:
        landed = 0
        for steps in range(8):
            pool = make_async_pool(server_view, maxsize=4, pre_create_num=3)
            await pool.__aenter__()
            lent = await pool.get_conn(timeout=5)

            async def closed_anyway(task: asyncio.Task[Any], pool: AsyncConnectionPool = pool) -> None:
                await pool.close()  # idempotent: finishes what the cancel cut short

            landed += await _sweep(pool.close, steps, closed_anyway)
            assert pool.closed
            with pytest.raises(PoolClosed):
                await pool.get_conn(timeout=1)
            assert pool.total_num == 1 and pool._held == 0
            await pool.release(lent)
            stats = pool.get_stats()
            assert stats["open"] == 0 and not pool._slots and pool._held == 0, stats
            closes = sum(value for name, value in stats.items() if name.startswith("closed_"))
            assert stats["connections_made"] == closes, stats
            assert stats["borrows"] == stats["returns"], stats
            left = [t for t in asyncio.all_tasks() if t.get_name().startswith("pymysqlpool-maintenance")]
            assert not left, (steps, left)
            assert await settle(lambda: server_view.count(admin) == 0)
        assert landed > 0

        # Cancelled while close(timeout) waits for a borrowed connection: the
        # next close(timeout=0) cuts it, and its return closes it.
        pool = make_async_pool(server_view, maxsize=2, pre_create_num=1)
        await pool.__aenter__()
        lent = await pool.get_conn(timeout=5)
        closing = asyncio.create_task(pool.close(timeout=5))
        await asyncio.sleep(0.1)
        assert pool.closed and not closing.done()
        closing.cancel()
        await asyncio.wait({closing}, timeout=5)
        assert closing.cancelled()
        assert await pool.close(timeout=0) == 1
        with pytest.raises(pymysql.err.OperationalError):
            await fetch(lent, "SELECT 1")
        await pool.release(lent)
        assert await settle(lambda: pool.get_stats()["killing"] == 0)  # cut mid-answer: killed first
        stats = pool.get_stats()
        assert stats["open"] == 0 and not pool._slots and pool._held == 0, stats
        assert await settle(lambda: server_view.count(admin) == 0)

    run(main())


# -- the cancel storm -------------------------------------------------------------


class Storm:
    """``workers`` tasks borrowing in a loop, each operation a task of its own
    that a canceller cancels at random moments."""

    def __init__(self, pool: AsyncConnectionPool, table: str, workers: int, seconds: float, target: int = 0) -> None:
        self.pool = pool
        self.table = table
        self.workers = workers
        self.seconds = seconds
        # Runs on past ``seconds`` (up to 4 x) until ``target`` cancels landed:
        # a loaded machine lands fewer per second, and the count is the test.
        self.target = target
        self._end = self._hard_end = 0.0
        self.ops: dict[int, asyncio.Task[None]] = {}
        self.started: set[int] = set()
        self.cancels_sent = 0
        self.landed = 0
        self.completed = 0
        self.committed: list[int] = []  # v of autocommit inserts the server acknowledged
        self.violations: list[Any] = []
        self.errors: list[BaseException] = []
        self.rng = random.Random(20261129)
        self._tag = 0

    async def _op(self, key: int, kind: int) -> None:
        self.started.add(key)
        pool, table = self.pool, self.table
        # Half the borrows take the direct path (no timeout given), half the timed one.
        async with pool.connection(timeout=None if key % 2 else 10.0) as conn:
            if kind == 0:  # a probe: nobody else's transaction is visible here
                # First, with no table touched: a statement that reads a table
                # opens a transaction itself when autocommit is off.
                in_trans = (await fetch(conn, "SELECT @@in_transaction"))[0][0]
                uncommitted = (await fetch(conn, f"SELECT COUNT(*) FROM `{table}` WHERE kind = 1"))[0][0]
                if (in_trans, uncommitted) != (0, 0):
                    self.violations.append((in_trans, uncommitted))
            elif kind == 1:  # a transaction never committed: rolled back on return
                await fetch(conn, "BEGIN")
                await fetch(conn, f"INSERT INTO `{table}` (kind, v) VALUES (1, %s)", (key,))
                await fetch(conn, "SELECT 1")
            elif kind == 2:  # committed: acknowledged means there for good
                await fetch(conn, f"INSERT INTO `{table}` (kind, v) VALUES (0, %s)", (key,))
                await conn.commit()
                self.committed.append(key)
            elif kind == 3:  # a half-read unbuffered answer left behind: closed on return
                cur = await conn.cursor(pymysql.cursors.SSCursor)
                await cur.execute(SMALL)
                await cur.fetchmany(3)
            elif kind == 5:  # the documented streaming form: the block's end reads the rest
                async with conn.cursor(aiomysql.SSDictCursor) as cur:
                    await cur.execute(SMALL)
                    await cur.fetchmany(3)
            else:
                assert (await fetch(conn, "SELECT 1")) == [(1,)]

    def _over(self, now: float) -> bool:
        return now >= self._hard_end or (now >= self._end and self.landed >= self.target)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(400_000):
            if self._over(loop.time()):
                return
            self._tag += 1
            key = self._tag
            kind = self.rng.choice((0, 0, 1, 1, 2, 2, 4, 4, 4, 3, 5))
            task = asyncio.create_task(self._op(key, kind))
            self.ops[key] = task
            await asyncio.wait({task})
            del self.ops[key]
            if task.cancelled():
                if key in self.started:
                    self.landed += 1
                continue
            exc = task.exception()
            if exc is not None:
                self.errors.append(exc)
            else:
                self.completed += 1

    async def _canceller(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(4_000_000):
            if self._over(loop.time()):
                return
            if self.ops:
                task = self.ops[self.rng.choice(list(self.ops))]
                if not task.done():
                    task.cancel()
                    self.cancels_sent += 1
            if self.rng.random() < 0.8:
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(self.rng.random() * 0.001)

    async def run(self) -> None:
        now = asyncio.get_running_loop().time()
        self._end, self._hard_end = now + self.seconds, now + 4 * self.seconds
        canceller = asyncio.create_task(self._canceller())
        await asyncio.wait_for(asyncio.gather(*(self._worker() for _ in range(self.workers))), 4 * self.seconds + 30)
        await canceller


STORMS = {
    # pool settings -> (seconds, cancels that must land)
    "default": ({}, 5.0, 1000),
    "autocommit off": ({"autocommit": False}, 2.0, 300),
    "reset_session": ({"reset_session": True}, 2.0, 300),
    "validate every borrow": ({"validation_interval": 0, "keepalive_interval": 0.1}, 2.0, 300),
}


@pytest.mark.parametrize("variant", list(STORMS))
def test_cancel_storm(variant: str, server_view: ServerView, admin: Any, make_table: Any) -> None:
    """64 tasks on 8 connections borrow, query, write in transactions they
    never commit, commit others, leave unbuffered answers half-read, while a
    canceller cancels their operations at random moments."""
    table = make_table("rows", ROWS)
    settings, seconds, must_land = STORMS[variant]
    storm: Storm | None = None

    async def main() -> None:
        nonlocal storm
        async with make_async_pool(server_view, maxsize=8, pre_create_num=2, **settings) as pool:
            storm = Storm(pool, table, workers=64, seconds=seconds, target=must_land)
            await storm.run()
            assert not storm.errors, storm.errors[:5]
            assert not storm.violations, storm.violations[:5]
            assert storm.landed >= must_land, (storm.landed, storm.cancels_sent, storm.completed)
            assert storm.completed > 0
            assert_books(pool)
            await assert_slots_usable(pool, admin, server_view, table)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(main())
    assert storm is not None
    assert not [w for w in caught if UNBUFFERED_WARNING in str(w.message)]
    rows = query(admin, f"SELECT kind, v FROM `{table}`")
    assert not [row for row in rows if row[0] == 1], "a transaction that was never committed left rows"
    missing = set(storm.committed) - {row[1] for row in rows}
    assert not missing, f"acknowledged autocommit inserts were rolled back (ran in a leaked transaction): {missing}"


# -- one event loop per pool, no thread ---------------------------------------------


class LoopThread:
    """An event loop running in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop-a", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


WRONG_LOOP_CALLS = ("get_conn", "release", "connection", "check", "drain", "resize", "async with", "close")


async def _wrong_loop_calls(pool: AsyncConnectionPool, foreign: AsyncPooledConnection) -> list[str]:
    """Each call of the pool from this loop; the names of those that raised
    WrongEventLoop within a second."""

    async def borrow_in_block() -> None:
        async with pool.connection(timeout=1):
            pass

    async def enter() -> None:
        async with pool:
            pass

    calls: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
        "get_conn": lambda: pool.get_conn(timeout=1),
        "release": lambda: pool.release(foreign),
        "connection": borrow_in_block,
        "check": pool.check,
        "drain": pool.drain,
        "resize": lambda: pool.resize(maxsize=pool.maxsize),
        "async with": enter,
        "close": pool.close,
    }
    refused = []
    for name in WRONG_LOOP_CALLS:
        try:
            await asyncio.wait_for(calls[name](), 1.0)
        except WrongEventLoop:
            refused.append(name)
    return refused


def test_wrong_event_loop_refused_at_once(server_view: ServerView, admin: Any) -> None:
    # Loop A (another thread) owns the pool and keeps it open while loop B calls it.
    loop_a = LoopThread()
    try:
        pool = make_async_pool(server_view, maxsize=2, pre_create_num=1)
        loop_a.call(pool.__aenter__())
        lent = loop_a.call(pool.get_conn(timeout=5))
        assert run(_wrong_loop_calls(pool, lent), 10) == list(WRONG_LOOP_CALLS)
        # Nothing changed for loop A.
        assert not pool.closed and not lent.returned
        loop_a.call(pool.release(lent))
        assert loop_a.call(fetch_one(pool)) == [(1,)]
        loop_a.call(pool.close())
    finally:
        loop_a.stop()

    # asyncio.run twice: the second run's loop is another loop (the first one closed
    # the pool, cutting the connection it still lent).
    pool = make_async_pool(server_view, maxsize=2)

    async def first() -> AsyncPooledConnection:
        async with pool.connection(timeout=5) as conn:
            assert (await fetch(conn, "SELECT 1")) == [(1,)]
        lent = await pool.get_conn(timeout=5)
        assert await pool.close(timeout=0) == 1
        return lent

    lent = run(first())
    # Its loop has ended: close() is the one call another loop may make.
    assert run(_wrong_loop_calls(pool, lent), 10) == [name for name in WRONG_LOOP_CALLS if name != "close"]
    assert server_view.settles_at(admin, 0, timeout=5)


async def fetch_one(pool: AsyncConnectionPool) -> list[Any]:
    async with pool.connection(timeout=5) as conn:
        return await fetch(conn, "SELECT 1")


def _executor_threads() -> set[str]:
    """The loop's default executor's threads (a DNS lookup of a host name runs there)."""
    return {t.name for t in threading.enumerate() if t.name.startswith("asyncio_")}


def _other_threads() -> set[str]:
    return {t.name for t in threading.enumerate()} - _executor_threads()


def test_no_thread_per_pool(server_view: ServerView) -> None:
    async def main() -> None:
        before = _other_threads()
        count = threading.active_count() - len(_executor_threads())
        pool = make_async_pool(server_view, maxsize=4, pre_create_num=2, pool_name="threadless", keepalive_interval=1)
        async with pool:
            maintenance = [t for t in asyncio.all_tasks() if t.get_name() == "pymysqlpool-maintenance-threadless"]
            assert len(maintenance) == 1 and not maintenance[0].done()
            conns = [await pool.get_conn(timeout=5) for _ in range(4)]
            for conn in conns:
                await pool.release(conn)
            await asyncio.sleep(0.3)  # a few maintenance rounds
            assert _other_threads() == before
            assert threading.active_count() - len(_executor_threads()) == count
        assert maintenance[0].done()
        assert _other_threads() == before

    run(main())


# -- waiting, timeouts and guarded proxies -------------------------------------------


def test_fifo_hand_off_between_tasks(server_view: ServerView) -> None:
    async def main() -> None:
        async with make_async_pool(server_view, maxsize=1) as pool:
            first = await pool.get_conn(timeout=5)
            served: list[int] = []

            async def borrower(index: int) -> None:
                conn = await pool.get_conn(timeout=10)
                served.append(index)
                await asyncio.sleep(0)  # let the others run while holding it
                await pool.release(conn)

            tasks = []
            for index in range(8):
                tasks.append(asyncio.create_task(borrower(index)))
                await asyncio.sleep(0)
                assert pool.get_stats()["waiting"] == index + 1
            await pool.release(first)
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
            assert served == list(range(8))
            stats = assert_books(pool)
            assert stats["borrows_waited"] == 8

    run(main())


def test_borrow_timeout_raises_within_the_timeout(server_view: ServerView) -> None:
    """A borrow from a full pool waits its own timeout (0 included), then
    raises PoolTimeout and leaves the queue."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with make_async_pool(server_view, maxsize=1) as pool:
            conn = await pool.get_conn(timeout=5)
            for timeout in (0.0, 0.2, 0.5):
                started = loop.time()
                with pytest.raises(PoolTimeout):
                    await pool.get_conn(timeout=timeout)
                waited = loop.time() - started
                assert timeout - 0.01 <= waited <= timeout + CONNECT_TIMEOUT, (timeout, waited)
                assert pool.get_stats()["waiting"] == 0
            await pool.release(conn)
            stats = assert_books(pool)
            assert stats["borrow_timeouts"] == 3 and stats["borrows"] == 1

    run(main())


def test_use_after_release_and_double_release(server_view: ServerView) -> None:
    async def main() -> None:
        async with make_async_pool(server_view, maxsize=2) as pool:
            conn = await pool.get_conn(timeout=5)
            cur = await conn.cursor()
            await cur.execute("SELECT 1")
            assert await cur.fetchone() == (1,)
            await pool.release(conn)
            assert conn.returned
            with pytest.raises(ConnectionReturnedError):
                await cur.execute("SELECT 2")
            with pytest.raises(ConnectionReturnedError):
                conn.raw  # noqa: B018
            with pytest.raises(ConnectionReturnedError):
                conn.cursor()
            with pytest.raises(ConnectionReturnedError):
                await conn.commit()
            with pytest.raises(ConnectionReturnedError):
                conn.server_status  # noqa: B018  (an attribute of the raw connection)
            with pytest.raises(ReturnConnectionToPoolError):
                await pool.release(conn)
            with pytest.raises(ReturnConnectionToPoolError):
                await conn.close()
            # Two tasks give the same connection back at once: one of them.
            conn = await pool.get_conn(timeout=5)
            await fetch(conn, "BEGIN")  # so that the return awaits its rollback
            outcomes = await asyncio.gather(pool.release(conn), pool.release(conn), return_exceptions=True)
            assert outcomes.count(None) == 1, outcomes
            assert isinstance(next(o for o in outcomes if o is not None), ReturnConnectionToPoolError)
            async with pool.connection() as other:
                with pytest.raises(ReturnConnectionToPoolError):
                    await pool.release(other.raw)  # not the proxy it lent
            # A cursor closed after its connection went back just lets go (as
            # the thread pool's do): nothing is sent on a session no longer its own.
            conn = await pool.get_conn(timeout=5)
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
                await pool.release(conn)
            with pytest.raises(ConnectionReturnedError):
                await cur.execute("SELECT 1")
            stats = assert_books(pool)
            assert stats["returns"] == 4 and stats["rollbacks_on_return"] == 1

    run(main())


def test_half_read_unbuffered_result_is_closed(server_view: ServerView) -> None:
    async def main() -> None:
        async with make_async_pool(server_view, maxsize=1) as pool:
            conn = await pool.get_conn(timeout=5)
            async with conn.cursor(pymysql.cursors.SSCursor) as cur:
                await cur.execute(BIG)
                assert await cur.fetchone() == (1,)
                await pool.release(conn)
            assert await settle(lambda: pool.get_stats()["killing"] == 0)  # its session is killed first
            stats = pool.get_stats()
            assert stats["closed_unread"] == 1 and stats["open"] == 0
            async with pool.connection(timeout=5) as conn:
                assert await fetch(conn, "SELECT 'mine'") == [("mine",)]
            assert_books(pool)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(main())
    assert not [w for w in caught if UNBUFFERED_WARNING in str(w.message)]


def test_dropped_connection_is_reclaimed(
    server_view: ServerView,
    admin: Any,
    make_table: Any,
    caplog: pytest.LogCaptureFixture,
    leak_warnings: LeakWarnings,
) -> None:
    table = make_table("rows", ROWS)

    async def borrow_and_drop(pool: AsyncConnectionPool) -> None:
        conn = await pool.get_conn(timeout=5)
        await fetch(conn, "BEGIN")
        await fetch(conn, f"INSERT INTO `{table}` (kind, v) VALUES (1, 1)")

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=1) as pool:
            await borrow_and_drop(pool)
            gc.collect()
            assert await settle(lambda: pool.get_stats()["leaks_reclaimed"] == 1)
            stats = assert_books(pool)
            assert stats["open"] == 0 and stats["leaks_detected"] == 1
            assert len(leak_warnings.messages) == 1 and "garbage-collected" in leak_warnings.messages[0]
            await assert_slots_usable(pool, admin, server_view, table)

    with caplog.at_level(logging.WARNING, logger="pymysqlpool"):
        run(main())
    assert "garbage-collected without being returned" in caplog.text
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`")[0][0] == 0


def test_leak_timeout_logs_the_borrowers_stack(
    server_view: ServerView, caplog: pytest.LogCaptureFixture, leak_warnings: LeakWarnings
) -> None:
    async def hold_the_connection_too_long(pool: AsyncConnectionPool) -> None:
        conn = await pool.get_conn(timeout=5)
        assert await settle(lambda: pool.get_stats()["leaks_detected"] == 1)
        await pool.release(conn)

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=1, leak_timeout=0.2) as pool:
            await hold_the_connection_too_long(pool)
            stats = assert_books(pool)
            assert stats["leaks_detected"] == 1 and stats["leaks_reclaimed"] == 0

    with caplog.at_level(logging.WARNING, logger="pymysqlpool"):
        run(main())
    records = [r for r in caplog.records if "leak_timeout" in r.getMessage()]
    assert len(records) == 1
    assert "hold_the_connection_too_long" in records[0].getMessage()
    assert leak_warnings.messages == [records[0].getMessage()]  # the same report, as a warning


# -- issue 18: a cancel stays a cancel in every cursor form --------------------------


class RowStream(aiomysql.SSDictCursor):  # type: ignore[misc]  # an application's own cursor class
    pass


CURSORS = [aiomysql.Cursor, aiomysql.DictCursor, aiomysql.SSCursor, aiomysql.SSDictCursor, RowStream]
LONG_READ = "SELECT a.seq FROM seq_1_to_3000 a, seq_1_to_300 b"  # ~900k rows: still streaming when cut


async def _read_all(cur: Any, sql: str) -> None:
    await cur.execute(sql)
    while await cur.fetchone() is not None:
        pass


async def _statement_in_form(pool: AsyncConnectionPool, cls: Any, form: str, sql: str) -> None:
    async with pool.connection() as conn:
        if form == "async-with":
            async with conn.cursor(cls) as cur:
                await _read_all(cur, sql)
            return
        cur = await conn.cursor(cls)
        if form == "await":
            await _read_all(cur, sql)
            return
        try:
            await _read_all(cur, sql)
        finally:
            await cur.close()


@pytest.mark.parametrize("form", ["async-with", "await", "await-close"])
@pytest.mark.parametrize("cls", CURSORS, ids=lambda cls: cls.__name__)
def test_a_cancel_stays_a_cancel_in_every_cursor_form(server_view: ServerView, cls: Any, form: str) -> None:
    """asyncio.timeout() landing in a statement's wait or in the middle of a
    streamed answer raises TimeoutError (a plain task.cancel(), CancelledError)
    in every cursor form: aiomysql closes the connection on a cancelled read,
    and closing the cursor then must not try to drain it (it raised
    AttributeError 'NoneType' object has no attribute 'readexactly')."""

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=2) as pool:
            # SLEEP(2): the server runs a cut statement to its end (issue 18 item 1),
            # within the teardown's 5 s wait for the sessions to go.
            for sql in ("SELECT SLEEP(2)", LONG_READ):
                for limit in (0.05, 0.3):
                    with pytest.raises(TimeoutError):
                        async with asyncio.timeout(limit):
                            await _statement_in_form(pool, cls, form, sql)
                task = asyncio.create_task(_statement_in_form(pool, cls, form, sql))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            stats = assert_books(pool)
            assert stats["connect_errors"] == 0, stats
            assert await fetch_one(pool) == [(1,)]

    run(main())


@pytest.mark.parametrize("cls", [aiomysql.SSCursor, aiomysql.SSDictCursor], ids=lambda cls: cls.__name__)
def test_a_cancel_between_fetches_does_not_drain(server_view: ServerView, cls: Any) -> None:
    """A cancel that lands in the borrower's own code between two fetches of a
    streamed answer leaves the cursor block without reading the rest inside
    the cancellation: the connection goes back mid-answer and is closed."""

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=1) as pool:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    async with pool.connection() as conn, conn.cursor(cls) as cur:
                        await cur.execute(LONG_READ)
                        await cur.fetchone()
                        await asyncio.sleep(10)  # the cancel lands here, the connection still open
            stats = assert_books(pool)
            assert stats["closed_unread"] == 1 and stats["closed_broken"] == 0, stats

    run(main())


# -- issue 18: connect arguments -----------------------------------------------------


WORKING_ARGUMENTS = [
    {"sql_mode": "ANSI_QUOTES,NO_ZERO_DATE"},
    {"sql_mode": ""},
    {"sql_mode": "TRADITIONAL", "init_command": with_limits("SET @a = 1")},
    {"sql_mode": "ANSI", "init_command": with_limits("SET sql_mode = 'TRADITIONAL'")},  # in PyMySQL's order
    {"charset": "utf8mb4", "collation": "utf8mb4_unicode_ci"},
    {"collation": None},
    {"auth_plugin_map": {}},
    {"auth_plugin_map": None},
    {"conv": None},
    {"port": None},
    {"ssl": None, "ssl_ca": None, "ssl_disabled": True},
    {"binary_prefix": False, "compress": False, "bind_address": None},
    {"sql_mode": lambda: "ANSI"},
    {"charset": "latin1", "collation": "latin1_bin"},
    {"ssl": {"ca": "/nonexistent/ca.pem"}, "ssl_disabled": True},
    {"ssl": lambda: None, "port": lambda: None},
]


def _mode_and_collation(kwargs: dict[str, Any]) -> tuple[Any, ...]:
    from pymysqlpool import ConnectionPool

    pool = ConnectionPool(**kwargs, maxsize=1)
    try:
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@sql_mode, @@collation_connection")
            return tuple(cur.fetchone())
    finally:
        pool.close()


@pytest.mark.parametrize("extra", WORKING_ARGUMENTS, ids=lambda extra: ",".join(extra))
def test_connect_arguments_work_as_in_the_thread_pool(
    server_view: ServerView, extra: dict[str, Any], unraisable: list[Any]
) -> None:
    """Arguments the thread pool takes give the asyncio pool the same session
    (sql_mode, collation), before and after COM_RESET_CONNECTION; none
    breaks every connect (aiomysql pasted sql_mode unquoted: 1064; rejected
    collation and auth_plugin_map with TypeError) or prints noise."""
    kwargs = {**server_view.connect_kwargs, "connect_timeout": CONNECT_TIMEOUT, **extra}
    expected = _mode_and_collation(kwargs)

    async def main() -> None:
        async with AsyncConnectionPool(**kwargs, maxsize=1, reset_session=True) as pool:
            for _ in range(2):  # the second borrow follows a session reset
                async with pool.connection() as conn:
                    assert tuple((await fetch(conn, "SELECT @@sql_mode, @@collation_connection"))[0]) == expected
            assert pool.get_stats()["session_resets"] == 2

    run(main())
    gc.collect()
    assert not unraisable


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ended up in sys.unraisablehook ("Exception ignored in ...")."""
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


REFUSED_ARGUMENTS = [
    ("cursorclass", {}),
    ("cursorclass", "DictCursor"),
    ("ssl", {"ca": "/etc/ssl/certs/ca.pem"}),
    ("auth_plugin_map", {"dialog": object}),
    ("max_allowed_packet", 1 << 20),
    ("ssl_ca", "/etc/ssl/certs/ca.pem"),
    ("bind_address", "127.0.0.1"),
]


@pytest.mark.parametrize(("name", "value"), REFUSED_ARGUMENTS, ids=[name for name, _ in REFUSED_ARGUMENTS])
def test_arguments_aiomysql_cannot_honour_are_refused_naming_them(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=name):
        AsyncConnectionPool(host=mysql_kwargs()["host"], **{name: value})


@pytest.mark.parametrize("name", ["compress", "named_pipe"])
def test_arguments_pymysql_refuses_are_refused_as_in_the_thread_pool(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        AsyncConnectionPool(host=mysql_kwargs()["host"], **{name: True})


DEFERRED_WRONG_TYPES = [
    ("password", lambda: 5),
    ("host", lambda: 5),
    ("port", lambda: "3306"),
    ("database", lambda: 5),
    ("sql_mode", lambda: 5),
    ("collation", lambda: "utf8mb4_bin; DROP TABLE x"),
]


@pytest.mark.parametrize(("name", "value"), DEFERRED_WRONG_TYPES, ids=[name for name, _ in DEFERRED_WRONG_TYPES])
def test_a_callable_argument_of_the_wrong_type_names_the_argument(
    server_view: ServerView, name: str, value: Any, unraisable: list[Any]
) -> None:
    """A connect argument given as a callable is checked by the constructor's
    rules when called: the borrow fails with an error naming it (not an
    AttributeError from inside aiomysql, nor a statement run with it)."""

    async def main() -> None:
        pool = make_async_pool(server_view, **{name: value}, maxsize=1)
        try:
            with pytest.raises((TypeError, ValueError), match=name):
                await pool.get_conn(timeout=2)
            assert pool.get_stats()["connections_made"] == 0
        finally:
            await pool.close()

    run(main())
    gc.collect()
    assert not unraisable


# -- issue 18: a pool whose event loop has ended ----------------------------------


def test_close_after_the_loop_ended_ends_every_session(server_view: ServerView, admin: Any) -> None:
    """A module-level pool used by one asyncio.run(): asyncio.run(pool.close())
    afterwards ends every session now, idle and borrowed (it raised
    WrongEventLoop and the sessions stayed until garbage collection)."""
    pool = make_async_pool(server_view, maxsize=4)
    kept: list[AsyncPooledConnection] = []

    async def use() -> None:
        conns = [await pool.get_conn() for _ in range(3)]
        await pool.release(conns[0])
        await pool.release(conns[1])
        kept.append(conns[2])  # still borrowed when the loop ends

    run(use())
    assert server_view.settles_at(admin, 3)
    assert run(pool.close()) == 1  # the borrowed one was cut
    assert server_view.settles_at(admin, 0), server_view.count(admin)
    stats = pool.get_stats()
    # The cut one counted closed at once too, not open until its proxy came back.
    assert stats["closed_on_pool_close"] == 3 and stats["open"] == 0, stats
    assert run(pool.close()) == 0  # again: nothing left to do
    with pytest.raises((PoolClosed, WrongEventLoop)):
        run(pool.get_conn())


_EXIT_WITHOUT_CLOSE = """
import asyncio, json, sys
from pymysqlpool import AsyncConnectionPool
pool = AsyncConnectionPool(**json.loads(sys.argv[1]), maxsize=3)
async def use():
    conns = [await pool.get_conn() for _ in range(3)]
    for conn in conns[:2]:
        await pool.release(conn)
    globals()["kept"] = conns[2]
asyncio.run(use())
print("used", flush=True)
"""


def test_exit_without_close_prints_nothing(server_view: ServerView) -> None:
    """A program that ends without close(), its loop gone: no "Exception
    ignored in Connection.__del__ ... Event loop is closed" per connection."""
    import json
    import subprocess

    kwargs = {k: v for k, v in server_view.connect_kwargs.items() if isinstance(v, (str, int))}
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WITHOUT_CLOSE, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "used", done
    assert done.stderr == "", done.stderr


def test_dropped_proxy_after_the_loop_was_closed_by_hand(
    server_view: ServerView, unraisable: list[Any], leak_warnings: LeakWarnings
) -> None:
    """A borrowed connection dropped after its loop was closed by hand: the
    proxy's __del__ raised (Event.set() on a closed loop); now the slot waits
    for close(), which ends the session from another loop."""
    pool = make_async_pool(server_view, maxsize=1)
    loop = asyncio.new_event_loop()
    try:
        conn = loop.run_until_complete(pool.get_conn(timeout=5))
        loop.run_until_complete(asyncio.sleep(0.1))  # maintenance now waits for a wake-up
    finally:
        loop.close()
    del conn
    gc.collect()
    assert not unraisable, unraisable
    run(pool.close())
    assert pool.get_stats()["open"] == 0, pool.get_stats()
    assert len(leak_warnings.messages) == 1  # reclaimed by close()


# -- issue 18: connect errors ---------------------------------------------------------


def test_cancelled_dials_are_not_connect_errors(server_view: ServerView) -> None:
    """A borrow cancelled while it dials gives its right back and counts no
    connect error (10 cancelled dials counted connect_errors=10)."""

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=1) as pool:
            for _ in range(10):
                task = asyncio.create_task(pool.get_conn(timeout=5))
                await asyncio.sleep(0)  # the task runs to its dial's first wait
                assert pool.get_stats()["connecting"] == 1
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            stats = assert_books(pool)
            assert stats["connect_errors"] == 0 and stats["connections_made"] == 0, stats
            assert await fetch_one(pool) == [(1,)]

    run(main())


def test_a_connect_timeout_is_one_error_whichever_step(server_view: ServerView) -> None:
    """A connect that runs out of connect_timeout raises OperationalError 2003
    naming host:port, whether the handshake (a server that accepts and never
    greets) or the set-up after it (a slow configure) took too long; a bare
    TimeoutError was raised for the latter."""
    import socket

    async def slow_configure(raw: Any) -> None:
        await asyncio.sleep(5)

    async def main() -> list[pymysql.err.OperationalError]:
        errors = []
        with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts (backlog), never greets
            port = mute.getsockname()[1]
            for kwargs in ({"host": "127.0.0.1", "port": port}, {"configure": slow_configure}):
                pool = make_async_pool(server_view, **kwargs, connect_timeout=0.5, maxsize=1)
                try:
                    with pytest.raises(pymysql.err.OperationalError) as caught:
                        await pool.get_conn(timeout=5)
                    errors.append(caught.value)
                    assert pool.get_stats()["connect_errors"] == 1
                finally:
                    await pool.close()
        return errors

    handshake, set_up = run(main())
    for error in (handshake, set_up):
        assert error.args[0] == 2003, error.args
    where = f"{server_view.connect_kwargs['host']}:{server_view.connect_kwargs['port']}"
    assert f"'{where}'" in set_up.args[1]
    assert "127.0.0.1:" in handshake.args[1] and "handshake" in handshake.args[1]
    assert "set-up" in set_up.args[1]


def test_close_after_the_loop_was_closed_by_hand_with_a_borrower_queued(
    server_view: ServerView, admin: Any, unraisable: list[Any]
) -> None:
    """A loop closed by hand (no asyncio.run() clean-up) while a borrower was
    queued: close() from another loop fails the waiter without waking it on
    the dead loop (it raised RuntimeError 'Event loop is closed') and ends
    the sessions."""
    pool = make_async_pool(server_view, maxsize=1)
    loop = asyncio.new_event_loop()
    try:
        held = loop.run_until_complete(pool.get_conn(timeout=5))
        queued = loop.create_task(pool.get_conn(timeout=30))
        loop.run_until_complete(asyncio.sleep(0.05))
        assert pool.get_stats()["waiting"] == 1
    finally:
        loop.close()
    assert run(pool.close()) == 1
    assert server_view.settles_at(admin, 0), server_view.count(admin)
    stats = pool.get_stats()
    assert stats["waiting"] == 0 and stats["borrow_errors"] == 1, stats
    del held, queued
    gc.collect()
    assert not unraisable, unraisable


SET_UP = {
    "sql_mode": "ANSI_QUOTES,STRICT_ALL_TABLES",
    "charset": "utf8mb4",
    "collation": "utf8mb4_bin",
    "reset_session": True,
}


async def _assert_set_up_session(pool: AsyncConnectionPool) -> None:
    """A borrowed session carries the pool's set-up and nothing of a former borrower."""
    async with pool.connection(timeout=5) as conn:
        row = (await fetch(conn, "SELECT @@sql_mode, @@collation_connection, @@in_transaction, @left_over"))[0]
    assert tuple(row) == (SET_UP["sql_mode"], SET_UP["collation"], 0, None), row


@pytest.mark.parametrize("step", ["dial", "session reset"])
def test_cancel_at_every_await_of_set_up_and_session_reset(server_view: ServerView, admin: Any, step: str) -> None:
    """The connect's own set-up (collation, quoted sql_mode, init_command,
    autocommit) and reset_session's return (COM_RESET_CONNECTION, then the
    same set-up again), cancelled after 0..29 turns of the loop: the books
    stay exact, every later borrow gets the set-up session, and the server
    keeps nothing of it."""

    async def main() -> None:
        landed = 0
        for steps in range(30):
            pool = make_async_pool(server_view, **SET_UP, maxsize=2)
            conn: AsyncPooledConnection | None = None
            if step == "dial":
                start: Callable[[], Coroutine[Any, Any, Any]] = functools.partial(pool.get_conn, timeout=5)
            else:
                conn = await pool.get_conn(timeout=5)
                await fetch(conn, "SET @left_over = 1, sql_mode = ''")
                await conn.begin()
                start = functools.partial(pool.release, conn)

            async def settle_task(task: asyncio.Task[Any], pool: AsyncConnectionPool = pool) -> None:
                if not task.cancelled() and step == "dial":
                    await pool.release(task.result())

            landed += await _sweep(start, steps, settle_task)
            if conn is not None and not conn.returned:  # cancelled before the release began
                await pool.release(conn)
            assert_books(pool)
            for _ in range(2):
                await _assert_set_up_session(pool)
            await pool.close()
            assert await settle(lambda: server_view.count(admin) == 0)
        assert landed > 0

    run(main(), limit=120)


@pytest.mark.parametrize("cls", [aiomysql.SSCursor, aiomysql.SSDictCursor], ids=lambda cls: cls.__name__)
def test_read_timeout_in_a_streaming_cursor_block_stays_the_error(server_view: ServerView, cls: Any) -> None:
    """read_timeout cuts the connection under an ``async with`` streaming
    cursor: leaving the block raises the 2013 OperationalError, not an
    AttributeError from closing the cursor (it tried to drain a closed
    connection), and the connection goes back broken."""

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=1, read_timeout=0.2) as pool:
            with pytest.raises(pymysql.err.OperationalError) as caught:
                async with pool.connection() as conn, conn.cursor(cls) as cur:
                    await cur.execute("SELECT SLEEP(2)")
            assert caught.value.args[0] == 2013
            stats = assert_books(pool)
            assert stats["closed_broken"] == 1, stats

    run(main())


def test_an_applications_own_cursor_class_is_bound_to_the_borrow(server_view: ServerView) -> None:
    """A subclass of an aiomysql cursor (given per cursor or as cursorclass)
    gets the pool's guards: after the release it raises
    ConnectionReturnedError instead of running in the next borrower's session."""

    async def main() -> None:
        async with make_async_pool(server_view, maxsize=1, cursorclass=RowStream) as pool:
            for explicit in (True, False):
                conn = await pool.get_conn(timeout=5)
                cur = await (conn.cursor(RowStream) if explicit else conn.cursor())
                assert isinstance(cur, RowStream)
                await cur.execute("SELECT 1 AS one")
                assert await cur.fetchall() == [{"one": 1}]
                await pool.release(conn)
                with pytest.raises(ConnectionReturnedError):
                    await cur.execute("SELECT 2")
                await cur.close()
            assert_books(pool)

    run(main())


def test_maintenance_cancelled_as_it_is_woken_ends(server_view: ServerView) -> None:
    """A cancel that reaches the maintenance task just as it is woken (a
    connection opened, a proxy dropped) ends it: asyncio.wait_for() in
    Python 3.11 returned the wake-up and swallowed the cancel, and the task
    ran on (under uvloop.run() the program never ended)."""

    async def main() -> None:
        pool = make_async_pool(server_view, maxsize=1)
        try:
            await pool.release(await pool.get_conn(timeout=5))
            upkeep = pool._maintenance
            assert upkeep is not None
            for _ in range(20):  # bounded: the task is parked in its pause well before
                await asyncio.sleep(0.01)
            upkeep.wake()
            upkeep._task.cancel()
            await asyncio.wait({upkeep._task}, timeout=5)
            assert upkeep._task.cancelled(), "the cancel was swallowed: maintenance runs on"
        finally:
            await pool.close()

    run(main())
