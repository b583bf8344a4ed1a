"""URL fuzz of the three URL entry points (an independent tester's checks).

``ConnectionPool.from_url``, ``ClusterPool(url)`` and
``pymysqlpool.sqlalchemy.pool_from_url`` share one parser. A bad URL must
fail at once with an error naming what is wrong, before any connection is
attempted: here any attempt raises from ``socket.create_connection``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymysqlpool import ClusterPool, ConnectionPool
from pymysqlpool._urls import CONNECT_QUERY_KEYS, POOL_QUERY_KEYS, TEXT_QUERY_KEYS


def _from_url(url: str) -> Any:
    return ConnectionPool.from_url(url, open=False)


def _cluster(url: str) -> Any:
    return ClusterPool(url)


def _sqlalchemy(url: str) -> Any:
    pytest.importorskip("sqlalchemy")
    from pymysqlpool.sqlalchemy import pool_from_url

    return pool_from_url(url.replace("mysql://", "mysql+pymysqlpool://", 1))


ENTRY_POINTS: dict[str, Callable[[str], Any]] = {
    "from_url": _from_url,
    "ClusterPool": _cluster,
    "pool_from_url": _sqlalchemy,
}


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a connection was attempted to {args[0] if args else kwargs}")

    monkeypatch.setattr(socket, "create_connection", refuse)


BAD_URLS = [
    ("mysql://root@127.0.0.1:0/db", "port"),
    ("mysql://root@127.0.0.1:65536/db", "port"),
    ("mysql://root@127.0.0.1:\uff13\uff13\uff10\uff16/db", "port"),  # fullwidth digits
    ("mysql://root@127.0.0.1/db?maxsize=0", "maxsize"),
    ("mysql://root@127.0.0.1/db?maxsize=nan", "maxsize"),
    ("mysql://root@127.0.0.1/db?maxsize=1e3", "maxsize"),
    ("mysql://root@127.0.0.1/db?timeout=-1", "timeout"),
    ("mysql://root@127.0.0.1/db?connect_timeout=0", "connect_timeout"),
    ("mysql://root@127.0.0.1/db?connect_timeout=nan", "connect_timeout"),
    ("mysql://root@127.0.0.1/db?connect_timeout=inf", "connect_timeout"),
    ("mysql://root@127.0.0.1/db?read_timeout=nan", "read_timeout"),
    ("mysql://root@127.0.0.1/db?read_timeout=1e400", "read_timeout"),
    ("mysql://root@127.0.0.1/db?kill_on_abandon=maybe", "kill_on_abandon"),
    ("mysql://root@127.0.0.1/db?charset=nope", "charset"),
    ("mysql://root@127.0.0.1/db?pre_create_num=5&maxsize=2", "pre_create_num"),
    ("mysql://root@127.0.0.1/db?max_waiting=-1", "max_waiting"),
    ("mysql://root@127.0.0.1/db?con_lifetime=-5", "con_lifetime"),
    ("mysql://root@127.0.0.1/db?hots=x", "hots"),
]


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize(("url", "named"), BAD_URLS)
def test_a_bad_url_fails_at_once_naming_what_is_wrong(no_connect: None, entry: str, url: str, named: str) -> None:
    if entry == "pool_from_url":
        # SQLAlchemy's first import (about 1 s on a loaded machine) is not what "at once" bounds.
        pytest.importorskip("pymysqlpool.sqlalchemy")
    started = time.monotonic()
    with pytest.raises((TypeError, ValueError)) as raised:
        pool = ENTRY_POINTS[entry](url)
        pool.close()
    assert named in str(raised.value), raised.value
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_query_parameter_given_twice_is_refused_by_name(no_connect: None, entry: str) -> None:
    """The CHANGELOG: unknown query parameters are refused by name, one
    strict parser for every URL. A parameter given twice is as ambiguous as
    an unknown one: which maxsize did the operator mean?"""
    with pytest.raises(ValueError, match="maxsize"):
        pool = ENTRY_POINTS[entry]("mysql://root@127.0.0.1:1/db?maxsize=4&maxsize=5")
        pool.close()


def test_a_socket_given_under_both_of_its_names_is_refused(no_connect: None) -> None:
    """?socket= and ?unix_socket= are one parameter: both at once is a repeat."""
    with pytest.raises(ValueError, match="given twice"):
        ConnectionPool.from_url("mysql://root@/db?unix_socket=/b.sock&socket=/a.sock").close()


SQLALCHEMY_BAD = [
    ("mysql+pymysqlpool://root@127.0.0.1:1/db?maxsize=0", "maxsize"),
    ("mysql+pymysqlpool://root@127.0.0.1:1/db?hots=1", "hots"),
    ("mysql+pymysqlpool://root@127.0.0.1:1/db?kill_on_abandon=maybe", "kill_on_abandon"),
    ("mysql+pymysqlpool://root@127.0.0.1:0/db", "port"),
    ("mysql+pymysqlpool://root@127.0.0.1:1/db?connect_timeout=nan", "connect_timeout"),
]


@pytest.mark.parametrize(("url", "named"), SQLALCHEMY_BAD)
def test_create_engine_refuses_a_bad_pymysqlpool_url_at_once(no_connect: None, url: str, named: str) -> None:
    """The CHANGELOG: mysql+pymysqlpool:// URLs for plain create_engine(),
    parsed by the one strict URL parser. pool_from_url() refuses each of
    these at once (test above); create_engine() must too, not at the first
    checkout, minutes later, in production."""
    sa = pytest.importorskip("sqlalchemy")
    with pytest.raises((TypeError, ValueError), match=named):
        sa.create_engine(url).dispose()


QUERY_VALUES = st.one_of(
    st.sampled_from(["", "0", "-1", "1", "2024", "1e3", "1.5", "nan", "inf", "true", "False", "9" * 30, "utf8mb4"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.dictionaries(st.sampled_from(sorted(POOL_QUERY_KEYS | CONNECT_QUERY_KEYS)), QUERY_VALUES, min_size=1, max_size=3)
)
def test_any_query_value_is_refused_by_name_or_makes_a_pool(query: dict[str, str]) -> None:
    """Whatever a query says, ``from_url`` refuses it at once naming a
    parameter it holds (TypeError/ValueError), or makes a pool; never any
    other error, never a connect. A text parameter keeps its text."""
    url = "mysql://root@127.0.0.1:1/db?" + urlencode(query)
    real = socket.create_connection
    socket.create_connection = _refuse_connect  # type: ignore[assignment]
    try:
        try:
            pool = ConnectionPool.from_url(url, open=False)
        except (TypeError, ValueError) as exc:
            assert any(key in str(exc) for key in query), f"{exc!r} names none of {sorted(query)}"
            return
        try:
            kwargs = pool._config.connect_kwargs
            for key in set(query) & TEXT_QUERY_KEYS - {"pool_name"}:
                assert kwargs[key] == query[key]
            if "pool_name" in query:
                assert pool.name == query["pool_name"]
        finally:
            pool.close()
    finally:
        socket.create_connection = real  # type: ignore[assignment]


def _refuse_connect(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"a connection was attempted to {args[0] if args else kwargs}")
