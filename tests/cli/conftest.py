"""Fixtures for the command-line tests: the shared server, a closed port, a
throwaway login."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pymysql
import pytest

ENV_VARS = ("MYSQL_HOST", "MYSQL_PORT", "MYSQL_USER", "MYSQL_PWD", "MYSQL_DATABASE")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """The CLI reads MYSQL_*: start every test without them, except that a
    test of the server tier gets the test server's settings there (host,
    port, user, password, database: the session's MYSQL_*, or the CLI's
    defaults, 127.0.0.1:3306 root test)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    if request.node.get_closest_marker("server") is not None:
        server = request.getfixturevalue("live_server")
        monkeypatch.setenv("MYSQL_HOST", server["host"])
        monkeypatch.setenv("MYSQL_PORT", str(server["port"]))
        monkeypatch.setenv("MYSQL_USER", server["user"])
        monkeypatch.setenv("MYSQL_DATABASE", server["database"])
        if server["password"]:
            monkeypatch.setenv("MYSQL_PWD", server["password"])


def where(server: dict, host: str = "", port: int = 0, user: str = "") -> str:
    """How the CLI shows the test server's address, user@host:port/database,
    or another host, port or user with the test server's database."""
    return f"{user or server['user']}@{host or server['host']}:{port or server['port']}/{server['database']}"


# Where closed_port is closed: on this machine, whatever MYSQL_HOST says (a
# port found free here says nothing about the test server's host). The tests
# that use it expect a refused connect, never the test server.
CLOSED_HOST = "127.0.0.1"


@pytest.fixture
def closed_port() -> int:
    """A TCP port on CLOSED_HOST nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((CLOSED_HOST, 0))
        return int(sock.getsockname()[1])


SECRET = "sekret-xyz"


@pytest.fixture
def secret_user(admin: pymysql.connections.Connection, live_server: dict) -> Iterator[str]:
    """A login whose password is SECRET, dropped after the test."""
    name = f"pmp_cli_{os.getpid()}"
    with admin.cursor() as cur:
        cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, SECRET))
        cur.execute(f"GRANT ALL ON `{live_server['database']}`.* TO %s@'%%'", (name,))
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
