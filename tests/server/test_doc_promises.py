"""Promises of README.md and docs/ that no other test showed against the real
server, each with its adversary (found by an audit of every promise of the
docs against the tests). The doc and its words are quoted above each test.

Both shells unless the promise is one pool's alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from server_helpers import Account, ServerView, mysql_kwargs, query, sessions_of

from pymysqlpool import GetConnectionFromPoolError, PoolTimeout
from support.waiting import wait_until

pytestmark = pytest.mark.server

SLACK = 5.0  # scheduling noise on a loaded machine: far below the waits a broken bound would show


def com_rollback(conn: Any) -> int:
    """ROLLBACKs this server session received (no other client can move it)."""
    return int(query(conn, "SHOW SESSION STATUS LIKE 'Com_rollback'")[0][1])


# -- docs/guide.md "Borrowing and giving back" ---------------------------------
# "`release(conn, failed=True)` says that the borrower's work went wrong: the
# connection takes the full return before anyone else gets it -- an open
# transaction rolled back ... -- judged, as every return is, from the status
# the server sent with its last answer: with no transaction open nothing is
# sent (a `with` block that raises passes `failed=True` itself)."
# The adversary: the borrower's last answer is an error packet, which carries
# no status (the bits are those of the INSERT before it), and the pool's own
# connection() block (on asyncio the real `async with`, not the facade's).


def test_failed_release_rolls_back_after_an_error_and_sends_nothing_when_clean(
    make_pool: Callable[..., Any], make_table: Callable[..., str], admin: Any, shell: str
) -> None:
    table = make_table("failed", "id INT PRIMARY KEY")
    pool = make_pool(maxsize=1, validation_interval=3600, keepalive_interval=0)
    conn = pool.get_conn()
    session = conn.thread_id()
    before = com_rollback(conn)
    conn.begin()
    query(conn, f"INSERT INTO `{table}` VALUES (1)")
    with pytest.raises(pymysql.err.OperationalError):
        query(conn, "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'work failed'")
    pool.release(conn, failed=True)
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)

    conn = pool.get_conn()
    assert conn.thread_id() == session
    assert com_rollback(conn) == before + 1  # the server got one ROLLBACK
    assert query(conn, "SELECT @@in_transaction") == ((0,),)
    pool.release(conn, failed=True)  # clean bits: nothing sent

    async def block() -> None:
        async with pool._pool.connection() as aconn:
            await aconn.begin()
            async with aconn.cursor() as cur:
                await cur.execute(f"INSERT INTO `{table}` VALUES (2)")
            raise RuntimeError("halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        if shell == "thread":
            with pool.connection() as tconn:
                tconn.begin()
                query(tconn, f"INSERT INTO `{table}` VALUES (2)")
                raise RuntimeError("halfway")
        else:
            pool._call(block())
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)
    conn = pool.get_conn()
    assert conn.thread_id() == session
    assert com_rollback(conn) == before + 2  # the failed clean return sent none, the block's one
    pool.release(conn)
    stats = pool.get_stats()
    assert stats["rollbacks_on_return"] == 2
    assert stats["returns"] == stats["uses"] == stats["borrows"] == 4  # docs/stats.md: uses equals returns


# -- docs/parameters.md `configure` ---------------------------------------------
# "`configure(raw)` is called once for every new connection, before it is
# lent ... A transaction it leaves open is committed. If it raises, the
# connection is closed and the attempt is a failed connect: before the pool's
# first successful connection the error goes to the borrower at once;
# afterwards the borrow retries ... and its `PoolTimeout` has the last error
# as `__cause__`."
# The adversary: a configure that writes inside a transaction it never
# commits (the write must be committed, the borrower must not be lent an open
# transaction), and one that fails on every connect, first and later: each
# failed session closed on the server, the borrow bounded.


def _configure(shell: str, statements: Callable[[], list[str]]) -> Callable[[Any], Any]:
    """A configure= for ``shell`` that runs ``statements()`` on the new connection."""
    if shell == "thread":

        def configure(raw: Any) -> None:
            with raw.cursor() as cur:
                for sql in statements():
                    cur.execute(sql)

        return configure

    async def aconfigure(raw: Any) -> None:
        async with raw.cursor() as cur:
            for sql in statements():
                await cur.execute(sql)

    return aconfigure


REFUSE = "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'configure refused'"


def test_configure_transaction_is_committed_and_its_error_fails_the_connect(
    make_pool: Callable[..., Any], make_table: Callable[..., str], server_view: ServerView, admin: Any, shell: str
) -> None:
    table = make_table("configured", "id BIGINT PRIMARY KEY")
    failing = threading.Event()

    def statements() -> list[str]:
        if failing.is_set():
            return [REFUSE]
        return ["BEGIN", f"INSERT INTO `{table}` VALUES (CONNECTION_ID())"]  # never committed by configure

    pool = make_pool(maxsize=2, timeout=1, connect_timeout=3, configure=_configure(shell, statements))
    with pool.connection() as conn:
        session = conn.thread_id()
        assert query(conn, "SELECT @@in_transaction") == ((0,),)  # not lent inside configure's transaction
        # another session sees the row: committed, not left to the return's rollback
        assert query(admin, f"SELECT id FROM `{table}`") == ((session,),)
    assert pool.get_stats()["rollbacks_on_return"] == 0

    failing.set()
    held = pool.get_conn()  # the idle one: configure does not run again
    assert held.thread_id() == session
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout) as info:
            pool.get_conn()  # dials: configure raises, again and again
        took = time.monotonic() - started
    finally:
        pool.release(held)
    cause = info.value.__cause__
    assert isinstance(cause, pymysql.err.OperationalError) and cause.args[0] == 1644, repr(cause)
    assert took < 1 + 3 + SLACK, f"the borrow took {took:.1f} s, beyond timeout + connect_timeout"
    stats = pool.get_stats()
    assert stats["connect_errors"] >= 1 and stats["borrow_timeouts"] == 1 and stats["connections_made"] == 1
    assert stats["open"] == 1 and stats["connecting"] == 0
    assert server_view.settles_at(admin, 1, timeout=10)  # every refused session closed on the server
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((1,),)

    # Before the first successful connect the same error is the borrower's, at once.
    fresh = make_pool(maxsize=2, timeout=10, configure=_configure(shell, lambda: [REFUSE]))
    started = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as first:
        fresh.get_conn()
    took = time.monotonic() - started
    assert first.value.args[0] == 1644 and not isinstance(first.value, PoolTimeout)
    assert took < 10, f"raised after {took:.1f} s: retried until the borrow's timeout"
    assert fresh.get_stats()["connect_errors"] == 1
    assert server_view.settles_at(admin, 1, timeout=10)


# -- docs/failure-handling.md "Retrying a connection" ---------------------------
# "Errors that retrying cannot fix are raised at once: access denied (1044,
# 1045, 1698), unknown database (1049), unknown host ..., and any error
# before the pool's first successful connection."
# tests/faults/test_fault_bad_config.py shows them on first contact, where any
# error is raised at once anyway. The adversary here: a pool that has
# connected before (so that a failure could be an outage), then its database
# dropped, its grant revoked, its password changed, its host name gone.


@pytest.fixture
def own_database(admin: Any, prefix: str) -> Iterator[str]:
    name = f"{prefix}_db"
    query(admin, f"CREATE DATABASE `{name}`")
    yield name
    query(admin, f"DROP DATABASE IF EXISTS `{name}`")


#: what changes on the server (or in the name the pool connects to), and the error code that follows
CHANGES = {
    "database dropped": 1049,
    "grant revoked": 1044,
    "password changed": 1045,
    # PyMySQL (and aiomysql) report a name the resolver does not know as 2003
    # caused by the resolver's error (socket.gaierror).
    "host name gone": 2003,
}


def apply_change(change: str, admin: Any, account: Account, database: str, host: dict[str, str]) -> None:
    if change == "database dropped":
        query(admin, f"DROP DATABASE `{database}`")
    elif change == "grant revoked":
        query(admin, f"REVOKE ALL PRIVILEGES ON `{database}`.* FROM %s@'%%'", (account.user,))
    elif change == "password changed":
        query(admin, "ALTER USER %s@'%%' IDENTIFIED BY 'not-the-old-one'", (account.user,))
    else:
        host["name"] = "no-such-host.invalid"


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_unfixable_connect_error_is_raised_at_once_after_the_pool_connected(
    change: str,
    make_pool: Callable[..., Any],
    make_account: Callable[..., Account],
    own_database: str,
    admin: Any,
) -> None:
    code = CHANGES[change]
    account = make_account()
    query(admin, f"GRANT ALL PRIVILEGES ON `{own_database}`.* TO %s@'%%'", (account.user,))
    host = {"name": mysql_kwargs()["host"]}
    pool = make_pool(
        maxsize=2,
        timeout=10,
        connect_timeout=3,
        user=account.user,
        password=account.password,
        database=own_database,
        host=lambda: host["name"],  # a callable keyword is called at each connect
    )
    held = pool.get_conn()  # the pool has connected: a later failure could be an outage
    try:
        assert pool.ever_connected
        apply_change(change, admin, account, own_database, host)
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as info:
            pool.get_conn()  # the idle slot is taken: this borrow dials
        took = time.monotonic() - started
    finally:
        pool.release(held, failed=True)
    assert info.value.args[0] == code, info.value
    assert not isinstance(info.value, PoolTimeout)
    assert took < 10, f"raised after {took:.1f} s: retried until the borrow's timeout"
    stats = pool.get_stats()
    assert stats["connect_errors"] == 1, stats  # one attempt, no retries
    assert stats["borrow_errors"] == 1 and stats["borrow_timeouts"] == 0
    assert stats["open"] == stats["idle"] + stats["borrowed"]


# -- docs/migration.md row 4, README "Migrating from pymysql-pool 0.5.0" 4 ------
# "`get_connection(retry_num, retry_interval)` waits up to `retry_num x
# retry_interval` seconds (`retry_num` still capped at 10)". The adversary: an
# absurd retry_num (uncapped it would wait 300 s here), and a connection given
# back during the wait (0.5.0's sleep-and-retry would only see it at its next
# retry; a queue hands it over).


def test_get_connection_waits_retry_num_times_retry_interval_capped_at_ten(make_pool: Callable[..., Any]) -> None:
    pool = make_pool(maxsize=1, timeout=60)
    held = pool.get_connection()
    try:
        started = time.monotonic()
        with pytest.raises(GetConnectionFromPoolError) as info:
            pool.get_connection(retry_num=1000, retry_interval=0.3)
        took = time.monotonic() - started
        assert isinstance(info.value, PoolTimeout)
        # Capped: 10 x 0.3 s. The slack stays below one more retry_interval x 10
        # (a cap of 20 would wait 6 s), far below the 300 s of no cap.
        assert 2.95 <= took < 3.0 + 2.5, f"gave up after {took:.2f} s; capped, the wait is 10 x 0.3 s"

        session = held.thread_id()
        timer = threading.Timer(0.3, held.close)  # given back while the next borrower waits
        timer.start()
        try:
            conn = pool.get_connection(retry_num=10, retry_interval=1.0)
        finally:
            timer.join(10)
        try:
            assert conn.thread_id() == session
            assert pool.get_stats()["borrows_waited"] == 2
        finally:
            conn.close()
    finally:
        if not held.returned:
            held.close()


# -- docs/migration.md row 9 --------------------------------------------------
# "`with conn:` after an error other than ProgrammingError/IntegrityError/
# NotSupportedError [0.5.0] closed the connection | The transaction is rolled
# back and a healthy connection is kept; a broken one is dropped". The
# adversary: a real server error (SIGNAL: OperationalError 1644) inside a
# transaction with a write, on a pool lending in autocommit mode.


@pytest.mark.threads_only("`with conn:` on the proxy is the 0.5.0 API, the thread pool's")
def test_with_conn_after_a_server_error_rolls_back_and_keeps_the_session(
    make_pool: Callable[..., Any], make_table: Callable[..., str], admin: Any
) -> None:
    table = make_table("with_conn", "id INT PRIMARY KEY")
    pool = make_pool(maxsize=1, validation_interval=3600)
    with pytest.raises(pymysql.err.OperationalError) as info, pool.get_connection() as conn:
        session = conn.thread_id()
        conn.begin()
        conn.cursor().execute(f"INSERT INTO `{table}` VALUES (1)")
        conn.cursor().execute("SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'borrower failed'")
    assert info.value.args[0] == 1644
    assert conn.returned
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)  # rolled back, not committed
    with pool.get_connection() as again:
        assert again.thread_id() == session  # the healthy session was kept
        assert query(again, "SELECT @@in_transaction, @@autocommit") == ((0, 1),)
    stats = pool.get_stats()
    assert stats["connections_made"] == 1 and stats["rollbacks_on_return"] == 1


# -- docs/parameters.md `pre_create_num`, docs/asyncio.md `async with pool` -----
# "Opened in the constructor, up to 8 at a time; if one cannot be opened, those
# already open are closed and the error is raised from the constructor";
# asyncio: "`async with pool` ... makes `pre_create_num` connections (up to 8
# at a time; the first connect error is raised, as the thread pool's
# constructor raises it)". server/test_warmup.py shows it on the thread pool
# with a patched connect. The adversary here: the real server refusing the
# fourth session of the account (max_user_connections), on both shells.


def test_a_warm_up_the_server_refuses_half_way_raises_and_leaves_no_session(
    make_pool: Callable[..., Any], make_account: Callable[..., Account], admin: Any
) -> None:
    account = make_account()
    query(admin, "ALTER USER %s@'%%' WITH MAX_USER_CONNECTIONS 3", (account.user,))
    with pytest.raises(pymysql.err.OperationalError) as info:
        make_pool(maxsize=6, pre_create_num=6, user=account.user, password=account.password)
    assert info.value.args[0] == 1226, info.value  # the server's own error, from the constructor / `async with`
    assert wait_until(lambda: not sessions_of(admin, account), timeout=10), sorted(sessions_of(admin, account))


# -- docs/parameters.md `reset_session` ------------------------------------------
# "user variables, temporary tables, prepared statements and `SET SESSION`
# changes never reach the next borrower". Every kind but prepared statements
# has its test (server/test_attack_plain.py, test_leakproof.py); the adversary
# here: a borrower's SQL-level PREPARE, executed by the next borrower of the
# same session.


def test_reset_session_drops_a_borrowers_prepared_statement(make_pool: Callable[..., Any]) -> None:
    pool = make_pool(maxsize=1, reset_session=True)
    with pool.connection() as conn:
        session = conn.thread_id()
        query(conn, "PREPARE pt_left_behind FROM 'SELECT 42'")
        assert query(conn, "EXECUTE pt_left_behind") == ((42,),)
    with pool.connection() as conn:
        assert conn.thread_id() == session  # the same server session, reset
        with pytest.raises(pymysql.err.MySQLError) as info:
            query(conn, "EXECUTE pt_left_behind")
    assert info.value.args[0] == 1243  # unknown prepared statement handler
    assert pool.get_stats()["session_resets"] == 2


# -- docs/parameters.md `reset_session`: its cost --------------------------------
# "Costs four round trips per return (three without `database=`), one more
# each for `sql_mode` and `init_command` when given, plus what `configure`
# sends." The server cannot count them (COM_RESET_CONNECTION resets the
# session's status counters), so the commands the driver writes during the
# return are counted at the client, on the class of the pool's connection
# (each is one round trip).


@pytest.mark.parametrize(
    "settings",
    [{}, {"database": None}, {"sql_mode": "ANSI_QUOTES"}],
    ids=["database", "no database", "sql_mode"],
)
def test_reset_session_round_trips_per_return(
    make_pool: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any]
) -> None:
    # The doc's count; the test server's arguments always carry an init_command (its session limits).
    round_trips = (3 if "database" in settings else 4) + ("sql_mode" in settings) + 1
    pool = make_pool(maxsize=1, reset_session=True, validation_interval=3600, keepalive_interval=0, **settings)
    conn = pool.get_conn()
    commands: list[int] = []
    cls = type(conn.raw)
    write = cls._write_bytes

    def counted(raw: Any, data: bytes) -> Any:
        if data[3] == 0:  # a packet with sequence id 0 starts a command; byte 4 names it
            commands.append(data[4])
        return write(raw, data)

    # Counted where every command leaves the client: the driver sends some
    # without going through the class's _execute_command.
    monkeypatch.setattr(cls, "_write_bytes", counted)
    pool.release(conn)
    monkeypatch.undo()
    assert commands[0] == 0x1F  # COM_RESET_CONNECTION
    assert len(commands) == round_trips, commands


# -- docs/parameters.md, "PyMySQL arguments" ------------------------------------
# "... an error your own code raises (`configure`, an `on_connect` hook,
# `connection_factory`, a callable argument): at once before the pool's first
# successful connection, afterwards as the `__cause__` of the `PoolTimeout`
# that ends the borrow's retries. Every other borrow failure is a
# `PoolError`." The adversary: a rotating-password callable that fails (a
# secret store down), before and after the pool connected.


def test_a_failing_password_callable_reaches_the_borrower(
    make_pool: Callable[..., Any], server_view: ServerView
) -> None:
    store = {"down": True}
    secret = server_view.connect_kwargs.get("password") or ""

    def password() -> str:
        if store["down"]:
            raise RuntimeError("secret store down")
        return str(secret)

    pool = make_pool(maxsize=2, timeout=10, password=password)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="secret store down"):
        pool.get_conn()  # never connected: raised as it is, at once
    assert time.monotonic() - started < 10

    store["down"] = False
    held = pool.get_conn()
    try:
        store["down"] = True
        with pytest.raises(PoolTimeout) as info:
            pool.get_conn(timeout=0.5)  # connected before: retried until the timeout
        assert isinstance(info.value.__cause__, RuntimeError), repr(info.value.__cause__)
    finally:
        pool.release(held)
    stats = pool.get_stats()
    assert stats["open"] == 1 and stats["connecting"] == 0 and stats["borrow_errors"] == 1
