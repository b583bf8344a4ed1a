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

import asyncio
import math
import socket
from decimal import Decimal
from typing import Any, Dict, List

import pymysql
import pymysql.cursors
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pymysql.constants import CLIENT

from pymysqlpool import ConnectionPool, ConnectionPoolSingleton, PoolError

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


# -- the pools' own options beyond 0.5.0's, both shells, clusters, methods ---------------


class OnClose:
    def on_close(self, raw: Any, reason: str) -> None:
        pass


def _nothing(raw: Any) -> None:
    return None


# Values of the right type for the core's options (read by PoolCore, not _config).
CORE_VALID: Dict[str, st.SearchStrategy[Any]] = {
    "events": st.sampled_from([None, [], OnClose()]),
    "reset": st.sampled_from([None, _nothing]),
    "configure": st.sampled_from([None, _nothing]),
    "check": st.sampled_from([None, _nothing]),
    "reconnect_failed": st.sampled_from([None, _nothing]),
    "open": st.booleans(),
    "kill_on_abandon": st.booleans(),
    "max_waiting": st.one_of(st.none(), st.integers(0, 10), st.integers(2**63, 2**70)),
    "reconnect_timeout": SECONDS,
}
HOOKS = {"events", "reset", "configure", "check", "reconnect_failed"}
# Garbage with callables (refused where a value is due). A hook is called
# with the connection, so only non-callable garbage is garbage for it.
CALLABLE_GARBAGE = st.one_of(GARBAGE, st.sampled_from([lambda: 1, print, math.isnan]))
NOT_CALLABLE = GARBAGE.filter(lambda value: not callable(value))


def pool_arguments(names: List[str]) -> st.SearchStrategy[Dict[str, Any]]:
    """A few of the pool's own options, each a valid value or garbage."""
    every = {**{name: VALID[name] for name in POOL_ONLY}, **CORE_VALID}

    def garbage(name: str) -> st.SearchStrategy[Any]:
        return NOT_CALLABLE if name in HOOKS else CALLABLE_GARBAGE

    return st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({name: st.one_of(every[name], garbage(name)) for name in chosen})
    )


POOL_OPTIONS = sorted(POOL_ONLY | set(CORE_VALID))


@FUZZ
@given(pool_arguments(POOL_OPTIONS))
def test_any_pool_option(kwargs: Dict[str, Any]) -> None:
    """The core's options too (events, hooks, open, max_waiting, ...), with
    callables among the garbage: refused naming one, or a working pool."""
    check_arguments(kwargs)


def _refusal(make: Any) -> Any:
    try:
        pool = make()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    return pool


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(pool_arguments(POOL_OPTIONS))
def test_both_shells_refuse_and_accept_the_same_options(kwargs: Dict[str, Any]) -> None:
    """One core, one set of rules: AsyncConnectionPool refuses exactly what
    ConnectionPool refuses, with the same error (its class name aside)."""
    pytest.importorskip("aiomysql")  # the fast tier also runs without the asyncio extra (Python 3.9)
    from pymysqlpool.aio import AsyncConnectionPool

    server = FakeServer()
    thread = _refusal(lambda: ConnectionPool(connection_factory=server, **{**kwargs, "pre_create_num": 0}))
    other = _refusal(lambda: AsyncConnectionPool(**{**kwargs, "pre_create_num": 0}))
    if isinstance(thread, tuple):
        assert isinstance(other, tuple), f"asyncio accepted what the thread pool refused: {thread}"
        assert (other[0], other[1].replace("AsyncConnectionPool", "ConnectionPool")) == thread
    else:
        thread.close()
        assert not isinstance(other, tuple), f"asyncio refused what the thread pool accepted: {other}"
        asyncio.run(other.close())
    assert server.connect_attempts == 0


CLUSTER_VALID: Dict[str, st.SearchStrategy[Any]] = {
    "max_lag": SECONDS,
    "causal": st.booleans(),
    "probe_interval": st.floats(1e-3, 1.0),
    "probe_timeout": st.floats(1e-3, 60.0),
    "read_fallback_to_primary": st.booleans(),
    "galera_writer": st.sampled_from(["single", "spread"]),
    "balance": st.sampled_from(["least_borrowed", "round_robin"]),
    "require_all_nodes": st.booleans(),
    "pool_name": TEXT,
    "maxsize": st.integers(1, 4),
    "timeout": st.one_of(st.none(), SECONDS),
    "connect_timeout": SOCKET_SECONDS,
    "init_command": st.sampled_from(["SET @x = 1", "", " "]),
}


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.sampled_from(sorted(CLUSTER_VALID)), min_size=1, max_size=2, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {name: st.one_of(CLUSTER_VALID[name], CALLABLE_GARBAGE) for name in chosen}
        )
    )
)
def test_any_cluster_argument(kwargs: Dict[str, Any]) -> None:
    """Both clusters: refused at once naming an argument given, before any
    node is dialed, and the same by both shells; or accepted. What a node
    pool would refuse, the cluster refuses."""
    pool_kwargs = {key: value for key, value in kwargs.items() if key in _NODE_POOL_KEYS}
    by_pool = _refusal(lambda: ConnectionPool(connection_factory=FakeServer(), open=False, **pool_kwargs))
    if not isinstance(by_pool, tuple):
        by_pool.close()
    dials: List[Any] = []
    real = socket.create_connection

    def count(*args: Any, **kw: Any) -> Any:
        dials.append(args)
        raise OSError("no dialing in the fast tier")

    refused = []
    socket.create_connection = count  # type: ignore[assignment]
    try:
        for kind in ("ClusterPool", "AsyncClusterPool"):
            if kind == "AsyncClusterPool" and not _has_aiomysql():
                continue
            import pymysqlpool

            try:
                cluster = getattr(pymysqlpool, kind)(hosts=[("127.0.0.1", 1)], **kwargs)
            except (TypeError, ValueError) as exc:
                assert any(name in str(exc) for name in kwargs), f"{exc!r} names none of {sorted(kwargs)}"
                assert dials == []
                refused.append((type(exc), str(exc)))
                continue
            refused.append(None)
            if kind == "ClusterPool":
                cluster.close()
            assert not isinstance(by_pool, tuple), f"{kind} accepted what a pool refuses: {by_pool}"
    finally:
        socket.create_connection = real  # type: ignore[assignment]
    assert len(set(map(repr, refused))) == 1, f"the shells disagree: {refused}"


_NODE_POOL_KEYS = {"pool_name", "maxsize", "timeout", "connect_timeout", "init_command"}


def _has_aiomysql() -> bool:
    try:
        import aiomysql  # noqa: F401
    except ImportError:
        return False
    return True


METHOD_VALUES = st.one_of(SECONDS, st.just(None), st.just(10**400), CALLABLE_GARBAGE)
METHODS = {
    "get_conn": lambda pool, v: pool.release(pool.get_conn(timeout=v)),
    "connection": lambda pool, v: pool.connection(timeout=v).close(),
    "wait": lambda pool, v: pool.wait(v),
    "close": lambda pool, v: pool.close(timeout=v),
    "resize maxsize": lambda pool, v: pool.resize(maxsize=v),
    "resize size": lambda pool, v: pool.resize(size=v),
    "get_connection retry_num": lambda pool, v: pool.release(pool.get_connection(retry_num=v)),
    "get_connection retry_interval": lambda pool, v: pool.release(pool.get_connection(retry_interval=v)),
}


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(sorted(METHODS)), METHOD_VALUES)
@example("connection", 10**400)  # forever, as inf: was an OverflowError
def test_any_method_argument(method: str, value: Any) -> None:
    """A method's argument is refused naming it and the pool, changing
    nothing; or the call does what it says. Nothing hangs: every wait here
    has an idle connection or an open pool to end it at once."""
    server = FakeServer()
    with ConnectionPool(connection_factory=server, maxsize=2, pre_create_num=1, pool_name="fz") as pool:
        before = pool.get_stats()
        try:
            METHODS[method](pool, value)
        except (TypeError, ValueError) as exc:
            name = method.split()[-1] if " " in method else "timeout"
            assert str(exc).startswith(f"pool 'fz': {name} "), exc
            after = pool.get_stats()
            assert not pool.closed and (after["borrows"], after["open"], after["pool_max"]) == (
                before["borrows"],
                before["open"],
                before["pool_max"],
            )
        else:
            assert pool.get_stats()["borrowed"] == 0
    assert server.open_count == 0


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(pool_arguments(POOL_OPTIONS))
def test_the_singleton_refuses_what_the_pool_refuses_and_keeps_nothing(kwargs: Dict[str, Any]) -> None:
    """0.5.0's ConnectionPoolSingleton: the pool's rules; a refused call
    leaves no pool registered under the name."""
    server = FakeServer()
    kwargs = {**kwargs, "pre_create_num": 0, "connection_factory": server}
    ConnectionPoolSingleton._instances.clear()
    try:
        plain = _refusal(lambda: ConnectionPool(**kwargs))
        single = _refusal(lambda: ConnectionPoolSingleton(**kwargs))
        if isinstance(plain, tuple):
            # Refused too, naming a parameter (it reads the name first: maybe another one).
            assert isinstance(single, tuple), "the singleton accepted what the pool refused"
            assert any(name in single[1] for name in kwargs), single
            assert ConnectionPoolSingleton._instances == {}
        else:
            plain.close()
            assert not isinstance(single, tuple), single
            assert list(ConnectionPoolSingleton._instances.values()) == [single]
    finally:
        for pool in list(ConnectionPoolSingleton._instances.values()):
            pool.close()
        ConnectionPoolSingleton._instances.clear()
    assert server.open_count == 0


ASYNC_METHODS = {
    "get_conn": lambda pool, v: _borrow_and_return(pool, pool.get_conn(timeout=v)),
    "wait": lambda pool, v: pool.wait(v),
    "close": lambda pool, v: pool.close(timeout=v),
    "resize maxsize": lambda pool, v: pool.resize(maxsize=v),
    "resize size": lambda pool, v: pool.resize(size=v),
    "get_connection retry_num": lambda pool, v: _borrow_and_return(pool, pool.get_connection(retry_num=v)),
    "get_connection retry_interval": lambda pool, v: _borrow_and_return(pool, pool.get_connection(retry_interval=v)),
}


async def _borrow_and_return(pool: Any, borrow: Any) -> None:
    await pool.release(await borrow)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the fixture patches a class, once
)
@given(method=st.sampled_from(sorted(ASYNC_METHODS)), value=METHOD_VALUES)
@example(method="get_conn", value=10**400)  # forever, as inf: was an OverflowError
def test_any_asyncio_method_argument(async_pool_class: Any, method: str, value: Any) -> None:
    """The asyncio pool's methods, as the thread pool's above."""

    async def main() -> None:
        async with async_pool_class(maxsize=2, pre_create_num=1, pool_name="fz", host="127.0.0.1") as pool:
            await pool.wait(10)
            before = pool.get_stats()
            try:
                await ASYNC_METHODS[method](pool, value)
            except (TypeError, ValueError) as exc:
                name = method.split()[-1] if " " in method else "timeout"
                assert str(exc).startswith(f"pool 'fz': {name} "), exc
                after = pool.get_stats()
                assert not pool.closed
                assert (after["borrows"], after["pool_max"]) == (before["borrows"], before["pool_max"])
            else:
                assert pool.get_stats()["borrowed"] == 0

    asyncio.run(asyncio.wait_for(main(), 30))
