"""A socket-free stand-in for a PyMySQL connection, for bookkeeping and memory runs.

With no server in the loop, what is left to measure is the pool's own work:
its idle-list handling, locks and proxies, and the memory it keeps per
connection.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

from pymysql.constants.SERVER_STATUS import SERVER_STATUS_AUTOCOMMIT

_ids = itertools.count(1)
_SOCKET = object()  # shared: a per-connection object would count as the fake's memory


class FakeCursor:
    rowcount = 1
    lastrowid = None
    description = None
    arraysize = 1

    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection

    def execute(self, query: str, args: Any = None) -> int:
        return 1

    def executemany(self, query: str, args: Any) -> int:
        return 1

    def fetchone(self) -> tuple[int]:
        return (1,)

    def fetchall(self) -> tuple[tuple[int], ...]:
        return ((1,),)

    def close(self) -> None:
        return None

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakeConnection:
    """Enough of ``pymysql.connections.Connection`` for a pool to lend it out.

    Slotted, as a connection class of a ``connection_factory`` must be for
    the pool to lend it through the proxy class without ``__getattr__``
    (``Borrowed.proxy_for``), the class that lends the driver's own
    connections: the fake measures that path."""

    __slots__ = (
        "_closed",
        "_read_timeout",
        "_rfile",
        "_sock",
        "_write_timeout",
        "autocommit_mode",
        "db",
        "host",
        "open",
        "port",
        "server_status",
        "server_thread_id",
        "user",
    )  # fmt: skip

    # Class attributes: read by pools, never per-connection memory.
    _result = None
    _exchanging = False  # the driver's mid-answer mark (see _driver.adopt)
    charset = "utf8mb4"
    collation = None
    sql_mode = None
    init_command = None
    connect_timeout = 10

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.host = kwargs.get("host", "fake")
        self.port = kwargs.get("port", 3306)
        self.user = kwargs.get("user", "fake")
        self.db = kwargs.get("database")
        self.open = True
        self._closed = False
        self._sock = _SOCKET
        self.server_status = SERVER_STATUS_AUTOCOMMIT
        self.autocommit_mode = True
        self.server_thread_id = (next(_ids),)
        self._rfile = None
        self._read_timeout = None  # set by the pool's bounded waits (_driver._bounded)
        self._write_timeout = None

    # --- transaction and session state ---
    def get_autocommit(self) -> bool:
        return bool(self.server_status & SERVER_STATUS_AUTOCOMMIT)

    def autocommit(self, value: bool) -> None:
        self.autocommit_mode = bool(value)

    def begin(self) -> None:
        return None

    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None

    def select_db(self, db: str) -> None:
        self.db = db

    def ping(self, reconnect: bool = True) -> None:
        return None

    # --- queries ---
    def cursor(self, cursor: Any = None) -> FakeCursor:
        return FakeCursor(self)

    def query(self, sql: str, unbuffered: bool = False) -> int:
        return 1

    def next_result(self) -> None:
        return None

    def insert_id(self) -> int:
        return 0

    def affected_rows(self) -> int:
        return 0

    def show_warnings(self) -> tuple[Any, ...]:
        return ()

    # --- identity ---
    def thread_id(self) -> int:
        return self.server_thread_id[0]

    def get_server_info(self) -> str:
        return "10.11.0-MariaDB-fake"

    def character_set_name(self) -> str:
        return "utf8mb4"

    # --- closing ---
    def close(self) -> None:
        self.open = False
        self._closed = True
        self._sock = None

    def _force_close(self) -> None:
        self.close()

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def fake_connect(*args: Any, **kwargs: Any) -> FakeConnection:
    """Drop-in for ``pymysql.connect`` that opens nothing."""
    return FakeConnection(*args, **kwargs)


def make_fake_pool(k: int) -> Any:
    """Build one of our pools holding `k` idle fake connections (maxsize 1000).

    TODO(wire to final API): the pool is handed a callable that replaces
    ``pymysql.connect``. The brief assumed ``connect=``; the pool as written
    takes ``connection_factory=`` (called with the connect keywords), so the
    keyword is picked from the signature. If the API changes again, change
    this one call: the bookkeeping and memory scenarios both go through here.
    A TypeError (unknown keyword) makes both report "n/a".
    """
    from benchmarks.peers import import_ours

    module, why = import_ours()
    if module is None:
        raise ImportError(why)
    params = inspect.signature(module.ConnectionPool).parameters
    keyword = "connection_factory" if "connection_factory" in params else "connect"
    return module.ConnectionPool(
        host="fake.invalid",
        port=3306,
        user="fake",
        password="",
        database="fake",
        maxsize=1000,
        size=1000,
        pre_create_num=k,
        timeout=1.0,
        autocommit=True,
        **{keyword: fake_connect},
    )
