"""Fixtures for the server tier: the shared MariaDB/MySQL (127.0.0.1:3306 unless
MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PWD/MYSQL_DATABASE say otherwise).

The server is shared with other work, so a test only touches what it made:
tables named with the test's own random prefix, MariaDB accounts it created,
and connections opened by its own pools. Everything is dropped or closed in
teardown.

The *server's* view of a pool (how many connections it really has open) comes
from the server, never from the pool: if performance_schema is on, each pool
connects with a distinctive ``program_name`` connection attribute and the
attribute table is counted; otherwise the pool logs in as a MariaDB account
created for the test alone and the process list is counted for that account.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any, Optional

import pymysql
import pytest
from server_helpers import Account, ServerView, mysql_kwargs, query, raw_connect, with_limits

from pymysqlpool import ConnectionPool
from support.sessions import kill_sessions
from support.shells import pool_type


@pytest.fixture(scope="session")
def performance_schema_on(server_kwargs: dict[str, Any]) -> bool:
    conn = raw_connect()
    try:
        rows = query(conn, "SHOW VARIABLES LIKE 'performance_schema'")
    finally:
        conn.close()
    return bool(rows) and str(rows[0][1]).upper() == "ON"


@pytest.fixture
def prefix() -> str:
    """A name prefix unique to this test (tables, accounts, pool names)."""
    return f"pt_{secrets.token_hex(5)}"


@pytest.fixture
def make_table(admin: pymysql.connections.Connection, prefix: str) -> Iterator[Callable[..., str]]:
    """``make_table('items', 'id INT PRIMARY KEY, v INT')`` -> a fresh InnoDB table
    named with the test's prefix; dropped after the test."""
    made: list[str] = []

    def make(suffix: str, columns: str = "id INT AUTO_INCREMENT PRIMARY KEY, v INT") -> str:
        name = f"{prefix}_{suffix}"
        query(admin, f"CREATE TABLE `{name}` ({columns}) ENGINE=InnoDB")
        made.append(name)
        return name

    yield make
    for name in made:
        query(admin, f"DROP TABLE IF EXISTS `{name}`")


@pytest.fixture
def make_account(admin: pymysql.connections.Connection, prefix: str) -> Iterator[Callable[..., Account]]:
    """``make_account(password=...)`` -> a MariaDB account made for this test,
    with all rights on the test database. Dropped after the test, once any
    connection still open under it (opened by this test) is closed."""
    made: list[Account] = []
    database = mysql_kwargs()["database"]

    def make(password: Optional[str] = None, suffix: str = "") -> Account:
        account = Account(f"{prefix}{suffix}u{len(made)}", password or f"Pw-{secrets.token_hex(8)}")
        query(admin, "CREATE USER %s@'%%' IDENTIFIED BY %s", (account.user, account.password))
        query(admin, f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@'%%'", (account.user,))
        made.append(account)
        return account

    yield make
    for account in made:
        rows = query(admin, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (account.user,))
        kill_sessions(lambda sql: query(admin, sql), {row[0] for row in rows})
        query(admin, "DROP USER IF EXISTS %s@'%%'", (account.user,))


@pytest.fixture
def server_view(
    admin: pymysql.connections.Connection,
    performance_schema_on: bool,
    make_account: Callable[..., Account],
    prefix: str,
) -> Iterator[ServerView]:
    """How to make a pool the server can count, and the counting itself.

    At teardown (after ``make_pool`` closed its pools) the server must show
    none of the pool's connections: anything left is a leak of the pool."""
    base = mysql_kwargs()
    if performance_schema_on:
        tag = f"{prefix}-pool"
        view = ServerView({**base, "program_name": tag}, tag, by_user=False)
    else:
        account = make_account(suffix="v")
        view = ServerView(
            {**base, "user": account.user, "password": account.password, "program_name": f"{prefix}-pool"},
            account.user,
            by_user=True,
        )
    yield view
    if not view.settles_at(admin, 0, timeout=5.0):
        left = view.thread_ids(admin)
        kill_sessions(lambda sql: query(admin, sql), left)
        pytest.fail(f"connections of this test's pools still open on the server after close(): {sorted(left)}")


@pytest.fixture
def make_pool(
    server_view: ServerView, make_table: Callable[..., str], shell: str
) -> Iterator[Callable[..., ConnectionPool]]:
    """``make_pool(maxsize=4, ...)`` -> a pool of the test's ``shell`` (the
    thread pool, or the asyncio pool behind a blocking facade) that the server
    view counts; every pool made is closed after the test, before
    ``make_table`` drops the tables (a pool holding a transaction would block
    the DROP)."""
    pools: list[ConnectionPool] = []
    kind = pool_type(shell)

    def make(*args: Any, **kwargs: Any) -> ConnectionPool:
        if "init_command" in kwargs:
            kwargs["init_command"] = with_limits(kwargs["init_command"])
        pool = kind(*args, **{**server_view.connect_kwargs, **kwargs})
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()
