"""One error policy for every argument check (``_validators``): a wrong type
raises TypeError, a wrong value ValueError, and the message names the
parameter -- and the pool, for a call on a pool -- whatever the entry point."""

from __future__ import annotations

import math
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
