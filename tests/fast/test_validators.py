"""One error policy for every argument check (``_validators``): a wrong type
raises TypeError, a wrong value ValueError, and the message names the
parameter -- and the pool, for a call on a pool -- whatever the entry point."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from typing import Any

import pytest

from pymysqlpool import ClusterPool, ConnectionPool, _validators
from pymysqlpool._urls import parse_host
from pymysqlpool.cli.settings import UsageError, settings_from_env

from .fakes import FakeServer

WRONG_SECONDS = [-1, -0.5, math.nan, -math.inf]


@pytest.mark.parametrize("value", ["1", True, b"1", [1], object()])
def test_seconds_refuse_a_wrong_type_with_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^pool 'p': wait must be a number of seconds, got "):
        _validators.seconds("wait", value, "p")


@pytest.mark.parametrize("value", WRONG_SECONDS)
def test_seconds_refuse_a_wrong_value_with_value_error(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^wait must be >= 0 seconds"):
        _validators.seconds("wait", value)


def test_seconds_take_ints_floats_and_infinity() -> None:
    assert _validators.seconds("wait", 0) == 0.0 and isinstance(_validators.seconds("wait", 0), float)
    assert _validators.seconds("wait", 2.5) == 2.5
    assert _validators.seconds("wait", math.inf) == math.inf
    assert _validators.seconds("wait", 10**400) == math.inf  # an int beyond any float: forever, not OverflowError
    assert _validators.optional_seconds("wait", None) is None


def test_counts_ports_and_hosts_follow_the_policy() -> None:
    for check, wrong_type, wrong_value in (
        (lambda v: _validators.count("retry_num", v, owner="p"), 1.0, -1),
        (lambda v: _validators.port("port", v), "3306", 65536),
        (lambda v: _validators.host("host", v), 3, "db\x00"),
    ):
        with pytest.raises(TypeError):
            check(wrong_type)
        with pytest.raises(ValueError):
            check(wrong_value)
    assert _validators.count("retry_num", 3) == 3 and _validators.port("port", 3306) == 3306
    assert _validators.host("host", "db.example") == "db.example"


@pytest.mark.parametrize(
    "text", ["0", "65536", "+3306", " 3306", "3_306", "\uff13\uff13\uff10\uff16", "", "000080", "1" * 5000]
)
def test_a_written_port_is_ascii_digits_within_range(text: str) -> None:
    with pytest.raises(ValueError, match="port"):
        _validators.port_text("--port", text)
    with pytest.raises(ValueError, match="port"):
        parse_host(f"db:{text}")
    if text:  # an empty variable is ignored
        with pytest.raises(UsageError, match="MYSQL_PORT: port"):
            settings_from_env({"MYSQL_PORT": text})


# -- every entry point that takes seconds ------------------------------------------

CONSTRUCTOR_SECONDS = [
    "con_lifetime",
    "timeout",
    "validation_interval",
    "keepalive_interval",
    "max_idle",
    "leak_timeout",
    "reconnect_timeout",
]


@pytest.mark.parametrize("name", CONSTRUCTOR_SECONDS)
def test_pool_constructor_seconds(name: str, server: FakeServer) -> None:
    for value in ["1", b"1", True]:
        with pytest.raises(TypeError, match=name):
            ConnectionPool(connection_factory=server, **{name: value})
    for value in WRONG_SECONDS:
        with pytest.raises(ValueError, match=name):
            ConnectionPool(connection_factory=server, **{name: value})
    assert server.connect_attempts == 0


METHOD_SECONDS: dict[str, Callable[[ConnectionPool, Any], Any]] = {
    "timeout (get_conn)": lambda pool, v: pool.get_conn(timeout=v),
    "timeout (wait)": lambda pool, v: pool.wait(v),
    "timeout (close)": lambda pool, v: pool.close(timeout=v),
    "retry_interval": lambda pool, v: pool.get_connection(retry_interval=v),
}


@pytest.mark.parametrize("call", list(METHOD_SECONDS))
def test_pool_method_seconds_name_the_parameter_and_the_pool(
    call: str, make_pool: Callable[..., ConnectionPool]
) -> None:
    pool = make_pool(pre_create_num=0, pool_name="orders")
    name = call.split()[0]
    for value in ["1", True]:
        with pytest.raises(TypeError, match=f"^pool 'orders': {name} must be a number of seconds"):
            METHOD_SECONDS[call](pool, value)
    for value in WRONG_SECONDS:
        with pytest.raises(ValueError, match=f"^pool 'orders': {name} must be >= 0 seconds"):
            METHOD_SECONDS[call](pool, value)
    assert not pool.closed and pool.get_stats()["borrows"] == 0


@pytest.mark.parametrize("name", ["max_lag", "probe_interval", "probe_timeout"])
def test_cluster_constructor_seconds(name: str) -> None:
    with pytest.raises(TypeError, match=name):
        ClusterPool(hosts=[("127.0.0.1", 1)], **{name: "1"})
    with pytest.raises(ValueError, match=name):
        ClusterPool(hosts=[("127.0.0.1", 1)], **{name: math.nan})


def test_cluster_borrow_timeout_names_the_parameter_and_the_cluster() -> None:
    cluster = ClusterPool(hosts=[("127.0.0.1", 1)], pool_name="shop", connect_timeout=1)
    try:
        with pytest.raises(TypeError, match=r"^pool 'shop': timeout must be a number of seconds"):
            cluster.get_conn(timeout="1")
        with pytest.raises(ValueError, match=r"^pool 'shop': timeout must be >= 0 seconds"):
            cluster.get_conn(timeout=-1)
    finally:
        cluster.close()


def test_sqlalchemy_helper_checks_client_flag_by_the_policy() -> None:
    pytest.importorskip("sqlalchemy")
    from pymysqlpool.sqlalchemy import pool_from_url

    with pytest.raises(TypeError, match="client_flag"):
        pool_from_url("mysql://root@127.0.0.1:1/db", client_flag="2")
    with pytest.raises(ValueError, match="client_flag"):
        pool_from_url("mysql://root@127.0.0.1:1/db", client_flag=-1)


# -- switches ------------------------------------------------------------------------

NOT_A_SWITCH = ["yes", "no", "false", 1, 0, None, 0.0, b"", [], object()]


def value_id(value: Any) -> str:
    """A test id without the object's address: every xdist worker must
    collect the same ids."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


@pytest.mark.parametrize("value", NOT_A_SWITCH, ids=value_id)
def test_a_switch_is_true_or_false_only(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^pool 'p': failed must be True or False, got "):
        _validators.flag("failed", value, "p")
    assert _validators.flag("failed", True) is True and _validators.flag("failed", False) is False


@pytest.mark.parametrize("value", NOT_A_SWITCH, ids=value_id)
def test_release_refuses_a_failed_that_is_not_a_bool_and_keeps_the_connection_lent(
    value: Any, make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """``release(conn, failed="no")`` would roll back as if it were True, and
    ``failed=0`` leave an open transaction to the next borrower if it meant
    True: neither is guessed. The refusal changes nothing: the borrower still
    holds the connection and gives it back properly."""
    pool = make_pool(maxsize=1, pool_name="orders")
    conn = pool.get_conn()
    conn.begin()
    with pytest.raises(TypeError, match=r"^pool 'orders': failed must be True or False"):
        pool.release(conn, value)
    stats = pool.get_stats()
    assert stats["borrowed"] == 1 and stats["returns"] == 0
    assert conn.raw.in_trans and conn.raw.rollbacks == 0
    pool.release(conn, True)
    assert pool.get_stats()["idle"] == 1 and server.open_count == 1


@pytest.mark.parametrize("value", ["no", 1, None], ids=repr)
def test_asyncio_release_refuses_a_failed_that_is_not_a_bool(value: Any, async_pool_class: Any) -> None:
    async def main() -> None:
        async with async_pool_class(maxsize=1, pool_name="orders", host="127.0.0.1") as pool:
            conn = await pool.get_conn()
            with pytest.raises(TypeError, match=r"^pool 'orders': failed must be True or False"):
                await pool.release(conn, value)
            assert pool.get_stats()["borrowed"] == 1
            await pool.release(conn, False)
            stats = pool.get_stats()
            assert stats["borrowed"] == 0 and stats["returns"] == 1

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_borrow_timeout_beyond_any_float_waits_as_inf_does(
    make_pool: Callable[..., ConnectionPool], async_pool_class: Any
) -> None:
    """10**400 passes the seconds rule (it is forever, as in the constructor);
    the borrow then added it to the clock as it was: OverflowError."""
    pool = make_pool(maxsize=1)
    pool.release(pool.get_conn(timeout=10**400))
    with pool.connection(timeout=10**400):
        pass
    assert pool.get_stats()["borrows"] == 2

    async def main() -> None:
        async with async_pool_class(maxsize=1, host="127.0.0.1") as apool:
            await apool.release(await apool.get_conn(timeout=10**400))
            async with apool.connection(timeout=10**400):
                pass
            assert apool.get_stats()["borrows"] == 2

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("kind", ["ClusterPool", "AsyncClusterPool"])
@pytest.mark.parametrize("key", ["name", "pool_name"])
@pytest.mark.parametrize("value", [5, b"c", ["c"], object(), lambda: "c"], ids=value_id)
def test_a_cluster_name_is_a_str_as_a_pool_name_is(kind: str, key: str, value: Any) -> None:
    """The cluster made str() of anything (a lambda's repr became its name,
    in every node pool's name and in the stats)."""
    if kind == "AsyncClusterPool":
        pytest.importorskip("aiomysql")
    import pymysqlpool

    with pytest.raises(TypeError, match=rf"^{key} must be a str, got "):
        getattr(pymysqlpool, kind)(hosts=[("127.0.0.1", 1)], **{key: value})


@pytest.mark.parametrize(
    ("query", "key", "value"),
    [
        ("pool_name=2024", "pool_name", "2024"),
        ("pool_name=true", "pool_name", "true"),
        ("ssl_key_password=1234", "ssl_key_password", "1234"),
        ("program_name=7", "program_name", "7"),
        ("ssl_verify_cert=1", "ssl_verify_cert", "1"),
    ],
)
def test_url_text_parameters_stay_text(query: str, key: str, value: str) -> None:
    """Digits in a name or a password are text: read as a number, the pool
    refused its own URL (``pool_name must be a str, got int``)."""
    pool = ConnectionPool.from_url(f"mysql://root@127.0.0.1:1/db?{query}", open=False)
    try:
        assert (pool.name if key == "pool_name" else pool._config.connect_kwargs[key]) == value
    finally:
        pool.close()
    cluster = ClusterPool(f"mysql://root@127.0.0.1:1/db?{query}")
    try:
        if key == "pool_name":
            assert cluster.name == value
    finally:
        cluster.close()
