"""Constructor fuzz of both pools (an independent tester's findings).

docs/parameters.md: each PyMySQL keyword is checked in the constructor "so
that a value PyMySQL (or the socket under it) would refuse at the first
borrow is refused at once, by name".
"""

from __future__ import annotations

from typing import Any

import pytest

import pymysqlpool


def _pool(kind: str) -> Any:
    if kind == "AsyncConnectionPool":
        pytest.importorskip("aiomysql")  # the fast tier also runs without the asyncio extra (Python 3.9)
    return getattr(pymysqlpool, kind)


POOLS = ("ConnectionPool", "AsyncConnectionPool")


@pytest.mark.parametrize("host", ["\ud800", "127.0.0.1\x00"], ids=["surrogate", "nul"])
@pytest.mark.parametrize("kind", POOLS)
def test_a_host_no_socket_accepts_is_refused_by_the_constructor(kind: str, host: str) -> None:
    with pytest.raises(ValueError, match="host"):
        pool: Any = _pool(kind)(host=host, user="root", open=False)
        if kind == "ConnectionPool":
            pool.close()


@pytest.mark.parametrize("kind", ["ConnectionPool", "AsyncConnectionPool"])
def test_a_refused_argument_names_the_class_it_was_given_to(kind: str) -> None:
    cls: Any = pymysqlpool.ConnectionPool
    if kind == "AsyncConnectionPool":
        pytest.importorskip("aiomysql")
        from pymysqlpool.aio import AsyncConnectionPool

        cls = AsyncConnectionPool
    with pytest.raises(TypeError, match=rf"^{kind}\(\) got unexpected keyword argument\(s\) 'nosuch'"):
        cls(nosuch=1, open=False)
    with pytest.raises(TypeError, match=rf"^{kind}\(\) has no argument 'pool_size'"):
        cls(pool_size=3, open=False)
    with pytest.raises(TypeError, match=rf"^{kind}\(\) takes no URL"):
        cls("mysql://root@127.0.0.1/test", open=False)
    # Python's own binding errors named options(), a private function.
    with pytest.raises(TypeError, match=rf"^{kind}\(\) takes from 0 to 6 positional arguments but 7 were given"):
        cls(1, 2, 3, 4, 5, 6, 7)
    with pytest.raises(TypeError, match=rf"^{kind}\(\) got multiple values for argument 'size'"):
        cls(1, size=2)


def test_the_singleton_names_itself_in_a_binding_error() -> None:
    before = dict(pymysqlpool.ConnectionPoolSingleton._instances)
    with pytest.raises(TypeError, match=r"^ConnectionPoolSingleton\(\): too many positional arguments"):
        pymysqlpool.ConnectionPoolSingleton(1, 2, 3, 4, 5, 6, 7)
    assert pymysqlpool.ConnectionPoolSingleton._instances == before


def _any(kind: str, **kwargs: Any) -> Any:
    """``kind`` built with ``kwargs``: a pool, a cluster, or a pool from a URL."""
    if kind == "from_url":
        query = "&".join(f"{key}={value}" for key, value in kwargs.items())
        return pymysqlpool.ConnectionPool.from_url(f"mysql://root@127.0.0.1:1/db?{query}", open=False)
    if kind in ("ClusterPool", "AsyncClusterPool"):
        if kind == "AsyncClusterPool":
            pytest.importorskip("aiomysql")
        return getattr(pymysqlpool, kind)(hosts=[("127.0.0.1", 1)], **kwargs)
    return _pool(kind)(host="127.0.0.1", port=1, user="root", open=False, **kwargs)


EVERY_KIND = (*POOLS, "ClusterPool", "AsyncClusterPool", "from_url")


@pytest.mark.parametrize("command", ["", "   ", "\n"], ids=repr)
@pytest.mark.parametrize("kind", EVERY_KIND)
def test_an_empty_init_command_is_refused_by_the_constructor(kind: str, command: str) -> None:
    """PyMySQL sends it as it is and the server answers 1065 (empty query):
    every borrow would fail. Refused at once instead of read as "none"."""
    if kind == "from_url" and command.strip() != command:
        command = command.replace(" ", "+").replace("\n", "%0A")
    with pytest.raises(ValueError, match="init_command must be an SQL statement or None"):
        _any(kind, init_command=command)


@pytest.mark.parametrize("kind", [*POOLS, "ClusterPool", "AsyncClusterPool"])
def test_a_callable_connect_timeout_is_refused_by_the_constructor(kind: str) -> None:
    """The pool bounds its own waits by connect_timeout; a callable would
    have left that bound a flat 10 s whatever it returned."""
    with pytest.raises(TypeError, match="connect_timeout must be a number of seconds, not a callable"):
        _any(kind, connect_timeout=lambda: 0.5)
