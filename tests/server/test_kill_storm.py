"""A cancel storm on a plain AsyncConnectionPool: every abandoned statement
is killed and the server never holds more than maxsize of the pool's sessions.
A connect cut in its set-up (``configure``, ``init_command``) leaves a statement
running too: both shells kill that session and keep its place counted.

MariaDB's KILL can take up to 2 s to be answered (it keeps trying to wake a
session that waits, e.g. in SLEEP) and may then leave the session 'Killed'
until that wait ends by itself: the pool must keep the slot counted until
the session is gone (docs/parameters.md, kill_on_abandon), not free it at
connect_timeout while the server still holds the session.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from server_helpers import Account, mysql_kwargs, pool_sessions_of, query

from pymysqlpool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from support.interrupts import raise_after

pytestmark = pytest.mark.server

MAXSIZE = 4
SECONDS = 5.0  # per storm; one storm showed the defect this guards against in about 1 run of 3
STORMS = 3  # so up to three run: the test must not pass by chance


def sampled_peak(
    admin_kwargs: dict[str, Any], user: str, stop: threading.Event, seen: list[tuple[Any, ...]]
) -> threading.Thread:
    """Sample the account's sessions in the test database (id, COMMAND) every
    ~5 ms (bounded by ``stop`` and a count); a kill's side connection selects
    no database and is not counted."""

    def run() -> None:
        conn = pymysql.connect(**admin_kwargs)
        try:
            for _ in range(int((SECONDS + 30) / 0.005)):
                if stop.is_set():
                    return
                rows = query(
                    conn,
                    "SELECT ID, COMMAND FROM information_schema.PROCESSLIST WHERE USER = %s AND DB = DATABASE()",
                    (user,),
                )
                seen.append(rows)
                time.sleep(0.005)
        finally:
            conn.close()

    thread = threading.Thread(target=run, name="test-peak-sampler", daemon=True)
    thread.start()
    return thread


def test_cancel_storm_kills_every_abandoned_statement(make_account: Callable[..., Account]) -> None:
    account = make_account()
    admin = mysql_kwargs()
    kw = {**admin, "user": account.user, "password": account.password}
    samples: list[tuple[Any, ...]] = []
    stop = threading.Event()

    async def storm() -> dict[str, Any]:
        pool = AsyncConnectionPool(maxsize=MAXSIZE, connect_timeout=2, timeout=3, read_timeout=5, **kw)
        await pool.open()

        async def borrower() -> None:
            try:
                async with pool.connection() as conn, conn.cursor() as cur:
                    if random.random() < 0.3:
                        await conn.begin()
                    await cur.execute("SELECT SLEEP(%s)", (random.choice([0, 0, 0.05, 0.3, 2]),))
                    await cur.fetchone()
            except (pymysql.err.MySQLError, PoolTimeout):
                pass

        tasks: set[asyncio.Task[None]] = set()
        deadline = time.monotonic() + SECONDS
        try:
            for _ in range(int(SECONDS / 0.001)):
                if time.monotonic() > deadline:
                    break
                while len(tasks) < 24:
                    tasks.add(asyncio.ensure_future(borrower()))
                await asyncio.sleep(random.random() * 0.02)
                for task in tasks:
                    if random.random() < 0.15:
                        task.cancel()
                tasks = {t for t in tasks if not t.done()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await pool.close()  # waits for the kills in flight
        return pool.get_stats()

    def one_storm() -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
        samples.clear()
        stop.clear()
        sampler = sampled_peak(admin, account.user, stop, samples)
        try:
            stats = asyncio.run(asyncio.wait_for(storm(), SECONDS + 60))
        finally:
            stop.set()
            sampler.join(10)
        assert samples, "the sampler saw nothing"
        # A killed session's slot freed too early shows as a 'Killed' session beyond maxsize.
        # Not asserted: one more session running a plain statement, seen rarely (a cancel
        # the pool did not see as mid-answer, so nothing killed it): another defect, reported.
        return stats, [rows for rows in samples if len(rows) > MAXSIZE and any(c == "Killed" for _, c in rows)]

    for _ in range(STORMS):
        stats, killed_beyond = one_storm()
        assert stats["kills"] > 20, stats  # statements were abandoned and killed
        assert stats["killing"] == 0, stats
        assert (stats["kill_failures"], killed_beyond) == (0, []), stats


# -- a connect cut in its set-up ---------------------------------------------------------

SET_UP_SLEEP = 5.0  # the first connection's configure() runs this long on the server


def slow_first_set_up(calls: list[int]) -> Callable[[Any], Any]:
    """A ``configure`` that notes each new session's id in ``calls``; the first
    runs DO SLEEP there (the borrow is cut meanwhile), the later ones nothing."""

    def configure(raw: Any) -> Any:
        calls.append(raw.server_thread_id[0])
        if len(calls) == 1:
            return raw.query(f"DO SLEEP({SET_UP_SLEEP})")  # a coroutine on aiomysql, run at once on PyMySQL
        return None

    return configure


def set_up_running(admin: Any, account: Account) -> bool:
    rows = query(admin, "SELECT INFO FROM information_schema.PROCESSLIST WHERE USER = %s", (account.user,))
    return any("DO SLEEP" in str(row[0]) for row in rows)


def test_a_cancelled_connect_is_killed_and_its_place_kept(admin: Any, make_account: Callable[..., Account]) -> None:
    """AsyncConnectionPool(maxsize=1): a borrow cancelled while its new
    connection runs configure()'s statement. Closing that socket does not stop
    the statement: the pool kills the session and counts its place until the
    server let it go, so the next borrow never makes the server hold two of
    the pool's sessions (before: the second was dialed at once, beside the
    first still sleeping)."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    calls: list[int] = []
    seen: list[set[int]] = []

    async def scenario() -> dict[str, Any]:
        pool = AsyncConnectionPool(
            maxsize=1, connect_timeout=SET_UP_SLEEP + 5, configure=slow_first_set_up(calls), **kw
        )
        async with pool:
            first = asyncio.ensure_future(pool.get_conn(10))
            for _ in range(200):  # until the set-up statement runs on the server (bounded: 10 s)
                if await asyncio.to_thread(set_up_running, admin, account) or first.done():
                    break
                await asyncio.sleep(0.05)
            assert not first.done() and await asyncio.to_thread(set_up_running, admin, account)
            first.cancel()
            second = asyncio.ensure_future(pool.get_conn(10))
            for _ in range(400):  # the server's view until the second borrow is served (bounded)
                seen.append(await asyncio.to_thread(pool_sessions_of, admin, account))
                if second.done():
                    break
                await asyncio.sleep(0.02)
            conn = await second
            seen.append(await asyncio.to_thread(pool_sessions_of, admin, account))
            stats = pool.get_stats()
            await pool.release(conn)
        return stats

    stats = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert len(calls) == 2, calls
    assert max(len(view) for view in seen) == 1, seen  # never two sessions of a maxsize=1 pool
    assert seen[-1] == {calls[1]}, (seen, calls)  # the borrow's new session; the cut one is gone
    assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats
    assert stats["connections_made"] == 2 and stats["closed_broken"] == 1, stats  # the cut one counted closed


def test_an_interrupted_connect_is_killed_and_its_place_kept(admin: Any, make_account: Callable[..., Account]) -> None:
    """The thread pool's twin: KeyboardInterrupt while the new connection runs
    configure()'s statement; the next borrow waits for the kill instead of
    dialing a second session beside it."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    calls: list[int] = []
    pool = ConnectionPool(maxsize=1, connect_timeout=SET_UP_SLEEP + 5, configure=slow_first_set_up(calls), **kw)
    try:
        with pytest.raises(KeyboardInterrupt), raise_after(1.0, KeyboardInterrupt):
            pool.get_conn(10)
        seen: list[set[int]] = []
        done = threading.Event()

        def sample() -> None:
            for _ in range(400):  # bounded: about 10 s
                seen.append(pool_sessions_of(admin, account))
                if done.wait(0.02):
                    return

        sampler = threading.Thread(target=sample, name="test-session-sampler", daemon=True)
        sampler.start()
        try:
            conn = pool.get_conn(10)
        finally:
            done.set()
            sampler.join(15)
        seen.append(pool_sessions_of(admin, account))
        stats = pool.get_stats()
        conn.close()
    finally:
        pool.close()
    assert len(calls) == 2, calls
    assert max(len(view) for view in seen) == 1, seen
    assert seen[-1] == {calls[1]}, (seen, calls)
    assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats
    assert stats["connections_made"] == 2 and stats["closed_broken"] == 1, stats
