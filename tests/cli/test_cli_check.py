"""``pymysqlpool check`` against the shared MariaDB."""

from __future__ import annotations

import json

import pymysql
import pytest

from pymysqlpool.__main__ import main

from .conftest import CLOSED_HOST, SECRET, where

pytestmark = pytest.mark.server


def _server_version(admin: pymysql.connections.Connection) -> str:
    with admin.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return str(cur.fetchone()[0])


def test_check_ok(admin: pymysql.connections.Connection, live_server: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    labels = {line.split("  ")[0] for line in lines}
    assert {"target", "server", "SELECT 1", "wait_timeout", "max_connections", "pool", "keep-alive"} <= labels
    assert f"server           {_server_version(admin)}" in out
    assert f"{where(live_server)} (password: none)" in out
    assert "Threads_connected now:" in out
    assert lines[-1].startswith("OK")
    assert err == ""


def test_check_json(admin: pymysql.connections.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", "--samples", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["server"]["version"] == _server_version(admin)
    assert report["server"]["max_connections"] > 0 and report["server"]["wait_timeout"] > 0
    assert report["server"]["pool_open"] == 1
    assert report["select1_ms"]["samples"] == 3
    assert report["select1_ms"]["min"] <= report["select1_ms"]["median"] <= report["select1_ms"]["max"]
    assert report["pool"]["maxsize"] == 100


def test_check_warnings_still_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--lifetime", "0", "--maxsize", "100000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    warnings = [line for line in lines if line.startswith("WARN ")]
    assert len(warnings) == 2
    assert any("con_lifetime (unlimited)" in w for w in warnings)
    assert any("maxsize (100000)" in w for w in warnings)
    assert lines[-1] == "OK (2 warnings)"


def test_check_pre_create_counts_own_connections(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", "--maxsize", "4", "--pre-create", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["server"]["pool_open"] >= 3


def test_check_closed_port_fails_with_one_line(
    live_server: dict, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--host", CLOSED_HOST, "--port", str(closed_port), "--connect-timeout", "3"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    target = where(live_server, host=CLOSED_HOST, port=closed_port)
    assert err.startswith(f"pymysqlpool check: error: cannot connect to {target}: [2003]")


def test_check_closed_port_json(closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", "--host", CLOSED_HOST, "--port", str(closed_port)]) == 1
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["ok"] is False and "cannot connect" in report["error"]
    assert "cannot connect" in err


def test_check_unknown_database(live_server: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--database", "pymysqlpool_no_such_db_x"]) == 1
    assert "[1049]" in capsys.readouterr().err


def test_env_is_used_and_flags_win(
    live_server: dict, closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host, port, db = live_server["host"], str(live_server["port"]), live_server["database"]
    monkeypatch.setenv("MYSQL_HOST", CLOSED_HOST)
    monkeypatch.setenv("MYSQL_PORT", str(closed_port))
    assert main(["check"]) == 1
    assert f"@{CLOSED_HOST}:{closed_port}/" in capsys.readouterr().err
    assert main(["check", "--url", f"mysql://{live_server['user']}@{host}:{port}/{db}"]) == 0
    assert main(["check", "--host", host, "--port", port]) == 0
    monkeypatch.setenv("MYSQL_HOST", host)
    monkeypatch.setenv("MYSQL_PORT", port)
    assert main(["check", "--url", f"mysql://{CLOSED_HOST}:{closed_port}"]) == 1
    assert main(["check", "--url", f"mysql://{host}:{closed_port}", "--port", port]) == 0


def _assert_no_secret(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert "sekret" not in out and "sekret" not in err
    return out + err


def test_password_never_printed(
    secret_user: str, live_server: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host, port, db = live_server["host"], live_server["port"], live_server["database"]
    assert main(["check", "--user", secret_user, "--password", SECRET]) == 0
    assert f"{where(live_server, user=secret_user)} (password: ***)" in _assert_no_secret(capsys)

    assert main(["check", "--json", "--url", f"mariadb://{secret_user}:{SECRET}@{host}:{port}/{db}"]) == 0
    text = _assert_no_secret(capsys)
    assert json.loads(text)["settings"]["password"] == "***"

    assert main(["check", "-v", "--user", secret_user, "--password", SECRET + "-wrong"]) == 1
    assert "[1045]" in _assert_no_secret(capsys)

    monkeypatch.setenv("MYSQL_USER", secret_user)
    monkeypatch.setenv("MYSQL_PWD", SECRET)
    assert main(["check", "-vv"]) == 0
    _assert_no_secret(capsys)


def test_unexpected_driver_error_is_one_line_and_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A driver error escaping a command still ends as one masked stderr line.
    from pymysqlpool.cli import check

    def boom(*args: object, **kwargs: object) -> None:
        raise pymysql.err.InternalError(1105, f"odd failure mentioning {SECRET}")

    monkeypatch.setattr(check, "_check", boom)
    monkeypatch.setenv("MYSQL_PWD", SECRET)
    assert main(["check"]) == 1
    assert capsys.readouterr().err == "pymysqlpool check: error: [1105] odd failure mentioning ***\n"
