"""Pure helpers: the check's warnings and the output formatting."""

from __future__ import annotations

import io

import pymysql
import pytest

from pymysqlpool import PoolTimeout
from pymysqlpool.cli.check import ServerFacts, assess
from pymysqlpool.cli.output import Progress, describe_error, format_table
from pymysqlpool.cli.settings import PoolSettings

FACTS = ServerFacts(
    version="10.11",
    wait_timeout=28800,
    max_connections=151,
    max_user_connections=0,
    threads_connected=11,
    pool_open=1,
)


def _pool(maxsize: int = 100, lifetime: float = 3600) -> PoolSettings:
    return PoolSettings(maxsize=maxsize, pre_create=0, lifetime=lifetime, timeout=30)


def test_defaults_fit_a_default_server() -> None:
    assert assess(_pool(), FACTS) == []


@pytest.mark.parametrize("lifetime", [28800, 40000, 0])
def test_lifetime_not_below_wait_timeout(lifetime: float) -> None:
    (warning,) = assess(_pool(lifetime=lifetime), FACTS)
    assert "wait_timeout" in warning and "--lifetime below 28800" in warning


def test_maxsize_against_free_slots() -> None:
    # 151 - (11 - 1 ours) = 141 free; 80 % of that is 112.8
    assert assess(_pool(maxsize=112), FACTS) == []
    (warning,) = assess(_pool(maxsize=113), FACTS)
    assert "maxsize (113)" in warning and "141" in warning


def test_short_wait_timeout_keepalive_note() -> None:
    facts = ServerFacts("v", 20, 151, 0, 1, 1)
    (warning,) = assess(_pool(lifetime=10), facts)
    assert "every 10 s" in warning and "borrowed" in warning


def test_max_user_connections() -> None:
    facts = ServerFacts("v", 28800, 1000, 20, 1, 1)
    (warning,) = assess(_pool(maxsize=30), facts)
    assert "max_user_connections (20)" in warning


def test_describe_error_pymysql_and_pool_errors() -> None:
    exc = pymysql.err.OperationalError(2003, "Can't connect\n to server")
    assert describe_error(exc) == "[2003] Can't connect to server"
    assert describe_error(PoolTimeout("no connection")) == "PoolTimeout: no connection"
    assert describe_error(ValueError("x pw-123 y"), "pw-123") == "ValueError: x *** y"


def test_format_table() -> None:
    text = format_table(("name", "n"), [("a", 1), ("bbb", 22)], right=(1,))
    assert text.splitlines() == ["name   n", "----  --", "a      1", "bbb   22"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    now = [0.0]
    progress = Progress(stream, plain_every=1.0, clock=lambda: now[0])
    progress.update("a")
    progress.update("b")  # too soon: dropped
    now[0] = 1.5
    progress.update("c")
    progress.update("d", force=True)
    progress.done()
    assert stream.getvalue() == "a\nc\nd\n"


def test_progress_redraws_on_a_terminal() -> None:
    stream = _Tty()
    progress = Progress(stream, clock=lambda: 0.0)
    progress.update("a")
    progress.update("b", force=True)
    progress.done()
    assert stream.getvalue() == "\r\x1b[Ka\r\x1b[Kb\r\x1b[K"


def test_progress_disabled() -> None:
    stream = _Tty()
    Progress(stream, enabled=False).update("a", force=True)
    assert stream.getvalue() == ""
