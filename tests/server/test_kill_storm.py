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
import functools
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from server_helpers import Account, mysql_kwargs, pool_sessions_of, query, raw_connect

from pymysqlpool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from support.interrupts import raise_after
from support.sessions import kill_sessions, sessions_ended
from support.waiting import wait_until

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


def slow_first_set_up(calls: list[int], nth: int = 1, secs: float = SET_UP_SLEEP) -> Callable[[Any], Any]:
    """A ``configure`` that notes each new session's id in ``calls``; the
    ``nth`` runs DO SLEEP there (the borrow is cut meanwhile), the others nothing."""

    def configure(raw: Any) -> Any:
        calls.append(raw.server_thread_id[0])
        if len(calls) == nth:
            return raw.query(f"DO SLEEP({secs})")  # a coroutine on aiomysql, run at once on PyMySQL
        return None

    return configure


class Pairing:
    """Events that note which connections on_connect and on_close saw."""

    def __init__(self) -> None:
        self.connected: list[Any] = []
        self.closed: list[tuple[Any, str]] = []

    def on_connect(self, raw: Any, seconds: float) -> None:
        self.connected.append(raw)

    def on_close(self, raw: Any, reason: str) -> None:
        self.closed.append((raw, reason))

    def assert_paired(self) -> None:
        """Every close was of a connection on_connect announced, and once:
        the cut dial (killed, counted in closed_broken) fires neither."""
        assert len(self.connected) == 1, self.connected  # the second borrow's; the cut one never connected
        assert [raw for raw, _ in self.closed] == self.connected, (self.closed, self.connected)


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
    events = Pairing()

    async def scenario() -> dict[str, Any]:
        pool = AsyncConnectionPool(
            maxsize=1, connect_timeout=SET_UP_SLEEP + 5, configure=slow_first_set_up(calls), events=events, **kw
        )
        async with pool:
            first = asyncio.ensure_future(pool.get_conn(10))
            for _ in range(200):  # until the set-up statement runs on the server (bounded: 10 s)
                if await asyncio.to_thread(set_up_running, admin, account) or first.done():
                    break
                await asyncio.sleep(0.05)
            assert not first.done() and await asyncio.to_thread(set_up_running, admin, account)
            first.cancel()
            conn = await aborrow_watched(pool, admin, account, seen)
            stats = pool.get_stats()
            await pool.release(conn)
        return stats

    stats = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert len(calls) == 2, calls
    assert max(len(view) for view in seen) == 1, seen  # never two sessions of a maxsize=1 pool
    assert seen[-1] == {calls[1]}, (seen, calls)  # the borrow's new session; the cut one is gone
    assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats
    assert stats["connections_made"] == 2 and stats["closed_broken"] == 1, stats  # the cut one counted closed
    events.assert_paired()


async def aborrow_watched(pool: AsyncConnectionPool, admin: Any, account: Account, seen: list[set[int]]) -> Any:
    """:func:`borrow_watched` on the loop: the server's views go to ``seen``
    every ~20 ms until the borrow is served (bounded: 400 samples)."""
    borrow = asyncio.ensure_future(pool.get_conn(10))
    for _ in range(400):
        seen.append(await asyncio.to_thread(pool_sessions_of, admin, account))
        if borrow.done():
            break
        await asyncio.sleep(0.02)
    conn = await borrow
    seen.append(await asyncio.to_thread(pool_sessions_of, admin, account))
    return conn


def borrow_watched(pool: ConnectionPool, admin: Any, account: Account) -> tuple[Any, list[set[int]]]:
    """Borrow from ``pool`` while a thread samples the account's sessions in
    the test database every ~20 ms (bounded: 400 samples); the connection
    and the server's views, the last taken once it was lent."""
    seen: list[set[int]] = []
    served = threading.Event()

    def sample() -> None:
        for _ in range(400):
            seen.append(pool_sessions_of(admin, account))
            if served.wait(0.02):
                return

    sampler = threading.Thread(target=sample, name="test-session-sampler", daemon=True)
    sampler.start()
    try:
        conn = pool.get_conn(10)
    finally:
        served.set()
        sampler.join(15)
    seen.append(pool_sessions_of(admin, account))
    return conn, seen


def test_an_interrupted_connect_is_killed_and_its_place_kept(admin: Any, make_account: Callable[..., Account]) -> None:
    """The thread pool's twin: KeyboardInterrupt while the new connection runs
    configure()'s statement; the next borrow waits for the kill instead of
    dialing a second session beside it."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    calls: list[int] = []
    events = Pairing()
    pool = ConnectionPool(
        maxsize=1, connect_timeout=SET_UP_SLEEP + 5, configure=slow_first_set_up(calls), events=events, **kw
    )
    try:
        with pytest.raises(KeyboardInterrupt), raise_after(1.0, KeyboardInterrupt):
            pool.get_conn(10)
        conn, seen = borrow_watched(pool, admin, account)
        stats = pool.get_stats()
        conn.close()
    finally:
        pool.close()
    assert len(calls) == 2, calls
    assert max(len(view) for view in seen) == 1, seen
    assert seen[-1] == {calls[1]}, (seen, calls)
    assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats
    assert stats["connections_made"] == 2 and stats["closed_broken"] == 1, stats
    events.assert_paired()


def test_a_connect_cut_after_its_right_to_dial_was_revoked_is_killed(
    admin: Any, make_account: Callable[..., Account]
) -> None:
    """configure() is the caller's code: connect_timeout does not bound it,
    so a set-up can outlast the reconcile's grace (2 x connect_timeout + 1 s),
    which gives the dial's right back as orphaned. An interrupt that then cuts
    the set-up still has its session killed and its place counted until it is
    gone (before: closed without a kill, its statement ran on beside the next
    borrow's new session: three sessions of a maxsize=2 pool)."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    calls: list[int] = []
    # The warm-up's connection starts the maintenance; the second dial sleeps.
    pool = ConnectionPool(
        maxsize=2, pre_create_num=1, connect_timeout=1, configure=slow_first_set_up(calls, 2, 30), **kw
    )

    def revoked() -> bool:
        return pool.get_stats()["connecting"] == 0 and set_up_running(admin, account)

    def interrupt_once_revoked() -> None:
        if wait_until(revoked, timeout=20):
            signal.setitimer(signal.ITIMER_REAL, 0.001)  # raise_after's handler, now

    try:
        with sessions_ended(functools.partial(query, admin), account.user):
            lent = pool.get_conn(10)  # the warm one
            watcher = threading.Thread(target=interrupt_once_revoked, name="test-revoke-watcher", daemon=True)
            with pytest.raises(KeyboardInterrupt), raise_after(60, KeyboardInterrupt):
                watcher.start()
                pool.get_conn(40)  # dials: its configure() sleeps 30 s, cut once its right was revoked
            watcher.join(5)
            conn, seen = borrow_watched(pool, admin, account)
            stats = pool.get_stats()
            conn.close()
            lent.close()
    finally:
        pool.close()
    assert len(calls) == 3, calls
    assert max(len(view) for view in seen) <= 2, seen  # never three sessions of a maxsize=2 pool
    assert calls[1] not in seen[-1], (seen, calls)  # the cut one is gone
    assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats


def test_reconcile_kills_an_orphan_left_in_the_middle_of_an_answer(
    admin: Any, make_account: Callable[..., Account]
) -> None:
    """What an asynchronous exception inside a return's clean-up can leave:
    a slot the pool holds (HELD) that nobody works on, its connection left
    mid-statement. The reconcile closes it, and kills its session, counting
    the place until it is gone (before: closed without a kill, the statement
    ran on for its 30 s)."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    pool = ConnectionPool(maxsize=1, connect_timeout=1, **kw)
    try:
        with sessions_ended(functools.partial(query, admin), account.user):
            conn = pool.get_conn(10)
            assert pool._maintenance is not None
            pool._maintenance.stop()  # this test's reconcile call is the round
            session = conn.thread_id()
            with pytest.raises(KeyboardInterrupt), raise_after(0.5, KeyboardInterrupt):
                query(conn, "DO SLEEP(30)")
            slot = conn._slot
            assert slot is not None
            with pool._lock:  # a return interrupted after its stores, its clean-up lost
                conn._slot = conn._raw = None
                slot.proxied = False
                pool._books.hold(slot)
            assert pool._run(pool._reconcile_plan(0.0, {})) == 1
            assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=15)
            stats = pool.get_stats()
            assert session not in pool_sessions_of(admin, account)
            again = pool.get_conn(10)  # the place is free again
            again.close()
    finally:
        pool.close()
    assert (stats["kills"], stats["kill_failures"], stats["closed_orphaned"], stats["open"]) == (1, 0, 1, 0), stats


# -- check() cut ------------------------------------------------------------------------


def sleeping_check_once(session: list[int]) -> Callable[[Any], Any]:
    """A ``check=`` whose first call runs DO SLEEP(30) on the server (noting
    the session's id in ``session``); later calls pass at once."""

    def check(raw: Any) -> Any:
        if session:
            return None
        session.append(raw.server_thread_id[0])
        return raw.query("DO SLEEP(30)")  # a coroutine on the asyncio pool's driver, run at once on PyMySQL

    return check


def assert_check_cut(stats: dict[str, Any], session: int, admin: Any, account: Account) -> None:
    """A cut check() is no failed check: the connection it was checking is
    closed as cut (killed: its statement ran on) and the other goes back to idle."""
    assert (stats["closed_failed_check"], stats["closed_broken"]) == (0, 1), stats
    assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats
    assert (stats["connections_made"], stats["idle"]) == (2, 1), stats  # nothing was dialed in its place yet
    assert session not in pool_sessions_of(admin, account)


def test_an_interrupted_check_is_no_failed_check(admin: Any, make_account: Callable[..., Account]) -> None:
    """KeyboardInterrupt in check(): before, every connection not yet checked
    was closed and all were counted under closed_failed_check."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    session: list[int] = []
    pool = ConnectionPool(maxsize=2, pre_create_num=2, check=sleeping_check_once(session), **kw)
    try:
        with sessions_ended(functools.partial(query, admin), account.user):
            assert pool._maintenance is not None
            pool._maintenance.stop()  # no refill in the cut one's place while the test reads the stats
            with pytest.raises(KeyboardInterrupt), raise_after(0.5, KeyboardInterrupt):
                pool.check()
            assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=15)
            stats = pool.get_stats()
    finally:
        pool.close()
    assert_check_cut(stats, session[0], admin, account)


def test_a_cancelled_check_is_no_failed_check(admin: Any, make_account: Callable[..., Account]) -> None:
    """The asyncio twin: check() cancelled while it checks the first connection."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    session: list[int] = []

    async def scenario() -> dict[str, Any]:
        pool = AsyncConnectionPool(maxsize=2, pre_create_num=2, check=sleeping_check_once(session), **kw)
        async with pool:
            await pool.wait(10)
            assert pool._maintenance is not None
            await pool._maintenance.stop()  # no refill in the cut one's place while the test reads the stats
            checking = asyncio.ensure_future(pool.check())
            for _ in range(200):  # until the check's statement runs (bounded: 10 s)
                if session or checking.done():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            checking.cancel()
            with pytest.raises(asyncio.CancelledError):
                await checking
            for _ in range(300):  # until the kill ended (bounded: 15 s)
                if pool.get_stats()["killing"] == 0:
                    break
                await asyncio.sleep(0.05)
            return pool.get_stats()

    with sessions_ended(functools.partial(query, admin), account.user):
        stats = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert_check_cut(stats, session[0], admin, account)


# -- the pool's own reset cut -------------------------------------------------------------

RESET_SLEEP = 5.0  # the return's session reset runs this long on the server once armed


@pytest.fixture
def slow_reset(admin: Any) -> Iterator[Callable[[bool], None]]:
    """An ``init_command`` (re-run by ``reset_session=True`` on every return)
    that sleeps RESET_SLEEP while ``admin`` holds a user lock: ``arm(True)``
    makes the next reset slow, ``arm(False)`` the connects after it quick
    again (a lock, not a table: an UPDATE of a table the sleeping statement
    read ended that statement). The command is on ``arm.init_command``."""
    lock = f"pymysqlpool_slow_reset_{random.randrange(1 << 30):x}"

    def arm(on: bool) -> None:
        if on:
            assert query(admin, "SELECT GET_LOCK(%s, 0)", (lock,)) == ((1,),)
        else:
            query(admin, "DO RELEASE_LOCK(%s)", (lock,))

    arm.init_command = f"DO IF(IS_USED_LOCK('{lock}') IS NULL, 0, SLEEP({RESET_SLEEP}))"  # type: ignore[attr-defined]
    try:
        yield arm
    finally:
        arm(False)


def reset_running(admin: Any, account: Account) -> bool:
    rows = query(admin, "SELECT INFO FROM information_schema.PROCESSLIST WHERE USER = %s", (account.user,))
    return any("IS_USED_LOCK" in str(row[0]) for row in rows)


def assert_one_session_and_killed(seen: list[set[int]], first: int, stats: dict[str, Any]) -> None:
    assert seen and max(len(view) for view in seen) == 1, seen  # never two sessions of a maxsize=1 pool
    assert first not in seen[-1], (seen, first)  # the reset one is gone
    assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats
    assert stats["connections_made"] == 2 and stats["closed_broken"] == 1, stats


@pytest.mark.parametrize("cut", ["interrupt", "io_timeout"])
def test_a_return_cut_in_its_reset_is_killed_and_its_place_kept(
    admin: Any, make_account: Callable[..., Account], slow_reset: Any, cut: str
) -> None:
    """ConnectionPool(maxsize=1, reset_session=True): the return's reset is
    cut while the server runs it -- by a KeyboardInterrupt, or by io_timeout
    (a long ROLLBACK is the same). Closing the socket does not stop it: the
    session is killed and its place kept, so the next borrow never makes the
    server hold two of the pool's sessions (before: the slot was freed at
    once and a second session dialed beside the first)."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password, "init_command": slow_reset.init_command}
    timeout = 1.0 if cut == "io_timeout" else RESET_SLEEP + 5
    pool = ConnectionPool(maxsize=1, reset_session=True, connect_timeout=timeout, **kw)
    try:
        conn = pool.get_conn(10)
        first = conn.thread_id()
        slow_reset(True)
        if cut == "interrupt":
            with pytest.raises(KeyboardInterrupt), raise_after(1.0, KeyboardInterrupt):
                conn.close()
        else:
            conn.close()  # the reset times out: the connection is closed, the return succeeds
        assert reset_running(admin, account) or pool.get_stats()["kills"] == 1
        slow_reset(False)
        again, seen = borrow_watched(pool, admin, account)
        stats = pool.get_stats()
        again.close()
    finally:
        pool.close()
    assert_one_session_and_killed(seen, first, stats)


def test_a_release_cancelled_in_its_reset_is_killed_and_its_place_kept(
    admin: Any, make_account: Callable[..., Account], slow_reset: Any
) -> None:
    """The asyncio twin: the release's reset cancelled while the server runs it."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password, "init_command": slow_reset.init_command}
    seen: list[set[int]] = []

    async def scenario() -> tuple[int, dict[str, Any]]:
        pool = AsyncConnectionPool(
            maxsize=1,
            reset_session=True,
            connect_timeout=RESET_SLEEP + 5,
            **kw,
        )
        async with pool:
            conn = await pool.get_conn(10)
            first = conn.thread_id()
            await asyncio.to_thread(slow_reset, True)
            release = asyncio.ensure_future(pool.release(conn))
            for _ in range(200):  # until the reset's statement runs on the server (bounded: 10 s)
                if await asyncio.to_thread(reset_running, admin, account) or release.done():
                    break
                await asyncio.sleep(0.05)
            assert not release.done()
            release.cancel()
            with pytest.raises(asyncio.CancelledError):
                await release
            await asyncio.to_thread(slow_reset, False)
            again = await aborrow_watched(pool, admin, account, seen)
            stats = pool.get_stats()
            await pool.release(again)
        return first, stats

    first, stats = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert_one_session_and_killed(seen, first, stats)


# -- a connection reconnected in place ----------------------------------------------------


def test_a_connection_reconnected_in_place_is_killed_under_its_new_session(
    admin: Any, make_account: Callable[..., Account]
) -> None:
    """0.5.0 ``ping(reconnect=True)`` swaps a dead session for a new one in the
    borrowed slot; a statement then abandoned on it must be killed under the
    new session's id (before: the slot kept the dead one's, the KILL found
    nothing, and the statement ran on, its slot freed)."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    events = Pairing()
    pool = ConnectionPool(maxsize=1, events=events, **kw)
    try:
        conn = pool.get_conn(10)
        dead = conn.thread_id()
        kill_sessions(lambda sql: query(admin, sql), {dead}, gone_within=10.0)
        conn.ping()  # 0.5.0's default: reconnect=True
        fresh = conn.thread_id()
        assert fresh != dead
        with pytest.raises(KeyboardInterrupt), raise_after(0.5, KeyboardInterrupt):
            query(conn, "DO SLEEP(10)")
        conn.close()
        for _ in range(200):  # until the kill ended (bounded: 10 s)
            if pool.get_stats()["killing"] == 0:
                break
            time.sleep(0.05)
        stats = pool.get_stats()
        assert fresh not in pool_sessions_of(admin, account)  # the abandoned statement stopped
        assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats
    finally:
        pool.close()
    # Each connection on_connect announced closed once, the dead one included (swapped out).
    assert [raw for raw, _ in events.closed] == events.connected and len(events.connected) == 2, events.closed


def test_a_reconnect_cut_in_its_set_up_is_killed_on_return(admin: Any, make_account: Callable[..., Account]) -> None:
    """``ping(reconnect=True)`` interrupted while its new connection runs
    configure()'s statement: the cut connection takes the slot's place, so
    its return kills it and keeps the place until it is gone (before: the
    return dropped the dead one, and the next borrow dialed beside the
    statement still running)."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    calls: list[int] = []
    events = Pairing()
    pool = ConnectionPool(
        maxsize=1, connect_timeout=SET_UP_SLEEP + 5, configure=slow_first_set_up(calls, 2), events=events, **kw
    )
    try:
        conn = pool.get_conn(10)
        kill_sessions(lambda sql: query(admin, sql), {conn.thread_id()}, gone_within=10.0)
        with pytest.raises(KeyboardInterrupt), raise_after(1.0, KeyboardInterrupt):
            conn.ping()  # reconnects: the new session's configure() sleeps
        assert len(calls) == 2 and set_up_running(admin, account)
        conn.close()
        again, seen = borrow_watched(pool, admin, account)
        stats = pool.get_stats()
        again.close()
    finally:
        pool.close()
    assert seen and max(len(view) for view in seen) == 1, seen
    assert seen[-1] == {calls[2]}, (seen, calls)
    assert (stats["kills"], stats["kill_failures"], stats["killing"]) == (1, 0, 0), stats
    # The dead one and the last one announced and closed; the cut one neither.
    assert [raw for raw, _ in events.closed] == events.connected and len(events.connected) == 2, events.closed


@pytest.fixture
def held_row(admin: Any) -> Iterator[str]:
    """A table whose row 1 another connection holds locked (FOR UPDATE) for
    the test: a statement that locks it waits -- up to its
    innodb_lock_wait_timeout, and unlike a SLEEP it never notices that its
    client's socket closed. Yields the table's name."""
    table = f"held_row_{random.randrange(1 << 30):x}"
    query(admin, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
    query(admin, f"INSERT INTO `{table}` VALUES (1, 1)")
    holder = raw_connect()
    try:
        holder.begin()
        query(holder, f"SELECT v FROM `{table}` WHERE id = 1 FOR UPDATE")
        yield table
    finally:
        holder.rollback()
        holder.close()
        query(admin, f"DROP TABLE IF EXISTS `{table}`")


LOCK_WAIT = "SET SESSION innodb_lock_wait_timeout = 30"


def waiting_for(admin: Any, session: int) -> bool:
    rows = query(admin, "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (session,))
    return any("FOR UPDATE" in str(row[0]) for row in rows)


def test_a_warm_up_cut_in_its_set_up_is_killed(admin: Any, make_account: Callable[..., Account], held_row: str) -> None:
    """The constructor's warm-up interrupted while its connection's
    configure() waits for a row lock: the pool is never made, but the session
    must not linger on the server waiting -- it is killed (before: its socket
    was closed and the wait ran on to its 30 s timeout)."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    calls: list[int] = []

    def configure(raw: Any) -> None:
        calls.append(raw.server_thread_id[0])
        raw.query(LOCK_WAIT)
        raw.query(f"SELECT v FROM `{held_row}` WHERE id = 1 FOR UPDATE")

    with pytest.raises(KeyboardInterrupt), raise_after(1.0, KeyboardInterrupt):
        ConnectionPool(maxsize=1, pre_create_num=1, connect_timeout=40, configure=configure, **kw)
    assert len(calls) == 1
    for _ in range(200):  # until the kill ended (bounded: 10 s)
        if calls[0] not in pool_sessions_of(admin, account):
            break
        time.sleep(0.05)
    assert calls[0] not in pool_sessions_of(admin, account)


def test_a_statement_shut_down_by_close_timeout_is_killed(
    admin: Any, make_account: Callable[..., Account], held_row: str
) -> None:
    """close(timeout) shuts down the socket of a connection still borrowed;
    the borrower's statement -- a row-lock wait of up to 30 s -- runs on on
    the server, so its return kills it (before: the end of stream the pool
    itself caused was taken for the server hanging up, and nothing was
    killed: the session still waited 2 s later)."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    pool = ConnectionPool(maxsize=1, **kw)
    ids: list[int] = []
    errors: list[BaseException] = []

    def borrower() -> None:
        conn = pool.get_conn(10)
        ids.append(conn.thread_id())
        try:
            query(conn, LOCK_WAIT)
            query(conn, f"SELECT v FROM `{held_row}` WHERE id = 1 FOR UPDATE")
        except pymysql.err.OperationalError as exc:
            errors.append(exc)
        conn.close()

    worker = threading.Thread(target=borrower, name="test-borrower", daemon=True)
    worker.start()
    for _ in range(200):  # until the borrower waits for the lock (bounded: 10 s)
        if ids and waiting_for(admin, ids[0]):
            break
        time.sleep(0.05)
    assert pool.close(timeout=0.2) == 1
    worker.join(10)
    assert len(errors) == 1, errors
    assert_killed_soon(admin, account, ids[0], pool.get_stats)


def test_a_statement_shut_down_by_async_close_timeout_is_killed(
    admin: Any, make_account: Callable[..., Account], held_row: str
) -> None:
    """The asyncio twin: close(timeout) aborts the transport under a borrower
    waiting for a row lock; its return kills the session."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    ids: list[int] = []
    errors: list[BaseException] = []

    async def scenario() -> AsyncConnectionPool:
        pool = AsyncConnectionPool(maxsize=1, **kw)
        await pool.open()

        async def borrower() -> None:
            async with pool.connection() as conn, conn.cursor() as cur:
                ids.append(conn.thread_id())
                try:
                    await cur.execute(LOCK_WAIT)
                    await cur.execute(f"SELECT v FROM `{held_row}` WHERE id = 1 FOR UPDATE")
                except pymysql.err.OperationalError as exc:
                    errors.append(exc)

        task = asyncio.ensure_future(borrower())
        for _ in range(200):  # until the borrower waits for the lock (bounded: 10 s)
            if ids and await asyncio.to_thread(waiting_for, admin, ids[0]):
                break
            await asyncio.sleep(0.05)
        assert await pool.close(timeout=0.2) == 1
        await asyncio.wait_for(task, 10)
        for _ in range(200):  # the kill's task runs on this loop: until it ended (bounded: 10 s)
            if pool.get_stats()["killing"] == 0:
                break
            await asyncio.sleep(0.05)
        return pool

    pool = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert len(errors) == 1, errors
    assert_killed_soon(admin, account, ids[0], pool.get_stats)


def assert_killed_soon(admin: Any, account: Account, session: int, stats: Callable[[], dict[str, Any]]) -> None:
    for _ in range(200):  # until the kill ended (bounded: 10 s)
        if stats()["killing"] == 0 and session not in pool_sessions_of(admin, account):
            break
        time.sleep(0.05)
    assert session not in pool_sessions_of(admin, account)
    assert (stats()["kills"], stats()["kill_failures"]) == (1, 0), stats()


# -- close(timeout): the stats right after it -------------------------------------------


def sleep_running(admin: Any, session: int) -> bool:
    rows = query(admin, "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (session,))
    return bool(rows) and "DO SLEEP" in str(rows[0][0])


def assert_let_go(stats: dict[str, Any]) -> None:
    """Right after close(timeout) shut both borrowed connections down: neither
    is counted open nor borrowed though neither proxy was given back; the one
    mid-statement is killed (counted in killing until its kill ends)."""
    assert (stats["borrowed"], stats["idle"], stats["closed_on_pool_close"]) == (0, 0, 2), stats
    assert stats["open"] == stats["killing"] <= 1, stats


def test_close_timeout_stops_counting_what_it_shut_down(admin: Any, make_account: Callable[..., Account]) -> None:
    """get_stats() after close(timeout) is true before the borrowers give
    their proxies back (before: both still counted open and borrowed until
    they did, maybe never); the late returns change nothing but ``returns``."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    pool = ConnectionPool(maxsize=2, **kw)
    ids: list[int] = []
    errors: list[BaseException] = []
    give_back = threading.Event()

    def borrower() -> None:
        conn = pool.get_conn(10)
        ids.append(conn.thread_id())
        try:
            query(conn, "DO SLEEP(30)")
        except pymysql.err.OperationalError as exc:
            errors.append(exc)
        give_back.wait(20)
        conn.close()

    with sessions_ended(functools.partial(query, admin), account.user):
        idle = pool.get_conn(10)  # lent, between statements
        worker = threading.Thread(target=borrower, name="test-borrower", daemon=True)
        worker.start()
        assert wait_until(lambda: bool(ids) and sleep_running(admin, ids[0]), timeout=10)
        assert pool.close(timeout=0.2) == 2
        assert_let_go(pool.get_stats())
        assert_killed_soon(admin, account, ids[0], pool.get_stats)  # before the borrower gave it back
        give_back.set()
        worker.join(10)
        idle.close()
        stats = pool.get_stats()
    assert len(errors) == 1, errors
    assert (stats["open"], stats["closed_on_pool_close"], stats["returns"]) == (0, 2, 2), stats


def test_async_close_timeout_stops_counting_what_it_shut_down(admin: Any, make_account: Callable[..., Account]) -> None:
    """The asyncio twin."""
    account = make_account()
    kw = {**mysql_kwargs(), "user": account.user, "password": account.password}
    ids: list[int] = []
    errors: list[BaseException] = []
    seen: list[dict[str, Any]] = []

    async def scenario() -> AsyncConnectionPool:
        pool = AsyncConnectionPool(maxsize=2, **kw)
        await pool.open()
        give_back = asyncio.Event()

        async def borrower() -> None:
            conn = await pool.get_conn(10)
            ids.append(conn.thread_id())
            try:
                async with conn.cursor() as cur:
                    await cur.execute("DO SLEEP(30)")
            except pymysql.err.OperationalError as exc:
                errors.append(exc)
            await asyncio.wait_for(give_back.wait(), 20)
            await pool.release(conn)

        idle = await pool.get_conn(10)
        task = asyncio.ensure_future(borrower())
        for _ in range(200):  # until the borrower's statement runs (bounded: 10 s)
            if ids and await asyncio.to_thread(sleep_running, admin, ids[0]):
                break
            await asyncio.sleep(0.05)
        assert await pool.close(timeout=0.2) == 2
        seen.append(pool.get_stats())
        for _ in range(200):  # the kill's task runs on this loop: until it ended (bounded: 10 s)
            if pool.get_stats()["killing"] == 0:
                break
            await asyncio.sleep(0.05)
        seen.append(pool.get_stats())
        give_back.set()
        await asyncio.wait_for(task, 10)
        await pool.release(idle)
        return pool

    with sessions_ended(functools.partial(query, admin), account.user):
        pool = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert len(errors) == 1, errors
    assert_let_go(seen[0])
    assert (seen[1]["open"], seen[1]["kills"], seen[1]["kill_failures"]) == (0, 1, 0), seen[1]
    stats = pool.get_stats()
    assert (stats["open"], stats["closed_on_pool_close"], stats["returns"]) == (0, 2, 2), stats
