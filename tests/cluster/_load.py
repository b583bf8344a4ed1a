"""A bounded workload of writer and reader threads through a ClusterPool, recording what clients saw."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pymysql

from pymysqlpool import ClusterPool
from support.mariadb_cluster import ReplicationCluster
from support.waiting import wait_until

MAX_ITERATIONS = 100_000  # per thread: the loops end on stop(), on time, or on this count
PAUSE = 0.005  # between iterations, so 16 threads leave the 2 cores to the servers


@dataclass
class Outcome:
    at: float  # when the borrow ended
    role: str  # "writer" | "reader"
    error: Optional[BaseException] = None
    row_id: Optional[int] = None
    port: Optional[int] = None
    started: float = 0.0  # when the borrow began


def code_of(exc: BaseException) -> Any:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args:
        return exc.args[0]
    return type(exc).__name__


@dataclass
class Load:
    """``writers`` threads insert into ``table``, ``readers`` threads read it, until ``stop()``."""

    pool: ClusterPool
    table: str
    writers: int = 8
    readers: int = 8
    max_seconds: float = 60.0
    borrow_timeout: float = 10.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(role,), daemon=True)
            for role in ["writer"] * self.writers + ["reader"] * self.readers
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.borrow_timeout + 15)
        assert not any(t.is_alive() for t in self._threads), "a load thread hangs"

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _run(self, role: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(MAX_ITERATIONS):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            started = time.monotonic()
            try:
                conn = self.pool.connection(read_only=role == "reader", timeout=self.borrow_timeout)
                with conn, conn.cursor() as cur:
                    if role == "writer":
                        cur.execute(f"INSERT INTO {self.table} (v) VALUES (1)")
                        row_id = cur.lastrowid
                    else:
                        cur.execute(f"SELECT COUNT(*) FROM {self.table}")
                        row_id = None
                    cur.execute("SELECT @@port")
                    port = cur.fetchone()[0]
                self._record(Outcome(time.monotonic(), role, row_id=row_id, port=port, started=started))
            except Exception as exc:
                self._record(Outcome(time.monotonic(), role, error=exc, started=started))
            time.sleep(PAUSE)

    # -- views ------------------------------------------------------------------

    def errors(self, role: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.role == role and o.error is not None]

    def successes(self, role: str, after: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if o.role == role and o.error is None and o.at >= after]

    def begun_after(self, role: str, moment: float) -> list[Outcome]:
        """Successful borrows that began after ``moment``."""
        return [o for o in self.outcomes if o.role == role and o.error is None and o.started >= moment]

    def acknowledged_ids(self) -> set[int]:
        return {o.row_id for o in self.outcomes if o.role == "writer" and o.error is None and o.row_id is not None}

    def first_success_after(self, role: str, moment: float) -> Optional[float]:
        times = [o.at for o in self.successes(role, moment)]
        return min(times) if times else None

    def wait_for_successes(self, role: str, count: int, timeout: float = 10.0) -> None:
        start = len(self.successes(role))
        wait_until(lambda: len(self.successes(role)) >= start + count, timeout, interval=0.02)


def seconds_until(predicate: Callable[[], object], timeout: float) -> float:
    """The seconds ``predicate`` took to hold (polled by ``wait_until``); fail if it never held."""
    started = time.monotonic()
    assert wait_until(predicate, timeout, interval=0.02), f"not true within {timeout} s"
    return time.monotonic() - started


def timed(call: Callable[[], Any], limit: float) -> tuple[float, Any]:
    """Run ``call`` on a thread; (seconds it took, its result or exception).
    Fails the test if it is still running after ``limit`` seconds (a hang)."""
    box: list[Any] = []

    def run() -> None:
        started = time.monotonic()
        try:
            value: Any = call()
        except BaseException as exc:  # the caller looks at it
            value = exc
        box.append((time.monotonic() - started, value))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert box, f"still blocked after {limit} s"
    result: tuple[float, Any] = box[0]
    return result


def port_of(conn: Any) -> int:
    """The port of the server a borrowed connection reached."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@port")
        return int(cur.fetchone()[0])


def make_table(pool: ClusterPool, replication: ReplicationCluster) -> str:
    """A new table, made through the pool, present on every replica."""
    table = f"drill_{uuid.uuid4().hex[:8]}"
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    replication.wait_caught_up()
    return table
