"""Connection settings: URL parsing, precedence, masking; no server needed."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymysqlpool.__main__ import main
from pymysqlpool.cli import build_parser
from pymysqlpool.cli.settings import (
    ConnectionSettings,
    UsageError,
    parse_url,
    pool_settings,
    resolve,
    settings_from_env,
)


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["check", *argv])


# -- URL ---------------------------------------------------------------------


def test_url_full() -> None:
    assert parse_url("mysql://alice:pw@db.example:3307/shop") == {
        "user": "alice",
        "password": "pw",
        "host": "db.example",
        "port": 3307,
        "database": "shop",
    }


@pytest.mark.parametrize("scheme", ["mariadb", "MySQL", "mysql+pymysql", "mariadb+pymysql"])
def test_url_schemes(scheme: str) -> None:
    assert parse_url(f"{scheme}://bob@h/d") == {"user": "bob", "host": "h", "database": "d"}


def test_url_only_given_parts() -> None:
    assert parse_url("mysql://h") == {"host": "h"}
    assert parse_url("mysql:///d") == {"database": "d"}
    assert parse_url("mysql://h/") == {"host": "h"}


def test_url_percent_decoding() -> None:
    found = parse_url("mysql://us%40er:p%3Aw%2Fd%40x@h/my%20db")
    assert found["user"] == "us@er"
    assert found["password"] == "p:w/d@x"
    assert found["database"] == "my db"


def test_url_empty_password_is_given() -> None:
    assert parse_url("mysql://u:@h")["password"] == ""
    assert "password" not in parse_url("mysql://u@h")


def test_url_ipv6_and_socket() -> None:
    assert parse_url("mysql://[::1]:3310/d")["host"] == "::1"
    assert parse_url("mysql://u@/d?socket=/run/mysqld/mysqld.sock")["socket"] == "/run/mysqld/mysqld.sock"
    assert parse_url("mysql:///d?unix_socket=/tmp/s")["socket"] == "/tmp/s"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgres://h/d", "postgres://"),
        ("h:3306/d", "mysql://"),
        ("mysql://h:99999/d", "port"),
        ("mysql://h:abc/d", "port"),
        ("mysql://h/d/extra", "single database"),
        ("mysql://h/d?ssl=1", "unknown query parameter"),
        ("mysql://h/d#frag", "fragment"),
    ],
)
def test_url_errors(url: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_url(url)


# -- precedence --------------------------------------------------------------


def test_defaults() -> None:
    s = resolve(_args(), {})
    assert (s.host, s.port, s.user, s.password, s.database, s.socket) == ("127.0.0.1", 3306, "root", "", "test", None)


ENV = {
    "MYSQL_HOST": "envhost",
    "MYSQL_PORT": "3401",
    "MYSQL_USER": "envuser",
    "MYSQL_PWD": "envpw",
    "MYSQL_DATABASE": "envdb",
}


def test_env_over_defaults() -> None:
    s = resolve(_args(), ENV)
    assert (s.host, s.port, s.user, s.password, s.database) == ("envhost", 3401, "envuser", "envpw", "envdb")


def test_url_over_env_for_the_parts_it_gives() -> None:
    s = resolve(_args("--url", "mariadb://urluser@urlhost/urldb"), ENV)
    assert (s.host, s.port, s.user, s.password, s.database) == ("urlhost", 3401, "urluser", "envpw", "urldb")


def test_flags_over_url_and_env() -> None:
    args = _args(
        "--url", "mysql://urluser:urlpw@urlhost:3500/urldb",
        "--host", "flaghost", "--port", "3600", "--user", "flaguser", "--password", "flagpw", "--database", "flagdb",
    )  # fmt: skip
    s = resolve(args, ENV)
    assert (s.host, s.port, s.user, s.password, s.database) == ("flaghost", 3600, "flaguser", "flagpw", "flagdb")


def test_empty_flag_password_beats_env() -> None:
    assert resolve(_args("--password", ""), ENV).password == ""


def test_empty_env_values_are_ignored() -> None:
    assert settings_from_env({"MYSQL_HOST": "", "MYSQL_PORT": ""}) == {}


def test_bad_env_port() -> None:
    with pytest.raises(UsageError, match="MYSQL_PORT"):
        settings_from_env({"MYSQL_PORT": "nope"})


def test_socket_flag_reaches_connect_kwargs() -> None:
    s = resolve(_args("--socket", "/tmp/mysql.sock"), {})
    assert s.connect_kwargs()["unix_socket"] == "/tmp/mysql.sock"
    assert s.where == "root@localhost/test via socket /tmp/mysql.sock"


def test_password_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "typed")
    assert resolve(_args("--password"), {}).password == "typed"


def test_describe_masks_password() -> None:
    s = ConnectionSettings("h", 1, "u", "hunter2", "d")
    assert "hunter2" not in s.describe() and "***" in s.describe()
    assert s.public_dict()["password"] == "***"
    assert "none" in ConnectionSettings("h", 1, "u", "", "d").describe()


# -- usage errors through main() --------------------------------------------


def test_bad_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--url", "postgres://x/y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymysqlpool check: error: --url") and err.count("\n") == 1


def test_bad_env_port_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MYSQL_PORT", "x")
    assert main(["check"]) == 2
    assert "MYSQL_PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--port", "0"],
        ["check", "--maxsize", "0"],
        ["check", "--maxsize", "two"],
        ["check", "--lifetime", "-1"],
        ["check", "--bogus"],
        ["demo", "--ops", "5", "--seconds", "1"],
        ["nosuchcommand"],
    ],
)
def test_argparse_usage_errors(argv: list, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_pre_create_above_maxsize(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--maxsize", "2", "--pre-create", "3"]) == 2
    assert "--pre-create-num" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["check", "demo"])
def test_pool_flags_are_the_parameter_names_and_old_spellings_stay(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One scheme (docs/parameters.md, "Names"): --pre-create-num and --con-lifetime
    are ConnectionPool()'s pre_create_num and con_lifetime; --pre-create and
    --lifetime keep working."""
    for argv in (["--pre-create-num", "2", "--con-lifetime", "60"], ["--pre-create", "2", "--lifetime", "60"]):
        pool = pool_settings(build_parser().parse_args([command, "--maxsize", "4", *argv]))
        assert pool.pool_kwargs() == {"maxsize": 4, "pre_create_num": 2, "con_lifetime": 60.0, "timeout": 30.0}
        assert "pre_create_num=2 con_lifetime=60 s" in pool.describe()
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--pre-create-num N, --pre-create N" in out and "--con-lifetime SECONDS, --lifetime SECONDS" in out


def test_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err


# -- fuzz: any value of a connection option ------------------------------------------

OPTION_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "65536", "3306", "1e10", "nan", "inf", "-inf", "1e-300", "", " ", "\x00", "\udcff"]),
    st.text(max_size=6),
    st.builds(lambda tail: "mysql://" + tail, st.text(max_size=12)),
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["--port", "--connect-timeout", "--user", "--database", "--url"]), OPTION_VALUES)
def test_any_option_value_ends_in_a_one_line_error_or_a_failed_connect(option: str, value: str) -> None:
    """Exit status 2 with one line naming what is wrong, or 1 (the connect
    to a socket that is not there failed): never a traceback, never a hang."""
    err = io.StringIO()
    argv = ["check", "--socket", "/nonexistent/pymysqlpool-fuzz.sock", f"{option}={value}"]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    lines = err.getvalue().strip().splitlines()
    assert status in (1, 2), (argv, status, lines)
    assert lines and "Traceback" not in err.getvalue(), (argv, lines)
    if status == 2:
        assert "error" in lines[-1], lines
