"""The helpers that find and KILL server sessions, for every test tier."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional

import pymysql

from .waiting import wait_until

ER_NO_SUCH_THREAD = 1094  # "Unknown thread id": the session is already gone

#: Runs one SQL statement as an admin and returns its rows: ``ThrowawayMariaDB.admin_query``,
#: or ``lambda sql: query(admin, sql)`` over an open admin connection.
RunSQL = Callable[[str], Sequence[Any]]
#: The same with query arguments: ``ThrowawayMariaDB.admin_query`` or ``functools.partial(query, admin)``.
RunQuery = Callable[[str, Any], Sequence[Any]]


def kill_sessions(run: RunSQL, ids: Iterable[int], *, gone_within: Optional[float] = None) -> None:
    """``KILL CONNECTION`` each of ``ids`` through ``run``; a session that is
    already gone is not an error. With ``gone_within``, also assert that the
    server no longer lists any of them within that many seconds."""
    targets = sorted({int(thread_id) for thread_id in ids})
    for thread_id in targets:
        try:
            run(f"KILL CONNECTION {thread_id}")
        except pymysql.err.OperationalError as exc:
            if not exc.args or exc.args[0] != ER_NO_SUCH_THREAD:
                raise
    if gone_within is not None and targets:
        listed = f"SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ({', '.join(map(str, targets))})"
        assert wait_until(lambda: not run(listed), timeout=gone_within), f"KILL did not take: {targets}"


def user_sessions(run: RunQuery, user: str) -> set[int]:
    """Server thread ids of ``user``'s sessions (an admin's own session is root's)."""
    rows = run("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
    return {int(row[0]) for row in rows}


@contextmanager
def sessions_ended(run: RunQuery, user: str, *, gone_within: Optional[float] = None) -> Iterator[None]:
    """Whatever the block did, KILL ``user``'s sessions still on the server
    afterwards (a failed test must not leave statements sleeping there)."""
    try:
        yield
    finally:
        kill_sessions(lambda sql: run(sql, None), user_sessions(run, user), gone_within=gone_within)
