"""Where the test server is: MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PWD/MYSQL_DATABASE,
127.0.0.1:3306 root (no password) database ``test`` by default. Every test
that talks to the shared server takes its address from here."""

from __future__ import annotations

import os
from typing import Any

# Bounds every wait for a lock in a test session: a test that fails while a
# transaction holds a table must not block the DROP in teardown (or another
# test) for the server's default of a day (lock_wait_timeout = 86400 s).
SESSION_LIMITS = "SET SESSION lock_wait_timeout = 20, innodb_lock_wait_timeout = 20"


def mysql_kwargs() -> dict[str, Any]:
    """Connection arguments for the test server, from the environment, with
    the lock-wait bound applied to every session opened with them."""
    return {
        "host": os.environ.get("MYSQL_HOST", "127.0.0.1"),
        "port": int(os.environ.get("MYSQL_PORT", "3306")),
        "user": os.environ.get("MYSQL_USER", "root"),
        "password": os.environ.get("MYSQL_PWD", ""),
        "database": os.environ.get("MYSQL_DATABASE", "test"),
        "init_command": SESSION_LIMITS,
    }


def with_limits(init_command: str) -> str:
    """A test's own ``SET ...`` init_command, with the lock-wait bound kept."""
    head, _, rest = init_command.partition(" ")
    if head.upper() != "SET":
        raise ValueError(f"cannot combine {init_command!r} with the session limits: write it as SET ...")
    if rest.upper().startswith("SESSION "):
        rest = rest[len("SESSION ") :]
    return f"{SESSION_LIMITS}, {rest}"
