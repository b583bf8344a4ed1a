"""The pool classes stay small where CPython is fast: at most 29 instance
attributes. CPython 3.11's shared-key instance dicts hold 30 keys; past
that every attribute read on the hot path costs more (~800 instructions per
borrow+return). State belongs to the object that owns it (config,
lifecycle, stats), not to the pool."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from pymysqlpool import ConnectionPool, _options

from .fakes import FakeServer

MAX_ATTRIBUTES = 29


def test_thread_pool_stays_within_the_attribute_budget(make_pool: Any) -> None:
    pool: ConnectionPool = make_pool(maxsize=2, pre_create_num=1)
    assert len(vars(pool)) <= MAX_ATTRIBUTES, sorted(vars(pool))
    conn = pool.get_conn()
    conn.close()
    with pool.connection() as conn:
        conn.cursor().close()
    assert len(vars(pool)) <= MAX_ATTRIBUTES, sorted(vars(pool))


def test_asyncio_pool_stays_within_the_attribute_budget(async_pool_class: Any, server: FakeServer) -> None:
    AsyncConnectionPool = async_pool_class

    async def main() -> list[int]:
        pool = AsyncConnectionPool(maxsize=2, host="127.0.0.1")
        sizes = [len(vars(pool))]
        try:
            conn = await pool.get_conn()
            sizes.append(len(vars(pool)))
            await pool.release(conn)
            async with pool.connection():
                pass
            sizes.append(len(vars(pool)))
        finally:
            await pool.close()
        assert server.made  # the borrows went through the patched connect
        return sizes

    sizes = asyncio.run(main())
    assert max(sizes) <= MAX_ATTRIBUTES, sizes


def test_both_pools_take_one_signature(async_pool_class: Any) -> None:
    """One definition of the constructor parameters (_options.py): the same
    names, order, kinds and defaults for both pools, seen by inspect (the
    SQLAlchemy dialect and ConnectionPoolSingleton bind through it)."""
    thread = inspect.signature(ConnectionPool)
    assert (
        thread
        == inspect.signature(async_pool_class)
        == inspect.signature(_options.options).replace(return_annotation=None)
    )
    params = list(inspect.signature(ConnectionPool.__init__).parameters)
    assert params[:7] == ["self", "size", "maxsize", "name", "pre_create_num", "con_lifetime", "autocommit"]
    assert params[-1] == "connect_kwargs" and len(params) == 25
    with pytest.raises(TypeError, match="connection_factory"):
        async_pool_class(connection_factory=lambda **kwargs: None)


def test_the_generated_init_is_named_and_documented_as_its_own() -> None:
    """_options.takes gives a pool an ``__init__`` that tracebacks, profilers
    and help() name as the class's own (``ConnectionPool.__init__`` in
    ``pymysqlpool.pool``), with the decorated function's docstring, not as
    a closure inside _options."""
    init = ConnectionPool.__init__
    assert (init.__qualname__, init.__module__) == ("ConnectionPool.__init__", "pymysqlpool.pool")

    class Documented:
        @_options.takes(_options.options)
        def __init__(self, opts: _options.Options) -> None:
            """Documented's own words."""
            self.opts = opts

    assert Documented.__init__.__doc__ == "Documented's own words."
    assert Documented.__init__.__qualname__.endswith("Documented.__init__")
    assert Documented(None, 7, timeout=2.5).opts.build["maxsize"] == 7


def test_a_proxy_class_takes_no_init() -> None:
    """A borrow makes its proxy by calling the class with no argument and
    setting the slots itself (no Python __init__ on the hot path, ~300
    instructions fewer than object.__new__): a proxy class with its own
    __init__ or __new__ would break that, and is refused when defined."""
    from pymysqlpool.connection import PROXY_TYPES, PooledConnection

    before = set(PROXY_TYPES)
    with pytest.raises(TypeError, match="no __init__ or __new__"):

        class WithInit(PooledConnection):
            __slots__ = ()

            def __init__(self, pool: Any) -> None:
                pass

    with pytest.raises(TypeError, match="no __init__ or __new__"):

        class WithNew(PooledConnection):
            __slots__ = ()

            def __new__(cls) -> Any:
                return object.__new__(cls)

    assert set(PROXY_TYPES) == before  # neither became a class the pools take back


def test_the_proxy_class_for_connections_of_other_classes() -> None:
    """The proxy class without __getattr__ lends the driver's connections and
    slotted classes whose every name it forwards; a class whose instances
    have a __dict__ (they may gain names later) or a name of its own gets
    the subclass that forwards the rest through __getattr__."""
    from pymysqlpool import _driver
    from pymysqlpool.connection import PooledConnection

    class Slotted:
        __slots__ = ("host", "server_status")

        def ping(self, reconnect: bool = True) -> None:
            pass

    class WithDict:  # the same names, but its instances may gain more
        def ping(self, reconnect: bool = True) -> None:
            pass

    class OwnName:
        __slots__ = ("mine",)

    fast, forwarding = PooledConnection, PooledConnection._any_class
    assert PooledConnection.proxy_for(_driver.Connection.__new__(_driver.Connection)) is fast
    assert PooledConnection.proxy_for(Slotted()) is fast
    assert PooledConnection.proxy_for(WithDict()) is forwarding
    assert PooledConnection.proxy_for(OwnName()) is forwarding
