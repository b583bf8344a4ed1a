"""A sample of constructor arguments against the real server (issue 9, item 4).

The fast tier fuzzes every parameter against PyMySQL's own checks; here a
smaller sample goes all the way to the server. A constructor either refuses
its arguments with ``TypeError``/``ValueError`` before any connection, or
its pool lends a working connection, or the borrow fails with a documented
error: a ``PoolError``, or PyMySQL's ``OperationalError`` for a server that
refuses the login (wrong account, unknown database) or cannot be reached.
"""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any, Dict

import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import mysql_kwargs, query

import pymysqlpool._driver
from pymysqlpool import ConnectionPool, PoolError

pytestmark = pytest.mark.server

DOCUMENTED = (PoolError, pymysql.err.OperationalError)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BASE = mysql_kwargs()
GARBAGE = st.sampled_from([None, True, -1, 0, 2**64, float("nan"), float("inf"), "x", b"x", Decimal("1.5"), {"": 1}])
SAMPLE: Dict[str, st.SearchStrategy[Any]] = {
    "port": st.sampled_from([BASE["port"], _closed_port()]),
    "user": st.sampled_from([BASE["user"], "pt_no_such_user"]),
    "database": st.sampled_from([BASE["database"], "pt_no_such_db"]),
    "charset": st.sampled_from(["utf8mb4", "latin1", "klingon"]),
    "connect_timeout": st.sampled_from([0.5, 2, 10]),
    "read_timeout": st.sampled_from([None, 0.5, 5]),
    "write_timeout": st.sampled_from([None, 5]),
    "init_command": st.sampled_from([None, "SET @pt_x = 1"]),
    "sql_mode": st.sampled_from([None, "TRADITIONAL"]),
    "cursorclass": st.sampled_from([pymysql.cursors.DictCursor, pymysql.cursors.SSCursor]),
    "maxsize": st.integers(1, 3),
    "pre_create_num": st.integers(0, 1),
    "timeout": st.sampled_from([None, 0, 2, float("inf")]),
    "validation_interval": st.sampled_from([0, 0.5]),
    "con_lifetime": st.sampled_from([0, 60, float("inf")]),
}


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(st.sampled_from(sorted(SAMPLE)), st.none(), min_size=1, max_size=4).flatmap(
        lambda chosen: st.fixed_dictionaries({k: st.one_of(SAMPLE[k], GARBAGE) for k in chosen})
    )
)
def test_sampled_arguments_against_the_server(kwargs: Dict[str, Any]) -> None:
    dials = []
    real_connect = pymysqlpool._driver.connect

    def counting_connect(*args: Any, **kw: Any) -> Any:
        dials.append(1)
        return real_connect(*args, **kw)

    pymysqlpool._driver.connect = counting_connect
    try:
        try:
            pool = ConnectionPool(**{**BASE, **kwargs})
        except (TypeError, ValueError) as exc:
            assert not dials, f"a rejected constructor opened a connection: {kwargs!r}"
            assert any(name in str(exc) for name in kwargs), f"{exc!r} names none of {sorted(kwargs)}"
            return
        except DOCUMENTED:
            return  # pre_create_num dialed in the constructor and the server refused
        try:
            with pool.connection(timeout=2) as conn:
                assert query(conn, "SELECT 1") == ((1,),)
        except DOCUMENTED:
            pass
        finally:
            pool.close()
    finally:
        pymysqlpool._driver.connect = real_connect
