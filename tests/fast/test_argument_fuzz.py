"""Every constructor parameter, fed good values and garbage (issue 9, item 4).

The oracle: a constructor that raises raises ``TypeError``/``ValueError``
naming a parameter it was given, and opened no connection; a constructor
that returns made a pool whose borrow succeeds or fails with a documented
pool error only. The fake driver first builds a real PyMySQL ``Connection``
(``defer_connect=True``, so no socket) from the arguments it is given and
sets each socket timeout on a real socket: whatever the pool accepted,
PyMySQL and the socket layer must accept too.
"""

from __future__ import annotations

import math
import socket
from decimal import Decimal
from typing import Any, Dict, List

import pymysql
import pymysql.cursors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql.constants import CLIENT

from pymysqlpool import ConnectionPool, PoolError

from .fakes import FakeConnection, FakeServer

GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**6), max_value=10**6),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
    st.just(dict),
)

SECONDS = st.one_of(st.integers(0, 10**6), st.floats(0, 1e12), st.just(math.inf))
SOCKET_SECONDS = st.one_of(st.integers(1, 10**6), st.floats(1e-3, 31536000.0))
TEXT = st.text(max_size=8)

# Values of the right type and range for each parameter.
VALID: Dict[str, st.SearchStrategy[Any]] = {
    # The pool's own.
    "size": st.integers(0, 4),
    "maxsize": st.integers(1, 4),
    "pre_create_num": st.integers(0, 2),
    "con_lifetime": SECONDS,
    "timeout": st.one_of(st.none(), SECONDS),
    "validation_interval": SECONDS,
    "keepalive_interval": st.one_of(st.none(), SECONDS),
    "max_idle": SECONDS,
    "leak_timeout": st.one_of(st.none(), st.floats(1e-3, 1e9)),
    "autocommit": st.booleans(),
    "reset_session": st.booleans(),
    "name": TEXT,
    "pool_name": TEXT,
    # PyMySQL's.
    "host": st.sampled_from(["localhost", "127.0.0.1", "db.example"]),
    "port": st.integers(1, 65535),
    "user": st.one_of(TEXT, st.binary(max_size=4)),
    "password": st.one_of(TEXT, st.binary(max_size=4)),
    "passwd": TEXT,
    "database": TEXT,
    "db": TEXT,
    "unix_socket": st.sampled_from(["/nonexistent/mysqld.sock"]),
    "charset": st.sampled_from(["", "utf8", "utf8mb4", "latin1", "ascii", "binary"]),
    "collation": st.sampled_from(["utf8mb4_general_ci", "latin1_swedish_ci"]),
    "sql_mode": st.sampled_from(["TRADITIONAL", "ANSI_QUOTES", ""]),
    "init_command": st.sampled_from(["SET @x = 1", "SELECT 1"]),
    "read_default_file": st.sampled_from(["/nonexistent/my.cnf"]),
    "read_default_group": st.sampled_from(["client", "mysql"]),
    "conv": st.just({}),
    "auth_plugin_map": st.just({}),
    "use_unicode": st.booleans(),
    "binary_prefix": st.booleans(),
    "local_infile": st.booleans(),
    "client_flag": st.sampled_from([0, CLIENT.MULTI_STATEMENTS, CLIENT.FOUND_ROWS]),
    "max_allowed_packet": st.integers(1, 2**32 - 1),
    "cursorclass": st.sampled_from(
        [pymysql.cursors.Cursor, pymysql.cursors.DictCursor, pymysql.cursors.SSCursor, pymysql.cursors.SSDictCursor]
    ),
    "connect_timeout": SOCKET_SECONDS,
    "read_timeout": st.one_of(st.none(), SOCKET_SECONDS),
    "write_timeout": st.one_of(st.none(), SOCKET_SECONDS),
    "bind_address": st.sampled_from(["127.0.0.1"]),
    "program_name": TEXT,
    "server_public_key": st.sampled_from([b"-----BEGIN PUBLIC KEY-----\n"]),
    "ssl_disabled": st.sampled_from([True, None]),
    "ssl_verify_identity": st.sampled_from([False, None]),
    "compress": st.sampled_from([False, None]),
    "named_pipe": st.sampled_from([False, None]),
}

POOL_ONLY = {
    "size",
    "maxsize",
    "pre_create_num",
    "con_lifetime",
    "timeout",
    "validation_interval",
    "keepalive_interval",
    "max_idle",
    "leak_timeout",
    "autocommit",
    "reset_session",
    "name",
    "pool_name",
}

SOCKET_TIMEOUTS = ("connect_timeout", "read_timeout", "write_timeout")


def arguments(names: List[str]) -> st.SearchStrategy[Dict[str, Any]]:
    """A few parameters, each a valid value or garbage."""
    return st.dictionaries(
        st.sampled_from(names),
        st.just(None),  # placeholder, replaced below
        min_size=1,
        max_size=3,
    ).flatmap(
        lambda chosen: st.fixed_dictionaries({name: st.one_of(VALID[name], GARBAGE) for name in chosen}),
    )


class DriverOracle:
    """A connection_factory that checks its arguments as PyMySQL and the
    socket layer would, then hands out a fake connection."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.dials = 0
        self.refused: List[str] = []

    def __call__(self, **kwargs: Any) -> FakeConnection:
        self.dials += 1
        try:
            pymysql.connections.Connection(defer_connect=True, **{"ssl_disabled": True, **kwargs})
            with socket.socket() as sock:
                for key in SOCKET_TIMEOUTS:
                    if kwargs.get(key) is not None:
                        sock.settimeout(kwargs[key])
        except Exception as exc:  # the pool let through what the driver refuses
            self.refused.append(f"{kwargs!r}: {exc!r}")
            raise AssertionError(f"PyMySQL refused arguments the pool accepted: {exc!r}") from exc
        return self.server(**kwargs)


def check_arguments(kwargs: Dict[str, Any]) -> None:
    oracle = DriverOracle()
    try:
        pool = ConnectionPool(connection_factory=oracle, **kwargs)
    except (TypeError, ValueError) as exc:
        assert oracle.dials == 0, f"a rejected constructor opened a connection: {kwargs!r}"
        assert any(name in str(exc) for name in kwargs), f"{exc!r} names none of {sorted(kwargs)}"
        return
    try:
        assert not oracle.refused, oracle.refused
        try:
            conn = pool.get_conn(timeout=0)
        except PoolError:
            pass  # documented: e.g. maxsize reached by pre_create_num on a tiny pool
        else:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.close()
        assert not oracle.refused, oracle.refused
        stats = pool.get_stats()
        assert stats["open"] == stats["idle"] + stats["borrowed"] + stats["connecting"]
    finally:
        pool.close()
    assert oracle.server.open_count == 0


FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@FUZZ
@given(arguments(sorted(VALID)))
def test_any_constructor_arguments(kwargs: Dict[str, Any]) -> None:
    check_arguments(kwargs)


@FUZZ
@given(st.sampled_from(sorted(set(VALID) - POOL_ONLY)), GARBAGE)
def test_any_single_pymysql_argument(name: str, value: Any) -> None:
    check_arguments({name: value})


def test_the_reproductions_of_issue_9() -> None:
    for kwargs in (
        {"port": "cz"},
        {"port": -999999999999},
        {"read_timeout": {"": 172}},
        {"write_timeout": Decimal("37276.66")},
        {"write_timeout": 242143543639},
        {"connect_timeout": 0},
        {"read_timeout": -1},
    ):
        check_arguments({**kwargs, "pre_create_num": 1})
