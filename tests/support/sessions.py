"""The one helper that KILLs server sessions, for every test tier."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

import pymysql

from .waiting import wait_until

ER_NO_SUCH_THREAD = 1094  # "Unknown thread id": the session is already gone

#: Runs one SQL statement as an admin and returns its rows: ``ThrowawayMariaDB.admin_query``,
#: or ``lambda sql: query(admin, sql)`` over an open admin connection.
RunSQL = Callable[[str], Sequence[Any]]


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
