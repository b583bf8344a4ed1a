"""The password never shows up in repr(pool), error messages or log records."""

from __future__ import annotations

import logging
import secrets
import threading
import traceback
from collections.abc import Callable, Iterator

import pymysql
import pytest
from server_helpers import Account, mysql_kwargs, query

import pymysqlpool
from pymysqlpool import ConnectionPool

pytestmark = pytest.mark.server


@pytest.fixture
def log_text() -> Iterator[Callable[[], str]]:
    """Everything the pymysqlpool logger emits at DEBUG and above, formatted
    with exception tracebacks, as one string."""
    lines: list[str] = []
    formatter = logging.Formatter("%(levelname)s %(name)s %(threadName)s %(message)s")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler = Keep(level=logging.DEBUG)
    log = logging.getLogger("pymysqlpool")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield lambda: "\n".join(lines)
    log.removeHandler(handler)
    log.setLevel(old_level)


@pytest.fixture
def account(make_account: Callable[..., Account]) -> Account:
    return make_account(password=f"Zq9-{secrets.token_hex(12)}-pw")


def everything_said(exc: BaseException) -> str:
    """str, repr and the formatted traceback of an error and its causes."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("given_as", ["value", "callable"])
def test_password_not_in_repr_errors_or_logs(account: Account, log_text: Callable[[], str], given_as: str) -> None:
    password: object = account.password if given_as == "value" else (lambda: account.password)
    kwargs = {**mysql_kwargs(), "user": account.user, "password": password}
    said: list[str] = []
    pool = ConnectionPool(maxsize=1, pre_create_num=1, **kwargs)  # default name: host-port-user-database
    try:
        conn = pool.get_conn()
        assert query(conn, "SELECT CURRENT_USER()")[0][0].startswith(account.user + "@")
        said += [repr(pool), str(pool), pool.name, repr(conn), str(pool.get_stats()), repr(pool._config)]
        with pytest.raises(pymysqlpool.PoolTimeout) as timed_out:
            pool.get_conn(timeout=0.05)
        said.append(everything_said(timed_out.value))
        pool.release(conn)
        with pytest.raises(pymysqlpool.ReturnConnectionToPoolError) as twice:
            pool.release(conn)
        said.append(everything_said(twice.value))
        with pytest.raises(pymysqlpool.ConnectionReturnedError) as after:
            conn.cursor()
        said.append(everything_said(after.value))
        said += [t.name for t in threading.enumerate()]
        pool.drain()  # reconnects with the (possibly rotated) password
        with pool.connection() as again:
            said.append(repr(again))
    finally:
        pool.close()
    with pytest.raises(pymysqlpool.PoolClosed) as closed:
        pool.get_conn()
    said += [everything_said(closed.value), repr(pool), log_text()]
    assert account.user in "\n".join(said)  # we did look at the right things
    for text in said:
        assert account.password not in text


@pytest.mark.parametrize("pre_create_num", [0, 1])
def test_wrong_password_error_does_not_contain_it(
    account: Account, log_text: Callable[[], str], pre_create_num: int
) -> None:
    wrong = f"Wx7-{secrets.token_hex(12)}-bad"
    kwargs = {**mysql_kwargs(), "user": account.user, "password": wrong}
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pool = ConnectionPool(maxsize=2, pre_create_num=pre_create_num, pool_name="wrong-password", **kwargs)
        try:
            pool.get_conn(timeout=5)
        finally:
            pool.close()
    assert caught.value.args[0] == 1045  # access denied, passed through unchanged
    said = everything_said(caught.value) + log_text()
    assert account.user in said
    assert wrong not in said
    assert account.password not in said


def test_unreachable_server_error_does_not_contain_it(account: Account, log_text: Callable[[], str]) -> None:
    kwargs = {**mysql_kwargs(), "user": account.user, "password": account.password}
    # This machine's port 1, not the test server's host: nothing listens
    # there, so the connect is refused at once wherever MYSQL_HOST points.
    kwargs.update(host="127.0.0.1", port=1, connect_timeout=2)
    pool = ConnectionPool(maxsize=1, pool_name="unreachable", **kwargs)
    try:
        with pytest.raises((pymysql.err.OperationalError, pymysqlpool.PoolTimeout)) as caught:
            pool.get_conn(timeout=1)
    finally:
        pool.close()
    said = everything_said(caught.value) + log_text() + repr(pool)
    assert account.password not in said


def test_singleton_conflict_does_not_show_passwords(account: Account, prefix: str) -> None:
    kwargs = {**mysql_kwargs(), "user": account.user, "password": account.password}
    shared = pymysqlpool.ConnectionPoolSingleton(name=f"{prefix}-secret", maxsize=1, **kwargs)
    try:
        other = f"Qv3-{secrets.token_hex(12)}-other"
        with pytest.raises(ValueError) as caught:
            pymysqlpool.ConnectionPoolSingleton(name=f"{prefix}-secret", maxsize=1, **{**kwargs, "password": other})
        said = everything_said(caught.value)
        assert "password" in said  # it names the setting...
        assert account.password not in said and other not in said  # ...never its values
    finally:
        shared.close()
