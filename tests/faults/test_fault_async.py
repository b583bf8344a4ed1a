"""AsyncConnectionPool under network and server faults (throwaway servers and proxies only).

A cancel while a dial or a validation ping hangs in a black hole ends the
borrow at once and gives up what it held; a borrow never outlives ``timeout +
connect_timeout`` however many idle connections hang; a restarted server is
suspected pool-wide and nobody sees an error once it is back; a KILLed
connection is closed on return, never lent again.

Every test runs its own event loop with ``asyncio.run``, bounded by
``asyncio.wait_for``; blocking steps (server restart, polling the server)
run in a thread so the pool's loop keeps going.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pymysql
import pytest
from _faultkit import create_user, error_kinds, session_ids, user_kwargs

from pymysqlpool import AsyncConnectionPool, AsyncPooledConnection, PoolTimeout
from pymysqlpool._slot import OUT
from support.sessions import kill_sessions
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import settle, wait_until

pytestmark = pytest.mark.faults

TEST_LIMIT = 60.0
SLACK = 0.5  # seconds of event-loop scheduling allowed beyond a contract bound


def run(coro: Coroutine[Any, Any, Any], limit: float = TEST_LIMIT) -> Any:
    return asyncio.run(asyncio.wait_for(coro, limit))


async def conn_id(conn: AsyncPooledConnection) -> int:
    async with conn.cursor() as cur:
        await cur.execute("SELECT CONNECTION_ID()")
        (value,) = await cur.fetchone()
    return int(value)


def assert_books(pool: AsyncConnectionPool) -> dict[str, Any]:
    """Nothing lent, dialed, held or waited for; every connection made is
    closed or idle; every borrow ended."""
    stats = pool.get_stats()
    lent = sum(1 for slot in pool._slots if slot.state == OUT)
    killing = stats["killing"]  # slots whose abandoned session is being killed: held, still open
    assert lent == 0 and pool._held == killing, stats
    assert pool._open == len(pool._slots) == len(pool._idle) + killing, stats
    assert stats["connecting"] == 0 and stats["waiting"] == 0, stats
    closes = sum(value for name, value in stats.items() if name.startswith("closed_")) + stats["leaks_reclaimed"]
    assert stats["connections_made"] == closes + stats["open"] - killing, stats
    assert stats["borrows"] == stats["returns"] + stats["leaks_reclaimed"], stats
    return stats


async def all_slots_usable(pool: AsyncConnectionPool, server: ThrowawayMariaDB, user: str) -> set[int]:
    """Borrow ``maxsize`` at once, each a live session of its own; the server
    then shows exactly the pool's connections. Returns their ids."""
    conns = [await pool.get_conn(timeout=10) for _ in range(pool.maxsize)]
    try:
        ids = {await conn_id(conn) for conn in conns}
    finally:
        for conn in conns:
            await pool.release(conn)
    assert len(ids) == pool.maxsize
    assert_books(pool)
    assert await settle(lambda: len(session_ids(server, user)) == pool.total_num), (
        session_ids(server, user),
        pool.get_stats(),
    )
    return ids


def make_async_pool(server: ThrowawayMariaDB, user: str, port: int | None = None, **kwargs: Any) -> AsyncConnectionPool:
    create_user(server, user)
    return AsyncConnectionPool(**user_kwargs(server, user, port=port), **kwargs)


# -- black holes ----------------------------------------------------------------


def test_cancel_during_a_black_holed_dial(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy]
) -> None:
    """A borrow dialing into a black hole, cancelled: it ends at once, gives
    its right to dial to the next waiter, and nothing stays counted."""
    proxy = make_proxy(throwaway_server.port)
    user = "u_async_dial"

    async def main() -> None:
        pool = make_async_pool(throwaway_server, user, port=proxy.port, maxsize=1, connect_timeout=5)
        async with pool:
            proxy.blackhole()
            dialer = asyncio.create_task(pool.get_conn(timeout=10))
            assert await settle(lambda: proxy.accepted >= 1, timeout=5), "the dial never reached the proxy"
            waiter = asyncio.create_task(pool.get_conn(timeout=10))
            await asyncio.sleep(0.05)
            assert pool.get_stats()["connecting"] == 1 and pool.get_stats()["waiting"] == 1
            dialer.cancel()
            await asyncio.wait({dialer}, timeout=2)  # well before connect_timeout (5 s)
            assert dialer.cancelled(), "the cancel did not end the dial"
            # The waiter got the right to dial and dials now, into the hole too.
            await asyncio.sleep(0.05)
            stats = pool.get_stats()
            assert stats["waiting"] == 0 and stats["connecting"] == 1 and stats["open"] == 0, stats
            assert await settle(lambda: proxy.accepted >= 2, timeout=5)
            proxy.heal()  # the waiter's stalled dial goes through
            conn = await asyncio.wait_for(waiter, 10)
            assert await conn_id(conn) > 0
            await pool.release(conn)
            stats = assert_books(pool)
            assert stats["open"] == 1 and stats["connections_made"] == 1
            assert stats["borrows"] == 1  # the cancelled borrow is not counted as one
            await all_slots_usable(pool, throwaway_server, user)
        assert await settle(lambda: not session_ids(throwaway_server, user))

    run(main())


def test_cancel_during_a_black_holed_validation_ping(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy]
) -> None:
    """validation_interval=0 pings every idle connection before lending; a
    cancel while the ping hangs ends the borrow at once and closes only that
    connection. After the heal, every slot works again."""
    proxy = make_proxy(throwaway_server.port)
    user = "u_async_ping"

    async def main() -> None:
        pool = make_async_pool(
            throwaway_server,
            user,
            port=proxy.port,
            maxsize=2,
            pre_create_num=2,
            validation_interval=0,
            connect_timeout=5,
        )
        async with pool:
            assert pool.available_num == 2
            proxy.blackhole()
            borrower = asyncio.create_task(pool.get_conn(timeout=10))
            await asyncio.sleep(0.3)
            assert not borrower.done() and pool.available_num == 1  # one is being pinged
            borrower.cancel()
            await asyncio.wait({borrower}, timeout=2)  # well before connect_timeout (5 s)
            assert borrower.cancelled(), "the cancel did not end the ping"
            stats = assert_books(pool)
            # Closed, its place kept (KILLING) until its kill ends: the ping
            # was sent, and for all the pool knows the session still runs it.
            assert stats["closed_broken"] == 1 and stats["open"] == 2 and stats["killing"] == 1, stats
            assert stats["borrows"] == 0, stats
            proxy.heal(drop_stalled=True)  # the stalled idle connection is reset too
            ids = await all_slots_usable(pool, throwaway_server, user)
            assert len(ids) == 2
            assert pool.get_stats()["closed_failed_check"] == 1  # the reset one, caught by its ping

    run(main())


def test_borrow_bounded_with_black_holed_idle_connections(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy]
) -> None:
    """Idle connections whose pings hang, a dial that hangs: every borrow
    still ends by timeout + connect_timeout, with PoolTimeout."""
    proxy = make_proxy(throwaway_server.port)
    user = "u_async_bound"
    timeout, connect_timeout = 1.0, 1.0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = make_async_pool(
            throwaway_server,
            user,
            port=proxy.port,
            maxsize=4,
            pre_create_num=3,
            validation_interval=0,
            connect_timeout=connect_timeout,
        )
        async with pool:
            proxy.blackhole()

            async def timed_borrow() -> tuple[float, BaseException | None]:
                started = loop.time()
                try:
                    conn = await pool.get_conn(timeout=timeout)
                except Exception as exc:
                    return loop.time() - started, exc
                await pool.release(conn)
                return loop.time() - started, None

            results = await asyncio.gather(*(timed_borrow() for _ in range(6)))
            proxy.heal(drop_stalled=True)
            errors = [exc for _, exc in results]
            assert all(isinstance(exc, (PoolTimeout, pymysql.err.OperationalError)) for exc in errors), error_kinds(
                errors
            )
            assert any(isinstance(exc, PoolTimeout) for exc in errors)
            longest = max(took for took, _ in results)
            assert longest <= timeout + connect_timeout + SLACK, [took for took, _ in results]
            assert_books(pool)
            await all_slots_usable(pool, throwaway_server, user)

    run(main())


def test_black_holed_return_and_close_are_bounded(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy]
) -> None:
    """A return whose rollback goes into a black hole ends by connect_timeout
    and closes that connection (its session killed: tried until
    connect_timeout); close() with black-holed idle connections does not
    wait on them at all."""
    proxy = make_proxy(throwaway_server.port)
    user = "u_async_hole_return"
    connect_timeout = 1.0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = make_async_pool(
            throwaway_server, user, port=proxy.port, maxsize=3, pre_create_num=3, connect_timeout=connect_timeout
        )
        async with pool:
            conn = await pool.get_conn(timeout=5)
            await conn_id(conn)
            async with conn.cursor() as cur:
                await cur.execute("BEGIN")
            proxy.blackhole()
            started = loop.time()
            await pool.release(conn)  # the ROLLBACK is never answered
            assert loop.time() - started <= connect_timeout + SLACK
            stats = assert_books(pool)
            # Closed, its place kept until the kill of the ROLLBACK cut by
            # connect_timeout ends (the server unreachable: within connect_timeout).
            assert stats["closed_broken"] == 1 and stats["open"] == 3 and stats["killing"] == 1, stats
            started = loop.time()
        # close() (leaving the block) with the two idle ones still in the hole
        assert loop.time() - started <= connect_timeout + SLACK
        stats = pool.get_stats()
        assert stats["open"] == 0 and stats["closed_on_pool_close"] == 2, stats
        proxy.heal(drop_stalled=True)
        assert await settle(lambda: not session_ids(throwaway_server, user))

    run(main())


# -- the server restarts, a session is killed ----------------------------------------


async def _borrow_and_query(pool: AsyncConnectionPool) -> BaseException | None:
    try:
        async with pool.connection(timeout=10) as conn:
            await conn_id(conn)
    except Exception as exc:
        return exc
    return None


def test_server_restart_suspected_pool_wide(fresh_server: ThrowawayMariaDB, fault_report: Callable[..., None]) -> None:
    """After a restart every idle connection is dead. With a validation window
    shorter than the outage no borrower sees an error; with a long one the
    first borrower to hit a dead connection makes the pool suspect all the
    others, so at most that one borrower fails."""
    user = "u_async_restart"

    async def restart_and_borrow(window: float) -> tuple[list[BaseException | None], dict[str, Any], set[int]]:
        loop = asyncio.get_running_loop()
        pool = make_async_pool(
            fresh_server, user, maxsize=4, pre_create_num=4, validation_interval=window, connect_timeout=2
        )
        async with pool:
            await all_slots_usable(pool, fresh_server, user)
            started = loop.time()
            await asyncio.to_thread(fresh_server.restart)
            if window < 1.0 and loop.time() - started <= window:
                await asyncio.sleep(window)  # the outage outlasts the window, as a real restart does
            outcomes = []
            for _ in range(3):  # rounds of 8 borrowers on 4 connections
                outcomes += await asyncio.gather(*(_borrow_and_query(pool) for _ in range(8)))
            after = await all_slots_usable(pool, fresh_server, user)  # (ids start again after a restart)
            return outcomes, assert_books(pool), after

    outcomes, stats, _ = run(restart_and_borrow(0.5))
    errors = [exc for exc in outcomes if exc is not None]
    fault_report("async: server restart, validation_interval 0.5 (24 borrows)", len(errors), None, error_kinds(errors))
    assert errors == [], error_kinds(errors)
    assert stats["closed_failed_check"] + stats["closed_broken"] >= 4, stats

    outcomes, stats, _ = run(restart_and_borrow(60.0))
    errors = [exc for exc in outcomes if exc is not None]
    fault_report("async: server restart, validation_interval 60 (24 borrows)", len(errors), None, error_kinds(errors))
    assert len(errors) <= 1, error_kinds(errors)
    assert all(isinstance(exc, pymysql.err.OperationalError) for exc in errors), error_kinds(errors)
    # The dead connections were found by a check or on return, none lent twice.
    assert stats["closed_failed_check"] + stats["closed_broken"] >= 4, stats
    if errors:
        assert stats["closed_failed_check"] >= 1, stats  # the others were checked, not lent blindly
    assert wait_until(lambda: not session_ids(fresh_server, user), timeout=10)


@pytest.mark.parametrize("used_after_kill", [False, True])
def test_killed_lent_connection_closed_on_return(throwaway_server: ThrowawayMariaDB, used_after_kill: bool) -> None:
    """A lent connection KILLed by another session goes back closed, whether
    its borrower noticed (its query failed) or not; the next borrower gets
    another session."""
    user = f"u_async_kill_{int(used_after_kill)}"

    async def main() -> None:
        pool = make_async_pool(throwaway_server, user, maxsize=1, validation_interval=0.1, connect_timeout=2)
        async with pool:
            conn = await pool.get_conn(timeout=5)
            killed = await conn_id(conn)
            await asyncio.to_thread(kill_sessions, throwaway_server.admin_query, {killed})
            assert await settle(lambda: killed not in session_ids(throwaway_server, user))
            await asyncio.sleep(0.2)  # lent longer than validation_interval; the hang-up reaches the client
            if used_after_kill:
                with pytest.raises(pymysql.err.OperationalError):
                    await conn_id(conn)
            await pool.release(conn)
            if used_after_kill:  # left mid-answer: the slot counts until a KILL found the session gone
                assert await settle(lambda: pool.get_stats()["killing"] == 0)
            stats = pool.get_stats()
            assert stats["closed_broken"] == 1 and stats["open"] == 0, stats
            async with pool.connection(timeout=5) as again:
                assert await conn_id(again) != killed
            stats = assert_books(pool)
            assert stats["closed_broken"] == 1 and stats["connections_made"] == 2, stats
        assert await settle(lambda: not session_ids(throwaway_server, user))

    run(main())


def test_killed_lent_connection_returned_at_once_not_reused(throwaway_server: ThrowawayMariaDB) -> None:
    """The default validation window (0.5 s), a borrow shorter than it: a lent
    connection whose server session was KILLed is still closed on return once
    the client has seen the hang-up (the event loop already read the end of
    the stream: no round trip needed), so the next borrower never gets it."""
    user = "u_async_kill_quick"

    async def main() -> None:
        pool = make_async_pool(throwaway_server, user, maxsize=1, connect_timeout=2)
        async with pool:
            conn = await pool.get_conn(timeout=5)
            killed = await conn_id(conn)
            await asyncio.to_thread(kill_sessions, throwaway_server.admin_query, {killed})
            reader = conn.raw._reader
            for _ in range(200):  # bounded: the hang-up reaches the client within 2 s
                if reader.at_eof():
                    break
                await asyncio.sleep(0.01)
            assert reader.at_eof(), "the client never saw the server hang up"
            await pool.release(conn)
            stats = pool.get_stats()
            assert stats["closed_broken"] == 1 and stats["open"] == 0, stats
            async with pool.connection(timeout=5) as again:
                assert await conn_id(again) != killed
            assert_books(pool)

    run(main())


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["direct", "with-timeout"])
def test_idle_connection_killed_within_the_window_is_not_lent(
    throwaway_server: ThrowawayMariaDB, timeout: float | None
) -> None:
    """An idle connection the server KILLed, borrowed again well within
    validation_interval: the loop has already read the hang-up, so the pool
    closes it and lends a fresh one (no ping; the borrower's first statement
    failed with 2013, 10 of 10) -- on the direct path and the queued one."""
    user = f"u_async_idle_kill_{'t' if timeout else 'd'}"

    async def main() -> None:
        pool = make_async_pool(throwaway_server, user, maxsize=2, validation_interval=60, connect_timeout=2)
        async with pool:
            for round_ in range(3):
                async with pool.connection(timeout=timeout) as conn:
                    killed = await conn_id(conn)
                    reader = conn.raw._reader
                await asyncio.to_thread(kill_sessions, throwaway_server.admin_query, {killed})
                for _ in range(200):  # bounded: the hang-up reaches the client within 2 s
                    if reader.at_eof():
                        break
                    await asyncio.sleep(0.01)
                assert reader.at_eof(), "the client never saw the server hang up"
                async with pool.connection(timeout=timeout) as again:
                    assert await conn_id(again) != killed  # its first statement works
                stats = pool.get_stats()
                # Validated for free: closed as failing validation, without a ping.
                assert stats["closed_failed_check"] == round_ + 1 and stats["keepalive_pings"] == 0, stats
                assert stats["closed_broken"] == 0, stats
            assert_books(pool)

    run(main())
