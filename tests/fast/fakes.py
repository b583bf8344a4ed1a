"""A fake PyMySQL driver for the fast tier: no socket, no server.

``FakeServer`` is both the ``connection_factory`` handed to the pool and the
server's view of it: it knows every connection it made and how many are still
open. ``FakeConnection`` mimics the parts of ``pymysql.connections.Connection``
the pool relies on (status bits from the last OK packet, ``_sock`` set to
None once the socket is gone, ``close()`` raising when called twice) and
counts every command it receives.
"""

from __future__ import annotations

import random
import threading
from typing import Any, Dict, List, Optional, Set

import pymysql
import pymysql.converters
import pymysql.cursors

from pymysqlpool import _driver

IN_TRANS = 1
AUTOCOMMIT = 2

# Error numbers PyMySQL uses for these situations.
CR_CONN_HOST_ERROR = 2003
CR_SERVER_LOST = 2013


class FakeConnectError(pymysql.err.OperationalError):  # type: ignore[misc]
    """A connect that failed the way an unreachable server fails (retryable)."""


class FakeResult:
    """What PyMySQL keeps in ``conn._result`` after a query: finished and
    buffered unless told otherwise."""

    def __init__(self, conn: FakeConnection, unbuffered_active: bool = False, pending: int = 0) -> None:
        self.conn = conn
        self.unbuffered_active = unbuffered_active
        self.pending = pending  # further result sets of a multi-statement query
        self.affected_rows = 0
        self.warning_count = 0
        self.description = None
        self.insert_id = 0
        self.rows: tuple[Any, ...] = ()

    @property
    def has_next(self) -> bool:
        return self.pending > 0

    def _finish_unbuffered_query(self) -> None:
        self.conn._io()
        self.conn.drained_rows += 1
        self.unbuffered_active = False


class FakeConnection:
    """One client connection to the fake server."""

    def __init__(self, server: FakeServer, serial: int, kwargs: Dict[str, Any]) -> None:
        self.server = server
        self.serial = serial
        self.kwargs = kwargs
        autocommit = bool(kwargs.get("autocommit"))
        self.autocommit_mode = autocommit
        self.server_status = AUTOCOMMIT if autocommit else 0
        self._sock: Optional[object] = object()
        self._rfile: Optional[object] = None
        self._result: Optional[FakeResult] = None
        self.cursorclass = pymysql.cursors.Cursor
        self.encoding = "utf8"
        self._closed = False
        self._read_timeout: Optional[float] = kwargs.get("read_timeout")
        self._write_timeout: Optional[float] = kwargs.get("write_timeout")
        # The server dropped this session; the client learns it at its next I/O.
        self.server_gone = False
        # Make the next pings fail as a dead server would.
        self.ping_fails = False
        self.disposed = False  # close() or _force_close() was called on it
        self.pings = 0
        self.rollbacks = 0
        self.commits = 0
        self.begins = 0
        self.autocommit_calls = 0
        self.closes = 0
        self.force_closes = 0
        self.queries = 0
        self.drained_rows = 0
        self.next_results = 0
        self.owner: Optional[object] = None
        # The server answers the next query with this (errno, message), as a
        # demoted primary answers a write with 1290.
        self.next_error: Optional[tuple[int, str]] = None
        self.wrong_node_hook: Any = None  # set by the pool, as on the real driver's Connection

    def __repr__(self) -> str:
        return f"<FakeConnection #{self.serial} status={self.server_status} sock={self._sock is not None}>"

    # -- state helpers for tests -------------------------------------------

    @property
    def in_trans(self) -> bool:
        return bool(self.server_status & IN_TRANS)

    def break_(self, noticed: bool = True) -> None:
        """The server drops this connection. ``noticed``: the client already
        saw it fail (PyMySQL then sets ``_sock`` to None); otherwise it finds
        out at its next I/O."""
        self.server_gone = True
        if noticed:
            self._sock = None

    def claim(self, owner: object) -> None:
        """Record that ``owner`` holds this connection now; a second holder is a violation."""
        with self.server.lock:
            if self.owner is not None:
                self.server.ownership_violations.append((self.serial, self.owner, owner))
            self.owner = owner

    def unclaim(self, owner: object) -> None:
        with self.server.lock:
            if self.owner is not owner:
                self.server.ownership_violations.append((self.serial, self.owner, owner))
            self.owner = None

    # -- the wire ----------------------------------------------------------

    def _io(self) -> None:
        """One round trip: fails like PyMySQL when the socket or the server is gone."""
        if self._sock is None:
            raise pymysql.err.InterfaceError(0, "")
        if self.server_gone:
            self._sock = None  # PyMySQL force-closes after a failed read
            raise pymysql.err.OperationalError(CR_SERVER_LOST, "Lost connection to MySQL server during query")

    def query(self, sql: str, unbuffered: bool = False) -> int:
        self.queries += 1
        self._io()
        if self.next_error is not None:
            exc = pymysql.err.OperationalError(*self.next_error)
            self.next_error = None
            _driver.note_error(self, exc)  # what pymysqlpool's Connection does on a server error
            raise exc
        if not self.server_status & AUTOCOMMIT:
            self.server_status |= IN_TRANS  # any statement opens a transaction
        self._result = FakeResult(self, unbuffered_active=unbuffered)
        return 0

    def cursor(self, cursor: Any = None) -> Any:
        """A real PyMySQL cursor class on top of this fake connection."""
        return (cursor or self.cursorclass)(self)

    def escape(self, obj: Any, mapping: Any = None) -> str:
        return str(pymysql.converters.escape_item(obj, "utf8", mapping))

    def begin(self) -> None:
        self.begins += 1
        self._io()
        self.server_status |= IN_TRANS

    def commit(self) -> None:
        self.commits += 1
        self._io()
        self.server_status &= ~IN_TRANS

    def rollback(self) -> None:
        self.rollbacks += 1
        self._io()
        self.server_status &= ~IN_TRANS

    def autocommit(self, value: bool) -> None:
        self.autocommit_calls += 1
        self.autocommit_mode = bool(value)
        if bool(value) != self.get_autocommit():  # PyMySQL sends only a change
            self._io()
            if value:
                # SET autocommit=1 commits an open transaction.
                self.server_status = (self.server_status | AUTOCOMMIT) & ~IN_TRANS
            else:
                self.server_status &= ~AUTOCOMMIT

    def get_autocommit(self) -> bool:
        return bool(self.server_status & AUTOCOMMIT)

    def ping(self, reconnect: bool = False) -> None:
        self.pings += 1
        if self._sock is None:
            raise pymysql.err.Error("Already closed")
        self._io()
        if self.ping_fails:
            self._sock = None
            raise pymysql.err.OperationalError(CR_SERVER_LOST, "Lost connection to MySQL server during query")

    def next_result(self, unbuffered: bool = False) -> int:
        self.next_results += 1
        self._io()
        left = self._result.pending - 1 if self._result is not None else 0
        self._result = FakeResult(self, pending=left) if left > 0 else None
        return 0

    def select_db(self, db: str) -> None:
        self._io()

    def thread_id(self) -> int:
        return self.serial

    def close(self) -> None:
        self.closes += 1
        if self._closed:
            raise pymysql.err.Error("Already closed")
        self._closed = True
        self._sock = None
        self.server.dispose(self)

    def _force_close(self) -> None:
        self.force_closes += 1
        self._sock = None
        self.server.dispose(self)


class FakeServer:
    """``connection_factory`` for the pool and the server-side view of its connections.

    ``fail_next`` makes the next N connects fail; ``fail_rate`` makes each
    connect fail with that probability (seeded, so a run can be replayed).
    """

    def __init__(self, *, fail_rate: float = 0.0, seed: int = 0) -> None:
        self.lock = threading.Lock()
        self._rng = random.Random(seed)
        self.fail_rate = fail_rate
        self.fail_next = 0
        self.connect_attempts = 0
        self.connect_failures = 0
        self.made: List[FakeConnection] = []
        self.live: Set[FakeConnection] = set()
        self.high_water = 0
        self.ownership_violations: List[Any] = []
        self.kwargs_seen: List[Dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> FakeConnection:
        with self.lock:
            self.connect_attempts += 1
            self.kwargs_seen.append(dict(kwargs))
            fail = False
            if self.fail_next > 0:
                self.fail_next -= 1
                fail = True
            elif self.fail_rate and self._rng.random() < self.fail_rate:
                fail = True
            if fail:
                self.connect_failures += 1
                raise FakeConnectError(CR_CONN_HOST_ERROR, "Can't connect to MySQL server on 'fake' (refused)")
            conn = FakeConnection(self, len(self.made), kwargs)
            self.made.append(conn)
            self.live.add(conn)
            self.high_water = max(self.high_water, len(self.live))
            return conn

    def dispose(self, conn: FakeConnection) -> None:
        with self.lock:
            conn.disposed = True
            self.live.discard(conn)

    @property
    def open_count(self) -> int:
        """Connections the client has not closed: the server's count of sessions it serves."""
        with self.lock:
            return len(self.live)

    def live_snapshot(self) -> List[FakeConnection]:
        with self.lock:
            return list(self.live)

    @property
    def total_pings(self) -> int:
        with self.lock:
            return sum(c.pings for c in self.made)
