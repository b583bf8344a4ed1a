"""The proxies forward the driver's attributes by members of their own class.

``PooledConnection`` and ``AsyncPooledConnection`` define no ``__getattr__``
(on CPython 3.11 its presence leaves every attribute read on the proxy
unspecialized): every attribute of the driver's connection is a method or a
read-only property of the proxy class, made from the driver's class and the
list of what each instance sets (``INSTANCE_ATTRIBUTES``). These tests hold
that list to real, used connections, and check that a connection of another
class (a ``connection_factory``'s) is still forwarded, through the subclass
that keeps ``__getattr__``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from server_helpers import ServerView

from pymysqlpool import AsyncConnectionPool, AsyncPooledConnection, ConnectionPool, PooledConnection, _adriver, _driver
from pymysqlpool.errors import ConnectionReturnedError


def _class_names(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name in vars(klass)}


def _defines_getattr(cls: type) -> bool:
    return any("__getattr__" in vars(klass) for klass in cls.__mro__)


@pytest.mark.threads_only("the thread pool's proxy; the asyncio one is tested below")
def test_thread_proxy_forwards_every_attribute_of_a_used_connection(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    pool = make_pool(maxsize=1, pool_name="members")
    conn = pool.get_conn()
    raw = conn.raw
    try:
        assert type(conn) is PooledConnection and not _defines_getattr(PooledConnection)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        conn.commit()
        conn.ping(reconnect=False)
        unlisted = set(vars(raw)) - set(_driver.INSTANCE_ATTRIBUTES) - _class_names(type(raw))
        assert unlisted == set()  # every name PyMySQL set is in the list the proxy is made from
        for name in vars(raw):
            if name not in ("_pool_tls",):  # the pool's, not the driver's
                assert getattr(conn, name) is getattr(raw, name), name
        assert conn.server_version == raw.server_version != ""
        with pytest.raises(AttributeError):
            conn.server_version = "x"  # read-only, as the slotted proxy always was
    finally:
        pool.release(conn)
    with pytest.raises(ConnectionReturnedError):
        _ = conn.server_version
    with pytest.raises(ConnectionReturnedError):
        conn.character_set_name()


class _Other:
    """A connection of another class than the driver's: a factory's wrapper."""

    def __init__(self, raw: pymysql.connections.Connection) -> None:
        self.inner = raw
        self.label = "from a factory"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.threads_only("connection_factory is the thread pool's")
def test_a_connection_of_another_class_is_forwarded_through_getattr(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    pool = make_pool(maxsize=1, pool_name="other-class", connection_factory=lambda **kw: _Other(pymysql.connect(**kw)))
    conn = pool.get_conn()
    try:
        assert isinstance(conn, PooledConnection) and type(conn) is not PooledConnection
        assert type(conn).__name__ == "PooledConnection" and _defines_getattr(type(conn))
        assert conn.label == "from a factory"  # not an attribute of PyMySQL's: only __getattr__ finds it
        assert conn.thread_id() == conn.raw.thread_id()
    finally:
        pool.release(conn)
    with pytest.raises(ConnectionReturnedError):
        _ = conn.label
    assert pool.get_stats()["returns"] == 1


class _Remembering(pymysql.connections.Connection):  # type: ignore[misc]
    """A factory's connection class whose names are all PyMySQL's when it is
    booked, and whose instances gain one of their own once used (by a call
    the pool never makes on its own)."""

    def select_db(self, db: str) -> None:
        super().select_db(db)
        self.selected = db


@pytest.mark.threads_only("connection_factory is the thread pool's")
def test_a_connection_that_gains_attributes_is_forwarded_them(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    """Judged by the names it had when booked, its proxy would lack the new
    one (AttributeError): a class whose instances have a __dict__ is lent
    through the proxy that forwards what it lacks."""
    pool = make_pool(maxsize=1, pool_name="gains", connection_factory=lambda **kw: _Remembering(**kw))
    conn = pool.get_conn()
    try:
        assert not hasattr(conn.raw, "selected")
        db = conn.raw.db.decode() if isinstance(conn.raw.db, bytes) else conn.raw.db
        conn.select_db(db)
        assert conn.selected == conn.raw.selected == db
        assert conn.thread_id() == conn.raw.thread_id()
    finally:
        pool.release(conn)
    with pytest.raises(ConnectionReturnedError):
        _ = conn.selected
    assert pool.get_stats()["returns"] == 1


def test_asyncio_proxy_forwards_every_attribute_of_a_used_connection(server_view: ServerView) -> None:
    async def main() -> None:
        async with AsyncConnectionPool(maxsize=1, **server_view.connect_kwargs) as pool:
            conn = await pool.get_conn()
            raw = conn.raw
            try:
                assert type(conn) is AsyncPooledConnection and not _defines_getattr(AsyncPooledConnection)
                async with conn.cursor() as cur:
                    await cur.execute("SELECT 1")
                    await cur.fetchall()
                await conn.commit()
                await conn.ping()
                unlisted = set(vars(raw)) - set(_adriver.INSTANCE_ATTRIBUTES) - _class_names(type(raw))
                assert unlisted == set()
                for name in vars(raw):
                    assert getattr(conn, name) is getattr(raw, name), name
                assert conn.server_version == raw.server_version != ""
                assert conn.get_server_info() == raw.get_server_info()  # a method of aiomysql's
            finally:
                await pool.release(conn)
            with pytest.raises(ConnectionReturnedError):
                _ = conn.server_version

    asyncio.run(asyncio.wait_for(main(), 60))
