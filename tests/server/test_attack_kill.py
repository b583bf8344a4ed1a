"""Attacks on kill_on_abandon (an independent tester's findings and checks).

Each test logs its pool in as an account made for it, so the server's
process list counts the pool's sessions exactly, whatever else runs on the
shared server. A test marked xfail(strict=True) is a broken promise of the
docs that the current code still breaks.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pymysql
import pytest
from server_helpers import Account, locked_row, mysql_kwargs, query, sessions_of

from pymysqlpool import AsyncConnectionPool, ConnectionLeakWarning, PoolTimeout
from support.sessions import sessions_ended
from support.waiting import wait_until

pytestmark = pytest.mark.server

LONG = 10  # seconds an abandoned statement would run on
PROMPT = 5.0  # seconds within which it must have stopped
# MariaDB ends a SLEEP whose client hung up by itself, but only at its next
# check of the socket, every 5 s: a kill must have done it well before that.
BEFORE_SERVER_NOTICES = 3.0


def pool_kwargs(account: Account, **extra: Any) -> dict[str, Any]:
    return {**mysql_kwargs(), "user": account.user, "password": account.password, **extra}


def running_sleeps(admin: Any, account: Account) -> set[int]:
    rows = query(
        admin,
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND INFO LIKE 'SELECT SLEEP%%'",
        (account.user,),
    )
    return {int(row[0]) for row in rows}


def test_an_abandoned_statement_is_killed_when_the_account_allows_only_maxsize_sessions(
    make_pool: Callable[..., Any], make_account: Callable[..., Account], admin: Any
) -> None:
    """An account limited to maxsize sessions (max_user_connections, common
    for application accounts): one connection idle in the pool, the other's
    statement cut by read_timeout. The docs promise the statement is killed
    and its locks go at once; the side connection cannot log in, yet the pool
    has an idle session of the very account through which a KILL could go."""
    account = make_account()
    query(admin, "ALTER USER %s@'%%' WITH MAX_USER_CONNECTIONS 2", (account.user,))
    pool = make_pool(**pool_kwargs(account, maxsize=2, read_timeout=0.3, connect_timeout=2))
    idle = pool.get_conn()
    conn = pool.get_conn()
    pool.release(idle)
    with pytest.raises(pymysql.err.OperationalError):
        conn.cursor().execute(f"SELECT SLEEP({LONG})")
    pool.release(conn)
    # Not asserted running first: over the idle connection the kill can end
    # before the process list is read. kills == 1 below says it was killed.
    assert wait_until(lambda: not running_sleeps(admin, account), timeout=BEFORE_SERVER_NOTICES), "it ran on"
    assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=5)
    stats = pool.get_stats()
    assert stats["kills"] == 1 and stats["kill_failures"] == 0, stats
    # The idle connection that carried the KILL went back to the pool, clean.
    assert stats["idle"] == 1 and stats["open"] == 1, stats
    again = pool.get_conn()
    try:
        cur = again.cursor()
        cur.execute("SELECT @@in_transaction")
        assert cur.fetchone()[0] == 0
    finally:
        pool.release(again)


def _timed_out_borrowers(pool: AsyncConnectionPool, count: int) -> Any:
    async def one() -> bool:
        try:
            async with asyncio.timeout(0.1):
                async with pool.connection() as conn, conn.cursor() as cur:
                    await cur.execute(f"SELECT SLEEP({LONG})")
        except TimeoutError:
            return True
        return False

    async def main() -> list[bool]:
        return list(await asyncio.gather(*(one() for _ in range(count))))

    return main()


def test_closing_on_a_new_loop_ends_sessions_whose_kills_the_first_loop_dropped(
    make_account: Callable[..., Account], admin: Any
) -> None:
    """docs/asyncio.md: a module-level pool used by one asyncio.run(main()) is
    closed by asyncio.run(pool.close()) afterwards, and every session ends at
    once; close() waits for kills in flight. Here main() ends right after
    four statements were cut by asyncio.timeout: their kills are tasks of the
    ending loop."""
    account = make_account()
    pool = AsyncConnectionPool(**pool_kwargs(account, maxsize=4, connect_timeout=3))
    with sessions_ended(partial(query, admin), account.user):
        assert asyncio.run(_timed_out_borrowers(pool, 4)) == [True] * 4
        asyncio.run(asyncio.wait_for(pool.close(), 30))
        assert wait_until(lambda: not sessions_of(admin, account), timeout=PROMPT), sessions_of(admin, account)
        stats = pool.get_stats()
        assert stats["killing"] == 0 and stats["open"] == 0, stats


def test_closing_on_a_new_loop_after_a_borrower_was_cut_by_the_loop_s_end(
    make_account: Callable[..., Account], admin: Any
) -> None:
    """A task left running when main() returns (fire-and-forget work) is
    cancelled by asyncio.run() in the middle of its statement: an abandoned
    statement like any other. asyncio.run(pool.close()) afterwards must end
    every session (docs/asyncio.md)."""
    account = make_account()
    pool = AsyncConnectionPool(**pool_kwargs(account, maxsize=2, connect_timeout=3))

    async def borrower() -> None:
        async with pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT SLEEP({LONG})")

    def sleeping() -> bool:
        rows = query(
            admin,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s AND INFO LIKE 'SELECT SLEEP%%'",
            (account.user,),
        )
        return bool(rows[0][0])

    async def main() -> None:
        asyncio.get_running_loop().create_task(borrower())
        # The loop ends once the statement runs (a fixed pause let a loaded
        # machine end it while the borrower was still connecting).
        assert await asyncio.to_thread(wait_until, sleeping, 10)

    with sessions_ended(partial(query, admin), account.user):
        asyncio.run(main())
        asyncio.run(asyncio.wait_for(pool.close(), 30))
        assert wait_until(lambda: not sessions_of(admin, account), timeout=BEFORE_SERVER_NOTICES), sessions_of(
            admin, account
        )
        stats = pool.get_stats()
        assert stats["killing"] == 0 and stats["open"] == 0, stats


def test_a_borrow_refused_by_max_user_connections_waits_its_whole_timeout(
    make_pool: Callable[..., Any], make_account: Callable[..., Account], admin: Any
) -> None:
    """docs/failure-handling.md: at max_user_connections, borrows beyond what
    the server allows wait for a returned connection, or fail with
    PoolTimeout (cause 1226); connect retries stop at ``timeout``. Both of the
    account's two sessions are lent; a third borrow (maxsize=3) with a 3 s
    timeout must not give up before 3 s (a connection returned at 2.5 s is
    lost to it in about half the runs)."""
    account = make_account()
    query(admin, "ALTER USER %s@'%%' WITH MAX_USER_CONNECTIONS 2", (account.user,))
    pool = make_pool(**pool_kwargs(account, maxsize=3, connect_timeout=2))
    held = [pool.get_conn(), pool.get_conn()]
    started = time.monotonic()
    with pytest.raises(PoolTimeout) as raised:
        pool.get_conn(timeout=3)
    waited = time.monotonic() - started
    for conn in held:
        pool.release(conn)
    assert "1226" in repr(raised.value.__cause__), raised.value
    assert waited >= 3 - 0.05, f"gave up after {waited:.2f} s of a 3 s timeout"


DROPPED_REASON = (
    "a borrowed proxy dropped after its statement was cut (read_timeout) is reclaimed without a KILL: "
    "the slot is freed at once while the statement runs on, so the server holds maxsize + 1 of the pool's sessions"
)


def drop_a_cut_borrow(pool: Any, then: Callable[[], object] = lambda: None) -> None:
    """Borrow, let read_timeout cut a long statement, call ``then``, and drop
    the connection without giving it back; returns once the pool reclaimed
    it, with its ConnectionLeakWarning."""

    def leaky() -> None:
        conn = pool.get_conn()
        with pytest.raises(pymysql.err.OperationalError):
            conn.cursor().execute(f"SELECT SLEEP({LONG})")
        then()

    with pytest.warns(ConnectionLeakWarning, match="garbage-collected"):
        leaky()
        gc.collect()
        assert wait_until(lambda: pool.get_stats()["leaks_reclaimed"] == 1, timeout=2), pool.get_stats()


@pytest.mark.threads_only("the asyncio pool's dropped proxy is tested below, on its own loop")
def test_a_dropped_proxy_whose_statement_was_cut_is_killed(
    make_pool: Callable[..., Any], make_account: Callable[..., Account], admin: Any
) -> None:
    """A borrower that catches the read_timeout and forgets to give the
    connection back: the pool reclaims the garbage-collected proxy. The
    statement was abandoned mid-answer just as if it had been released, so
    the kill_on_abandon promise applies: killed, its slot counted until the
    session is gone, never more than maxsize of the pool's sessions."""
    account = make_account()
    pool = make_pool(**pool_kwargs(account, maxsize=1, read_timeout=0.2, connect_timeout=2))
    drop_a_cut_borrow(pool)
    conn = pool.get_conn(timeout=BEFORE_SERVER_NOTICES)
    try:
        assert len(sessions_of(admin, account)) <= 1, "the server holds more sessions of the pool than maxsize"
        assert not running_sleeps(admin, account), "the abandoned statement runs on"
    finally:
        pool.release(conn)


@pytest.mark.threads_only("a proxy collected after close(): the thread pool reclaims it at once, no maintenance left")
def test_a_proxy_dropped_after_close_whose_statement_was_cut_is_killed(
    make_pool: Callable[..., Any], make_account: Callable[..., Account], admin: Any
) -> None:
    """The same leak, collected after close() (no maintenance to hand it to:
    reclaimed at once, by the same rule as a return)."""
    account = make_account()
    pool = make_pool(**pool_kwargs(account, maxsize=1, read_timeout=0.2, connect_timeout=2))
    drop_a_cut_borrow(pool, then=pool.close)
    assert wait_until(lambda: not running_sleeps(admin, account), timeout=BEFORE_SERVER_NOTICES), "it ran on"
    assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=5)
    assert pool.get_stats()["kills"] == 1, pool.get_stats()


def test_an_asyncio_dropped_proxy_whose_statement_was_cut_is_killed(
    make_account: Callable[..., Account], admin: Any
) -> None:
    account = make_account()

    async def main() -> tuple[set[int], set[int]]:
        async with AsyncConnectionPool(**pool_kwargs(account, maxsize=1, read_timeout=0.2, connect_timeout=2)) as pool:

            async def leaky() -> None:
                conn = await pool.get_conn()
                cur = await conn.cursor()
                with pytest.raises(pymysql.err.OperationalError):
                    await cur.execute(f"SELECT SLEEP({LONG})")

            await leaky()
            gc.collect()
            for _ in range(200):
                if pool.get_stats()["leaks_reclaimed"]:
                    break
                await asyncio.sleep(0.01)
            conn = await pool.get_conn(timeout=BEFORE_SERVER_NOTICES)
            seen = sessions_of(admin, account), running_sleeps(admin, account)
            await pool.release(conn)
            return seen

    with pytest.warns(ConnectionLeakWarning, match="garbage-collected"):
        sessions, sleeping = asyncio.run(asyncio.wait_for(main(), 30))
    assert len(sessions) <= 1, f"the server holds {len(sessions)} sessions of a pool of 1"
    assert not sleeping, "the abandoned statement runs on"


def test_a_tiny_connect_timeout_that_serves_the_pool_also_serves_its_kills(
    make_pool: Callable[..., Any], make_account: Callable[..., Account], admin: Any
) -> None:
    """connect_timeout is accepted down to any value > 0 and bounds the
    kill. With 5 ms every connect of the pool itself succeeds on loopback,
    but the kill gives up before it sends the KILL, so the server keeps
    every abandoned statement: the 'never more than maxsize' promise is lost
    on a server that is reachable and refuses nothing."""
    account = make_account()
    pool = make_pool(**pool_kwargs(account, maxsize=1, read_timeout=0.1, connect_timeout=0.005, timeout=10))
    # 5 ms is enough for a connect on an idle loopback, not always on a loaded
    # machine; a pool that never connected fails its first connect at once
    # (a bad setting fails fast), so that one is retried here, a bounded number
    # of times. Later connects the pool retries itself until the borrow's timeout.
    for attempt in range(50):
        try:
            pool.release(pool.get_conn())
            break
        except pymysql.err.OperationalError:
            if attempt == 49:
                raise
    for _ in range(3):
        conn = pool.get_conn()
        with pytest.raises(pymysql.err.OperationalError):
            conn.cursor().execute(f"SELECT SLEEP({LONG})")
        pool.release(conn)
    assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=2)
    running = running_sleeps(admin, account)
    assert len(running) <= 1, f"{len(running)} abandoned statements run on, maxsize=1: {pool.get_stats()}"


# Promises checked that hold (coverage the suite lacked).


@pytest.mark.threads_only("os.fork() is thread-pool only (docs/asyncio.md)")
def test_a_fork_while_kills_are_in_flight(
    make_pool: Callable[..., Any], make_account: Callable[..., Account], admin: Any
) -> None:
    """fork() right after two statements were abandoned: the child starts
    empty (nothing killing, nothing open) and can borrow maxsize connections;
    the parent's kills still complete and leave nothing running."""
    account = make_account()
    pool = make_pool(**pool_kwargs(account, maxsize=2, read_timeout=0.2, connect_timeout=2))
    held = [pool.get_conn(), pool.get_conn()]
    for conn in held:
        with pytest.raises(pymysql.err.OperationalError):
            conn.cursor().execute(f"SELECT SLEEP({LONG})")
    for conn in held:
        pool.release(conn)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        status = 1
        try:
            stats = pool.get_stats()
            if stats["killing"] == 0 and stats["open"] == 0:
                borrowed = [pool.get_conn(timeout=5) for _ in range(2)]
                for conn in borrowed:
                    pool.release(conn)
                pool.close()
                status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert wait_until(lambda: not running_sleeps(admin, account), timeout=BEFORE_SERVER_NOTICES), "ran on"
    assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=5)
    assert pool.get_stats()["kills"] == 2, pool.get_stats()


def test_close_with_timeout_zero_still_waits_for_kills(
    make_pool: Callable[..., Any], make_account: Callable[..., Account], admin: Any
) -> None:
    """close(timeout=0) right after three statements were abandoned: the
    kills in flight are finished (not dropped), nothing runs on."""
    account = make_account()
    pool = make_pool(**pool_kwargs(account, maxsize=3, read_timeout=0.1, connect_timeout=2))
    held = [pool.get_conn() for _ in range(3)]
    for conn in held:
        with pytest.raises(pymysql.err.OperationalError):
            conn.cursor().execute(f"SELECT SLEEP({LONG})")
        pool.release(conn)
    assert pool.close(timeout=0) == 0
    stats = pool.get_stats()
    assert stats["killing"] == 0 and stats["open"] == 0 and stats["kills"] == 3, stats
    assert not running_sleeps(admin, account)


def test_an_asyncio_timeout_in_a_transaction_releases_its_row_lock(
    make_account: Callable[..., Account], make_table: Callable[..., str], admin: Any
) -> None:
    """asyncio.timeout cuts the next statement of a transaction holding a
    row lock: TimeoutError for the borrower, the session killed and the lock
    free for another session well before the server would notice the
    hang-up (5 s)."""
    account = make_account()
    table = make_table("atklock", "id INT PRIMARY KEY, v INT")
    query(admin, f"INSERT INTO `{table}` VALUES (1, 0)")

    async def main() -> dict[str, Any]:
        async with AsyncConnectionPool(**pool_kwargs(account, maxsize=1, connect_timeout=2)) as pool:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3), pool.transaction() as conn, conn.cursor() as cur:
                    await cur.execute(f"UPDATE `{table}` SET v = 1 WHERE id = 1")
                    await cur.execute(f"SELECT SLEEP({LONG})")
            for _ in range(300):
                if not pool.get_stats()["killing"]:
                    break
                await asyncio.sleep(0.01)
            return pool.get_stats()

    stats = asyncio.run(asyncio.wait_for(main(), 30))
    assert stats["kills"] == 1 and stats["kill_failures"] == 0, stats
    rows, waited = locked_row(table, 3)
    assert rows == ((0,),) and waited < BEFORE_SERVER_NOTICES
