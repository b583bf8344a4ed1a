"""Argument checking, pool names and ConnectionPoolSingleton."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Dict, List

import pymysql.cursors
import pytest

import pymysqlpool._driver
from pymysqlpool import ConnectionPool, ConnectionPoolSingleton, _config, _driver

from .fakes import FakeServer
from .test_threads import join_all


class RecordingFactory:
    """A connection_factory that must never be called."""

    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        raise AssertionError("a connection was attempted")


# (keyword arguments, exception type, words the message must contain)
BAD_ARGUMENTS = [
    ({"maxsize": 0}, ValueError, ["maxsize"]),
    ({"maxsize": -3}, ValueError, ["maxsize"]),
    ({"maxsize": True}, TypeError, ["maxsize"]),
    ({"maxsize": "5"}, TypeError, ["maxsize"]),
    ({"maxsize": 2, "pre_create_num": 3}, ValueError, ["pre_create_num", "maxsize"]),
    ({"pre_create_num": -1}, ValueError, ["pre_create_num"]),
    ({"maxsize": 2, "size": 3}, ValueError, ["size", "maxsize"]),
    ({"size": -1}, ValueError, ["size"]),
    ({"con_lifetime": -1}, ValueError, ["con_lifetime"]),
    ({"con_lifetime": float("nan")}, ValueError, ["con_lifetime"]),
    ({"timeout": -0.5}, ValueError, ["timeout"]),
    ({"timeout": "30"}, TypeError, ["timeout"]),
    ({"validation_interval": -1}, ValueError, ["validation_interval"]),
    ({"keepalive_interval": -1}, ValueError, ["keepalive_interval"]),
    ({"max_idle": -1}, ValueError, ["max_idle"]),
    ({"leak_timeout": 0}, ValueError, ["leak_timeout"]),
    ({"leak_timeout": -1}, ValueError, ["leak_timeout"]),
    ({"autocommit": 1}, TypeError, ["autocommit"]),
    ({"autocommit": "yes"}, TypeError, ["autocommit"]),
    ({"autocommit": None}, TypeError, ["autocommit"]),
    ({"reset_session": "yes"}, TypeError, ["reset_session"]),
    ({"check": 5}, TypeError, ["check"]),
    ({"configure": "SET x=1"}, TypeError, ["configure"]),
    ({"name": 5}, TypeError, ["str"]),
    ({"name": "a", "pool_name": "b"}, TypeError, ["name", "pool_name"]),
    ({"connect_timeout": -1}, ValueError, ["connect_timeout"]),
    ({"connect_timeout": 0}, ValueError, ["connect_timeout"]),
    ({"connect_timeout": 31536001}, ValueError, ["connect_timeout"]),
    ({"connect_timeout": None}, TypeError, ["connect_timeout"]),
    ({"connect_timeout": float("nan")}, ValueError, ["connect_timeout"]),
    # The pool bounds its own waits by connect_timeout: a callable would leave it a flat 10 s.
    ({"connect_timeout": lambda: 2}, TypeError, ["connect_timeout", "callable"]),
    # The server answers an empty statement with 1065 at every connect.
    ({"init_command": ""}, ValueError, ["init_command"]),
    ({"init_command": " \n\t"}, ValueError, ["init_command"]),
    ({"init_command": b"SET @a = 1"}, TypeError, ["init_command"]),
    # The reproductions of issue 9 item 4: each reached PyMySQL and failed at the first borrow.
    ({"port": "cz"}, TypeError, ["port"]),
    ({"port": -999999999999}, ValueError, ["port"]),
    ({"port": 65536}, ValueError, ["port"]),
    ({"port": 0}, ValueError, ["port"]),
    ({"port": 3306.0}, TypeError, ["port"]),
    ({"read_timeout": {"": 172}}, TypeError, ["read_timeout"]),
    ({"write_timeout": Decimal("37276.66")}, TypeError, ["write_timeout"]),
    ({"write_timeout": 242143543639}, ValueError, ["write_timeout"]),
    ({"read_timeout": -1}, ValueError, ["read_timeout"]),
    ({"read_timeout": 0}, ValueError, ["read_timeout"]),
    ({"read_timeout": float("inf")}, ValueError, ["read_timeout"]),
    ({"write_timeout": True}, TypeError, ["write_timeout"]),
    ({"host": 5}, TypeError, ["host"]),
    ({"user": ["root"]}, TypeError, ["user"]),
    ({"password": 1234}, TypeError, ["password"]),
    ({"password": "Ā"}, ValueError, ["password"]),  # PyMySQL encodes a str password as latin-1
    ({"passwd": "\u20ac"}, ValueError, ["passwd"]),
    ({"database": 0}, TypeError, ["database"]),
    ({"database": "a", "db": "b"}, TypeError, ["database", "db"]),
    ({"password": "a", "passwd": "b"}, TypeError, ["password", "passwd"]),
    ({"charset": "klingon"}, ValueError, ["charset"]),
    ({"charset": 8}, TypeError, ["charset"]),
    ({"collation": "utf8mb4_bin; DROP TABLE t"}, ValueError, ["collation"]),
    ({"unix_socket": 3}, TypeError, ["unix_socket"]),
    ({"client_flag": -1}, ValueError, ["client_flag"]),
    ({"client_flag": 2**40}, ValueError, ["client_flag"]),
    ({"max_allowed_packet": 0}, ValueError, ["max_allowed_packet"]),
    ({"use_unicode": "no"}, TypeError, ["use_unicode"]),
    ({"local_infile": 1}, TypeError, ["local_infile"]),
    ({"cursorclass": dict}, TypeError, ["cursorclass"]),
    ({"cursorclass": "DictCursor"}, TypeError, ["cursorclass"]),
    ({"conv": [1]}, TypeError, ["conv"]),
    ({"ssl": True}, TypeError, ["ssl"]),
    ({"ssl_verify_cert": "maybe"}, ValueError, ["ssl_verify_cert"]),
    ({"ssl_disabled": "yes"}, TypeError, ["ssl_disabled"]),
    ({"compress": True}, ValueError, ["compress"]),
    ({"named_pipe": True}, ValueError, ["named_pipe"]),
    ({"program_name": 7}, TypeError, ["program_name"]),
    ({"timeout": float("nan")}, ValueError, ["timeout"]),
    ({"timeout": Decimal("1")}, TypeError, ["timeout"]),
    ({"validation_interval": float("nan")}, ValueError, ["validation_interval"]),
    ({"max_idle": float("nan")}, ValueError, ["max_idle"]),
    ({"max_size": 5}, TypeError, ["maxsize"]),
    ({"min_size": 1}, TypeError, ["pre_create_num"]),
    # other pools' names: which parameter means that here
    ({"pool_size": 5}, TypeError, ["'pool_size'", "size=", "maxsize="]),
    ({"max_overflow": 5}, TypeError, ["'max_overflow'", "maxsize="]),
    ({"pool_recycle": 5}, TypeError, ["'pool_recycle'", "con_lifetime="]),
    ({"pool_timeout": 5}, TypeError, ["'pool_timeout'", "timeout="]),
    ({"pool_pre_ping": True}, TypeError, ["'pool_pre_ping'", "validation_interval="]),
    ({"max_lifetime": 5}, TypeError, ["'max_lifetime'", "con_lifetime="]),
    ({"minsize": 1}, TypeError, ["'minsize'", "pre_create_num="]),
    ({"size": "mysql://root@127.0.0.1/test"}, TypeError, ["URL", "ConnectionPool.from_url("]),
    ({"defer_connect": True}, TypeError, ["defer_connect"]),
]


@pytest.mark.parametrize(("kwargs", "error", "words"), BAD_ARGUMENTS, ids=lambda v: repr(v)[:40])
def test_bad_argument_is_named_and_nothing_connects(kwargs: Dict[str, Any], error: type, words: List[str]) -> None:
    factory = RecordingFactory()
    with pytest.raises(error) as info:
        # pre_create_num=1: a pool that got past validation would dial at once.
        ConnectionPool(connection_factory=factory, **{"pre_create_num": 1, **kwargs})
    message = str(info.value)
    for word in words:
        assert word in message, f"{message!r} does not name {word!r}"
    assert factory.calls == []


def test_every_pymysql_keyword_has_a_rule() -> None:
    """A PyMySQL upgrade that adds a keyword fails here until it gets a rule."""
    managed = {"autocommit", "defer_connect"}  # the pool's own argument, and refused
    missing = sorted(_driver.CONNECT_PARAMETERS - managed - set(_config._CONNECT_RULES))
    assert not missing, f"no validation rule for PyMySQL keyword(s) {missing}"


def test_callables_stand_for_values_computed_at_connect() -> None:
    """Credential rotation: a zero-argument callable is checked when called, not here."""
    for key in set(_config._CONNECT_RULES) - {"connect_timeout"}:
        _config.check_connect_kwargs({key: lambda: "computed later"})


@pytest.mark.parametrize("forever", [None, float("inf"), 1e300, threading.TIMEOUT_MAX])
def test_timeout_none_or_infinite_waits_forever(server: FakeServer, forever: Any) -> None:
    with ConnectionPool(connection_factory=server, timeout=forever) as pool:
        assert pool.timeout == float("inf")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 1},
        {"port": 65535},
        {"connect_timeout": 31536000},
        {"connect_timeout": 0.001, "read_timeout": 2.5, "write_timeout": 1},
        {"read_timeout": None, "write_timeout": None},
        {"charset": "utf8", "collation": "utf8mb4_general_ci"},
        {"password": b"bytes", "user": b"root", "database": "test"},
        {"db": "test", "passwd": "x"},
        {"cursorclass": pymysql.cursors.SSDictCursor, "client_flag": 0, "max_allowed_packet": 1024},
        {"ssl": {}, "ssl_verify_cert": "required", "ssl_disabled": None, "compress": False},
        {"conv": {}, "auth_plugin_map": {}, "use_unicode": False, "binary_prefix": True},
    ],
    ids=repr,
)
def test_good_pymysql_arguments_pass_and_reach_the_driver(server: FakeServer, kwargs: Dict[str, Any]) -> None:
    with ConnectionPool(connection_factory=server, **kwargs) as pool, pool.get_conn():
        assert server.kwargs_seen[-1] == {**kwargs, "autocommit": True}


def test_connection_factory_must_be_callable() -> None:
    with pytest.raises(TypeError, match="connection_factory"):
        ConnectionPool(connection_factory=42)


def test_unknown_pymysql_keyword_is_refused_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    dials: List[Any] = []
    monkeypatch.setattr(pymysqlpool._driver, "connect", lambda *a, **k: dials.append(a) or pytest.fail("dialed"))
    with pytest.raises(TypeError) as info:
        ConnectionPool(hots="x", pre_create_num=1, user="root")
    assert "'hots'" in str(info.value)
    assert dials == []


def test_pymysql_keywords_reach_the_driver(server: FakeServer) -> None:
    pool = ConnectionPool(
        connection_factory=server,
        host="h",
        port=3307,
        user="u",
        database="d",
        autocommit=False,
        charset="utf8mb4",
        pre_create_num=1,
    )
    try:
        (kwargs,) = server.kwargs_seen
        assert kwargs == {
            "host": "h",
            "port": 3307,
            "user": "u",
            "database": "d",
            "charset": "utf8mb4",
            "autocommit": False,
        }
    finally:
        pool.close()


def test_bad_borrow_arguments(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool()
    with pytest.raises(ValueError, match="timeout"):
        pool.get_conn(timeout=-1)
    with pytest.raises(ValueError, match="retry_num"):
        pool.get_connection(retry_num=-1)
    with pytest.raises(ValueError, match="retry_interval"):
        pool.get_connection(retry_interval=-1)
    assert pool.total_num == 0
    assert pool.get_stats()["borrows"] == 0


# -- names -------------------------------------------------------------------------


def test_name_and_pool_name_are_aliases(server: FakeServer) -> None:
    for kwargs in ({"name": "a"}, {"pool_name": "a"}, {"name": "a", "pool_name": "a"}):
        with ConnectionPool(connection_factory=server, **kwargs) as pool:
            assert pool.name == "a"
    with ConnectionPool(5, 10, "positional", connection_factory=server) as pool:
        assert (pool.name, pool.size, pool.maxsize) == ("positional", 5, 10)


def test_default_name_is_0_5_0_style(server: FakeServer) -> None:
    with ConnectionPool(connection_factory=server, host="db1", port=3307, user="app", database="shop") as pool:
        assert pool.name == "db1-3307-app-shop"
    with ConnectionPool(connection_factory=server) as pool:
        assert pool.name == "localhost-3306--"


def test_size_defaults(server: FakeServer) -> None:
    with ConnectionPool(connection_factory=server, maxsize=4) as pool:
        assert pool.size == 4
    with ConnectionPool(connection_factory=server) as pool:
        assert (pool.size, pool.maxsize) == (10, 100)


# -- singleton -----------------------------------------------------------------------


@pytest.mark.usefixtures("clean_singletons")
def test_singleton_one_pool_per_name(server: FakeServer) -> None:
    a = ConnectionPoolSingleton(name="s1", maxsize=2, connection_factory=server)
    with a.connection():
        pass
    again = ConnectionPoolSingleton(name="s1", maxsize=2, connection_factory=server)
    assert again is a
    assert a.get_stats()["borrows"] == 1, "asking again must not re-initialise the pool"
    assert ConnectionPoolSingleton(None, 2, "s1", connection_factory=server) is a  # positional spelling
    b = ConnectionPoolSingleton(name="s2", maxsize=2, connection_factory=server)
    assert b is not a and isinstance(b, ConnectionPool)
    assert b.name == "s2"


@pytest.mark.usefixtures("clean_singletons")
def test_singleton_name_and_pool_name_are_the_same_setting(server: FakeServer) -> None:
    a = ConnectionPoolSingleton(name="s1", maxsize=2, connection_factory=server)
    assert ConnectionPoolSingleton(pool_name="s1", maxsize=2, connection_factory=server) is a


@pytest.mark.usefixtures("clean_singletons")
def test_singleton_same_name_other_settings_is_an_error(server: FakeServer) -> None:
    a = ConnectionPoolSingleton(name="s1", maxsize=2, connection_factory=server)
    with pytest.raises(ValueError, match="maxsize"):
        ConnectionPoolSingleton(name="s1", maxsize=3, connection_factory=server)
    with pytest.raises(ValueError, match="user"):
        ConnectionPoolSingleton(name="s1", maxsize=2, connection_factory=server, user="other")
    assert a.maxsize == 2 and not a.closed


@pytest.mark.usefixtures("clean_singletons")
def test_singleton_default_name_from_connect_arguments(server: FakeServer) -> None:
    a = ConnectionPoolSingleton(host="h", user="u", database="d", connection_factory=server)
    assert a.name == "h-3306-u-d"
    assert ConnectionPoolSingleton(host="h", user="u", database="d", connection_factory=server) is a
    b = ConnectionPoolSingleton(host="h", user="v", database="d", connection_factory=server)
    assert b is not a


@pytest.mark.usefixtures("clean_singletons")
def test_singleton_closed_pool_is_replaced(server: FakeServer) -> None:
    a = ConnectionPoolSingleton(name="s1", connection_factory=server)
    a.close()
    b = ConnectionPoolSingleton(name="s1", connection_factory=server)
    assert b is not a and not b.closed


@pytest.mark.usefixtures("clean_singletons")
def test_singleton_concurrent_first_use_makes_one_pool(server: FakeServer) -> None:
    got: List[Any] = []
    barrier = threading.Barrier(16, timeout=10)

    def make() -> None:
        barrier.wait()
        got.append(ConnectionPoolSingleton(name="race", pre_create_num=1, connection_factory=server))

    threads = [threading.Thread(target=make) for _ in range(16)]
    for t in threads:
        t.start()
    join_all(threads)
    assert len(got) == 16 and all(p is got[0] for p in got)
    assert len(server.made) == 1
