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
