"""Shared helpers for the fault-injection scenarios: server-side views, a
bounded multi-threaded workload, and the pool-consistency check.

Everything here talks to throwaway servers only; callers pass the server.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql

from pymysqlpool import ConnectionPool
from support.sessions import user_sessions
from support.throwaway_mariadb import SHARED_SERVER_PORT, ThrowawayMariaDB

JOIN_TIMEOUT = 20.0  # longest a worker may take to finish after being told to stop


def error_kinds(errors: Sequence[BaseException | None]) -> str:
    """``"OperationalError(2013) x3, PoolTimeout x1"``: what users saw, for the summary."""
    counts: Counter[str] = Counter()
    for exc in errors:
        if exc is None:
            continue
        code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
        counts[type(exc).__name__ + (f"({code})" if code is not None else "")] += 1
    return ", ".join(f"{kind} x{n}" for kind, n in counts.most_common())


def create_user(server: ThrowawayMariaDB, user: str, *, password: str = "", max_connections: int = 0) -> None:
    """An ordinary account (root ignores max_user_connections) with rights on ``test``."""
    assert server.port != SHARED_SERVER_PORT
    limit = f" WITH MAX_USER_CONNECTIONS {max_connections}" if max_connections else ""
    # '%%': the statement goes through PyMySQL's %-formatting for the password.
    server.admin_query(f"CREATE USER IF NOT EXISTS '{user}'@'%%' IDENTIFIED BY %s{limit}", (password,))
    server.admin_query(f"GRANT ALL ON test.* TO '{user}'@'%'")


def user_kwargs(server: ThrowawayMariaDB, user: str, *, port: int | None = None, **extra: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {**server.connect_kwargs(), "user": user, "password": ""}
    if port is not None:
        kwargs["port"] = port
    kwargs.update(extra)
    assert kwargs["port"] != SHARED_SERVER_PORT
    return kwargs


def session_ids(server: ThrowawayMariaDB, user: str) -> set[int]:
    """Server thread ids of ``user``'s sessions (the admin's own session is root's)."""
    return user_sessions(server.admin_query, user)


def global_status(conn: Any, name: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
        row = cur.fetchone()
    return int(row[1])


def admin_connection(server: ThrowawayMariaDB) -> Any:
    """One persistent root session, so reading status does not itself open connections."""
    assert server.port != SHARED_SERVER_PORT
    return pymysql.connect(**server.connect_kwargs(), connect_timeout=2, read_timeout=10, autocommit=True)


def connection_id(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        (value,) = cur.fetchone()
    return int(value)


def assert_consistent(pool: ConnectionPool, *, all_returned: bool = True) -> dict[str, Any]:
    """The pool's gauges add up; with nothing borrowed, every open connection is idle."""
    stats = pool.get_stats()
    assert stats["open"] == stats["idle"] + stats["borrowed"], stats
    assert stats["open"] == pool.total_num
    assert stats["idle"] == pool.available_num
    assert 0 <= stats["open"] <= stats["pool_max"], stats
    if all_returned:
        assert stats["borrowed"] == 0, stats
        assert stats["connecting"] == 0, stats
        assert stats["waiting"] == 0, stats
        assert pool.total_num == pool.available_num, stats
        # Every borrow ended: given back, or dropped and reclaimed.
        assert stats["borrows"] == stats["returns"] + stats["leaks_reclaimed"], stats
    return stats


@dataclass
class Op:
    started: float
    ended: float
    error: BaseException | None


@dataclass
class Workload:
    """``threads`` workers that borrow, run ``sql`` and give back, in a bounded loop.

    Even-numbered workers use ``with pool.connection()``, odd ones
    ``get_conn()``/``release()``, so both return paths are exercised. Every
    error is caught and recorded, never raised in the worker.
    """

    pool: ConnectionPool
    threads: int = 16
    sql: str = "SELECT 1"
    max_ops_per_thread: int = 20_000
    max_seconds: float = 60.0
    pause: float = 0.005  # between operations: 16 busy threads on 2 cores starve everything else
    ops: list[Op] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), name=f"fault-worker-{index}", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _once(self, index: int) -> None:
        if index % 2 == 0:
            with self.pool.connection() as conn, conn.cursor() as cur:
                cur.execute(self.sql)
                cur.fetchall()
        else:
            conn = self.pool.get_conn()
            try:
                with conn.cursor() as cur:
                    cur.execute(self.sql)
                    cur.fetchall()
            finally:
                self.pool.release(conn)

    def _run(self, index: int) -> None:
        hard_stop = time.monotonic() + self.max_seconds
        for _ in range(self.max_ops_per_thread):
            if self._stop.is_set() or time.monotonic() >= hard_stop:
                return
            started = time.monotonic()
            error: BaseException | None = None
            try:
                self._once(index)
            except Exception as exc:
                error = exc
            with self._lock:
                self.ops.append(Op(started, time.monotonic(), error))
            # Back off a little more after an error so a dead server is not hammered.
            self._stop.wait(0.05 if error is not None else self.pause)

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def successes_after(self, moment: float) -> list[Op]:
        return [op for op in self.snapshot() if op.error is None and op.ended >= moment]

    def stop(self) -> list[str]:
        """Stop and join every worker (bounded); return the names of those still alive."""
        self._stop.set()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for worker in self._workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        return [worker.name for worker in self._workers if worker.is_alive()]
