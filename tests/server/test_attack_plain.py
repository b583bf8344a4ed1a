"""Attacks on the plain pools (an independent tester's findings and checks),
designed from README.md and docs/ alone.

Each test runs against both shells (the thread pool, and the asyncio pool
behind its blocking facade) unless it needs the asyncio pool itself. A test
marked xfail(strict=True) is a promise of the docs that the code still breaks;
it fails (and must lose its mark) once the code keeps it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from pymysqlpool import AsyncConnectionPool, PoolClosed, WrongEventLoop
from support.waiting import settle

pytestmark = pytest.mark.server


def one_value(conn: Any, sql: str) -> Any:
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchall()[0][0]


# -- reset_session=True: what one borrower leaves is gone for the next --------
#
# docs/parameters.md, reset_session: "user variables, temporary tables,
# prepared statements and `SET SESSION` changes never reach the next
# borrower"; the character set is re-applied.

STATE_LEFT_BEHIND = {
    # name: (what the first borrower runs, what the next one asks, its answer on a fresh session)
    "user variable": (["SET @a2_secret = 42"], "SELECT @a2_secret", None),
    "SET NAMES": (["SET NAMES latin1"], "SELECT @@character_set_client", "utf8mb4"),
    "sql_mode": (["SET SESSION sql_mode = 'ANSI_QUOTES'"], "SELECT @@sql_mode LIKE '%ANSI_QUOTES%'", 0),
    "isolation level": (
        ["SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
        "SELECT @@tx_isolation",
        "REPEATABLE-READ",
    ),
    "time_zone": (["SET time_zone = '+05:00'"], "SELECT @@time_zone", "SYSTEM"),
    "foreign_key_checks": (["SET foreign_key_checks = 0"], "SELECT @@foreign_key_checks", 1),
    "last_insert_id": (["SELECT LAST_INSERT_ID(77)"], "SELECT LAST_INSERT_ID()", 0),
    "named lock": (["SELECT GET_LOCK('a2_named_lock', 0)"], "SELECT IS_USED_LOCK('a2_named_lock') IS NULL", 1),
    "XA transaction left idle": (["XA START 'a2_xa'", "XA END 'a2_xa'"], "SELECT @@in_transaction", 0),
}


@pytest.mark.parametrize("state", sorted(STATE_LEFT_BEHIND))
def test_reset_session_clears_what_a_borrower_left(make_pool: Callable[..., Any], state: str) -> None:
    setup, ask, fresh = STATE_LEFT_BEHIND[state]
    pool = make_pool(maxsize=1, reset_session=True, charset="utf8mb4")
    with pool.connection() as conn:
        first = one_value(conn, "SELECT CONNECTION_ID()")
        for sql in setup:
            conn.cursor().execute(sql)
    with pool.connection() as conn:
        assert one_value(conn, "SELECT CONNECTION_ID()") == first  # the same session, reset
        assert one_value(conn, ask) == fresh
    assert pool.get_stats()["session_resets"] == 2


def test_reset_session_ends_lock_tables(make_pool: Callable[..., Any], make_table: Callable[..., str]) -> None:
    locked = make_table("locked", "i INT")
    other = make_table("other", "i INT")
    pool = make_pool(maxsize=1, reset_session=True)
    with pool.connection() as conn:
        conn.cursor().execute(f"LOCK TABLES `{locked}` READ")
    with pool.connection() as conn:
        # Under LOCK TABLES a table not locked is refused (1100).
        assert one_value(conn, f"SELECT COUNT(*) FROM `{other}`") == 0
        conn.cursor().execute(f"INSERT INTO `{locked}` VALUES (1)")


@pytest.mark.parametrize(
    ("made", "used", "code"),
    [
        ("PREPARE a2_stmt FROM 'SELECT 1'", "EXECUTE a2_stmt", 1243),  # unknown prepared statement
        ("CREATE TEMPORARY TABLE a2_tmp (i INT)", "SELECT * FROM a2_tmp", 1146),  # no such table
    ],
    ids=["prepared statement", "temporary table"],
)
def test_reset_session_drops_what_a_borrower_made(
    made: str, used: str, code: int, make_pool: Callable[..., Any]
) -> None:
    pool = make_pool(maxsize=1, reset_session=True)
    with pool.connection() as conn:
        conn.cursor().execute(made)
        conn.cursor().execute(used)  # it is there for its maker
    with pool.connection() as conn:
        with pytest.raises(pymysql.err.MySQLError) as caught:
            conn.cursor().execute(used)
        assert caught.value.args[0] == code


def test_reset_session_restores_the_pools_database_after_use(make_pool: Callable[..., Any]) -> None:
    pool = make_pool(maxsize=1, reset_session=True)
    with pool.connection() as conn:
        home = one_value(conn, "SELECT DATABASE()")
        conn.cursor().execute("USE information_schema")
    with pool.connection() as conn:
        assert one_value(conn, "SELECT DATABASE()") == home


def test_configure_settings_survive_reset_session(make_pool: Callable[..., Any], shell: str) -> None:
    statement = "SET SESSION time_zone = '+03:00'"
    if shell == "thread":

        def configure(raw: Any) -> None:
            with raw.cursor() as cur:
                cur.execute(statement)

    else:

        async def configure(raw: Any) -> None:  # type: ignore[misc]
            async with raw.cursor() as cur:
                await cur.execute(statement)

    pool = make_pool(maxsize=1, reset_session=True, configure=configure)
    zones = []
    for _ in range(2):
        with pool.connection() as conn:
            zones.append(one_value(conn, "SELECT @@time_zone"))
    assert pool.get_stats()["connections_made"] == 1
    assert zones == ["+03:00", "+03:00"]


# -- reset_session=False: the transaction and autocommit are restored ---------
#
# docs/guide.md: "Whatever the borrower leaves uncommitted is rolled back
# before anyone else gets the connection, and an autocommit mode the borrower
# changed is restored" -- also when changed by SQL rather than the API.


def test_sql_transaction_and_sql_autocommit_are_undone_on_return(
    make_pool: Callable[..., Any], make_table: Callable[..., str]
) -> None:
    table = make_table("tx", "i INT")
    pool = make_pool(maxsize=1)
    with pool.connection() as conn:
        conn.cursor().execute("START TRANSACTION")
        conn.cursor().execute(f"INSERT INTO `{table}` VALUES (1)")
    with pool.connection() as conn:
        conn.cursor().execute("SET autocommit = 0")
        conn.cursor().execute(f"INSERT INTO `{table}` VALUES (2)")
    with pool.connection() as conn:
        assert one_value(conn, "SELECT @@autocommit") == 1
        assert one_value(conn, "SELECT @@in_transaction") == 0
        assert one_value(conn, f"SELECT COUNT(*) FROM `{table}`") == 0
    assert pool.get_stats()["rollbacks_on_return"] == 2


# -- close() and resize() ------------------------------------------------------


def test_close_ends_a_queued_borrow_with_pool_closed(make_pool: Callable[..., Any]) -> None:
    """docs/guide.md: close() "stops lending"; errors: PoolClosed "the pool was
    closed". A borrower queued for 60 s must not sit out its timeout."""
    pool = make_pool(maxsize=1, timeout=60)
    held = pool.get_conn()
    outcome: list[BaseException] = []

    def borrow() -> None:
        try:
            pool.get_conn()
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=borrow)
    waiter.start()
    for _ in range(200):  # until it is queued (bounded: 10 s)
        if pool.get_stats()["waiting"] == 1:
            break
        threading.Event().wait(0.05)
    assert pool.get_stats()["waiting"] == 1
    assert pool.close(timeout=0) == 1  # the held one, forced
    waiter.join(20)
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], PoolClosed)
    assert pool.get_stats()["waiting"] == 0
    # The forced connection stays counted as lent until its proxy comes back
    # (connections_made = closes + open); then it is a close by close().
    pool.release(held)
    stats = pool.get_stats()
    assert (stats["open"], stats["borrowed"], stats["closed_on_pool_close"]) == (0, 0, 1)
    assert stats["borrow_errors"] == 1  # the queued borrow, failed by close()


@pytest.mark.parametrize(
    "arguments",
    [{"maxsize": 0}, {"maxsize": -3}, {"maxsize": 1, "size": 2}, {"size": 5}, {"maxsize": 1}],
    ids=["maxsize0", "maxsize-3", "size-over-new-maxsize", "size-over-maxsize", "below-pre-create"],
)
def test_a_refused_resize_names_the_pool_and_changes_nothing(
    make_pool: Callable[..., Any], prefix: str, arguments: dict[str, int]
) -> None:
    """docs/parameters.md: the methods' argument errors (`resize` among them)
    "also name the pool"; resize(0) and a size above the new maxsize did not."""
    pool = make_pool(maxsize=2, size=2, pre_create_num=2, pool_name=f"{prefix}-resize")
    with pytest.raises(ValueError) as caught:
        pool.resize(**arguments)
    assert str(caught.value).startswith(f"pool '{prefix}-resize': ")
    stats = pool.get_stats()
    assert (stats["pool_max"], stats["pool_size"], stats["pool_min"]) == (2, 2, 2)


# -- asyncio: one loop --------------------------------------------------------
#
# docs/asyncio.md: "Used from another loop, every method raises
# `WrongEventLoop` at once instead of hanging"; "once the pool's loop is
# closed, `close()` may be awaited on any loop".


def test_every_method_refuses_a_second_loop_and_close_works_on_a_third(server_view: Any, admin: Any) -> None:
    pool = AsyncConnectionPool(maxsize=2, **server_view.connect_kwargs)

    async def use() -> None:
        async with pool.connection() as conn, conn.cursor() as cur:
            await cur.execute("SELECT 1")

    asyncio.run(use())
    assert pool.get_stats()["open"] == 1
    calls: dict[str, Callable[[], Any]] = {
        "get_conn": pool.get_conn,
        "connection": use,
        "get_connection": pool.get_connection,
        "check": pool.check,
        "drain": pool.drain,
        "resize": lambda: pool.resize(maxsize=3),
        "wait": lambda: pool.wait(1),
        "open": pool.open,
    }
    for name, call in calls.items():

        async def on_another_loop(call: Callable[[], Any] = call) -> Any:
            return await asyncio.wait_for(call(), 5)

        try:
            asyncio.run(on_another_loop())
        except WrongEventLoop:
            continue
        pytest.fail(f"{name}() ran on a second event loop")
    stats = pool.get_stats()
    assert (stats["open"], stats["idle"], stats["borrowed"], stats["pool_max"]) == (1, 1, 0, 2)
    assert asyncio.run(pool.close()) == 0
    assert server_view.settles_at(admin, 0, timeout=5.0)


# -- reset_session=True re-applies the pool's own settings ---------------------
#
# docs/parameters.md, reset_session: "then re-apply character set,
# `sql_mode`, `init_command` and autocommit"; docs/asyncio.md: `sql_mode`
# (any value, `""` too), `collation`, `init_command` and `autocommit` are
# applied again after COM_RESET_CONNECTION.


def test_reset_session_re_applies_the_pools_settings(make_pool: Callable[..., Any]) -> None:
    pool = make_pool(
        maxsize=1,
        reset_session=True,
        autocommit=False,
        charset="latin1",
        collation="latin1_bin",
        sql_mode="",
        init_command="SET @a2_from_init = 5",
    )
    ask = "SELECT @@autocommit, @@character_set_client, @@collation_connection, @@sql_mode, @a2_from_init"
    answers = []
    for _ in range(2):
        with pool.connection() as conn:
            answers.append(_row(conn, ask))
            conn.cursor().execute("SET NAMES utf8mb4 COLLATE utf8mb4_general_ci")
            conn.cursor().execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
            conn.cursor().execute("SET @a2_from_init = 6")
            conn.autocommit(True)
    assert answers == [(0, "latin1", "latin1_bin", "", 5)] * 2
    assert pool.get_stats()["connections_made"] == 1


def _row(conn: Any, sql: str) -> tuple[Any, ...]:
    cur = conn.cursor()
    cur.execute(sql)
    return tuple(cur.fetchall()[0])


def test_a_session_timeout_a_borrower_shortened_is_never_seen_by_the_next(make_pool: Callable[..., Any]) -> None:
    """A borrower sets wait_timeout = 1 s and returns (reset_session=False keeps
    it); the server hangs up on the idle session. docs/failure-handling.md:
    "a dead one is closed and the borrower silently gets another"."""
    pool = make_pool(maxsize=1, keepalive_interval=0)
    with pool.connection() as conn:
        first = one_value(conn, "SELECT CONNECTION_ID()")
        conn.cursor().execute("SET SESSION wait_timeout = 1")
    threading.Event().wait(3)  # the server drops it after 1 s (checks each second)
    with pool.connection() as conn:
        assert one_value(conn, "SELECT CONNECTION_ID()") != first
        assert one_value(conn, "SELECT 1") == 1
    stats = pool.get_stats()
    assert stats["connections_made"] == 2 and stats["closed_failed_check"] == 1


# -- asyncio: cancellation of the control methods ------------------------------
#
# docs/asyncio.md: "A task cancelled while it waits in the queue, while its
# connection is being dialed, pinged, rolled back or closed, leaves the books
# exact ... and no slot is lost"; docs/stats.md: once the pool is quiet,
# `connections_made` = closes + `open` - `killing`.


def test_cancelled_check_drain_resize_and_borrows_lose_no_slot(server_view: Any, admin: Any) -> None:
    rounds, maxsize = 60, 8
    chooser = random.Random(7)

    async def storm() -> AsyncConnectionPool:
        pool = AsyncConnectionPool(
            maxsize=maxsize, size=maxsize, pre_create_num=2, validation_interval=0, **server_view.connect_kwargs
        )
        async with pool:

            async def borrow() -> None:
                async with pool.connection() as conn, conn.cursor() as cur:
                    await cur.execute("SELECT SLEEP(0.01)")

            steps: dict[str, Callable[[], Any]] = {
                "check": pool.check,
                "drain": pool.drain,
                "resize": lambda: pool.resize(maxsize=chooser.choice([maxsize, 4, 2]), size=2),
                "borrow": borrow,
            }
            for _ in range(rounds):
                tasks = [asyncio.ensure_future(steps[chooser.choice(sorted(steps))]()) for _ in range(4)]
                await asyncio.sleep(chooser.random() * 0.004)
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
            await pool.resize(maxsize=maxsize, size=maxsize)

            def quiet() -> bool:
                stats = pool.get_stats()
                return (
                    stats["killing"] == stats["connecting"] == stats["borrowed"] == 0
                    and stats["open"] == stats["idle"]
                    and stats["open"] >= 2  # pre_create_num, refilled by maintenance
                )

            assert await settle(quiet, timeout=15.0), pool.get_stats()
            stats = pool.get_stats()
            closes = sum(value for key, value in stats.items() if key.startswith("closed_"))
            assert stats["connections_made"] == closes + stats["open"], stats
            # Every slot is usable: maxsize borrows at once, each a live session.
            conns = [await pool.get_conn(timeout=10) for _ in range(maxsize)]
            for conn in conns:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT 1")
                await pool.release(conn)
        return pool

    final = asyncio.run(storm()).get_stats()
    assert final["open"] == 0 and final["kill_failures"] == 0
    assert server_view.settles_at(admin, 0, timeout=5.0)


# -- absurd but accepted arguments ---------------------------------------------


def test_an_idle_pool_with_a_tiny_con_lifetime_does_not_dial_without_end(make_pool: Callable[..., Any]) -> None:
    """docs/guide.md: "A pool opens connections as borrowers need them";
    docs/parameters.md, con_lifetime: an expired connection "is closed" (when
    returned, when it would be lent, or by the maintenance thread while idle)."""
    pool = make_pool(maxsize=2, con_lifetime=0.001)
    # Whether the loop starts depends on timing (seen not to once in a loaded
    # run): a few tries, each a few borrows and then 1.5 s with none.
    for _ in range(4):
        for _ in range(3):
            with pool.connection() as conn:
                assert one_value(conn, "SELECT 1") == 1
        before = pool.get_stats()["connections_made"]
        threading.Event().wait(1.5)  # nobody borrows meanwhile
        grown = pool.get_stats()["connections_made"] - before
        # One successor per maintenance round would be a handful; the loop is dozens to hundreds.
        assert grown <= 10, f"{grown} connections opened in 1.5 s with no borrower"


def test_a_cancelled_reset_on_return_never_lends_the_borrowers_state(server_view: Any, admin: Any) -> None:
    """docs/asyncio.md: a task cancelled while its connection is being reset
    leaves the books exact and "never leaves a half-reset connection to the
    next borrower" (README); with reset_session=True the next borrower never
    sees the user variable the cancelled one set."""
    chooser = random.Random(3)

    async def storm() -> AsyncConnectionPool:
        pool = AsyncConnectionPool(maxsize=2, reset_session=True, **server_view.connect_kwargs)
        async with pool:
            for number in range(150):
                conn = await pool.get_conn()
                async with conn.cursor() as cur:
                    await cur.execute("SET @a2_left = %s", (number,))
                returning = asyncio.ensure_future(pool.release(conn))
                await asyncio.sleep(chooser.random() * 0.002)
                returning.cancel()
                try:
                    await returning
                except asyncio.CancelledError:
                    pass
                async with pool.connection() as again, again.cursor() as cur:
                    await cur.execute("SELECT @a2_left")
                    assert (await cur.fetchone())[0] is None, f"round {number}: the variable reached the next borrower"
            stats = pool.get_stats()
            assert stats["borrowed"] == stats["killing"] == 0 and stats["returns"] == 300
            closes = sum(value for key, value in stats.items() if key.startswith("closed_"))
            assert stats["connections_made"] == closes + stats["open"], stats
        return pool

    assert asyncio.run(storm()).get_stats()["open"] == 0
    assert server_view.settles_at(admin, 0, timeout=5.0)
