"""Fixtures shared by the test modules outside the tiers' own folders."""

from __future__ import annotations

import pymysql
import pytest

SERVER = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}


@pytest.fixture(scope="session")
def live_server() -> dict:
    """The shared MariaDB's settings; fails the test if it is not reachable."""
    try:
        pymysql.connect(connect_timeout=3, **SERVER).close()
    except pymysql.MySQLError as exc:
        pytest.fail(f"no MariaDB on 127.0.0.1:3306 (./dev test starts it): {exc}")
    return dict(SERVER)
