"""SQLAlchemy on top of a pymysqlpool pool: ``pip install 'pymysql-pool[sqlalchemy]'``.

::

    from pymysqlpool.sqlalchemy import create_engine
    engine = create_engine(pool)            # or create_engine("mysql://user:pw@host/db")

The engine borrows from ``pool`` for every SQLAlchemy checkout (``NullPool``,
so SQLAlchemy keeps no connections of its own) and gives the connection back
when the ``Connection`` or ``Session`` closes.

Why a helper and not just ``creator=pool.get_conn``: the pool lends its
connections in autocommit mode (``autocommit=True``, the default), while
SQLAlchemy assumes every statement after its implicit BEGIN is part of a
transaction it can roll back. With a bare creator a ``rollback()`` keeps the
rows. The dialect here starts each transaction with an explicit ``BEGIN``
(the server then holds the statements until COMMIT or ROLLBACK, whatever
autocommit says), skips COMMIT and ROLLBACK when the server reports no open
transaction (so the reset SQLAlchemy does on every checkin costs no round
trip, and the pool's own check on return finds a clean connection), and does
not repeat per checkout the session set-up the pool did once per connection.
A pool with ``autocommit=False`` works too: there no BEGIN is needed, but the
pool rolls back every connection it gets back.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Optional, Union

try:
    import sqlalchemy
    from sqlalchemy.dialects import registry
    from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.pool import NullPool
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "pymysqlpool.sqlalchemy needs SQLAlchemy 2: install the extra with pip install 'pymysql-pool[sqlalchemy]'"
    ) from exc

from pymysql.constants import SERVER_STATUS

from . import _driver
from .connection import PooledConnection
from .pool import ConnectionPool

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PoolDialect", "create_engine", "pool_from_url"]

DIALECT_NAME = "mysql.pymysqlpool"
_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
# What the helper sets itself: passing them would undo what makes it correct.
_OWN_KEYWORDS = ("creator", "poolclass", "pool", "connect_args", "module")


def _borrowed(conn: Any) -> PooledConnection:
    """The PooledConnection under whatever SQLAlchemy hands a dialect hook."""
    return conn.dbapi_connection if hasattr(conn, "dbapi_connection") else conn  # type: ignore[no-any-return]


def _in_transaction(raw: Any) -> bool:
    # Read from the last OK packet: no round trip. With autocommit off a
    # snapshot may be open without IN_TRANS, so that always counts.
    status = raw.server_status
    return bool(status & _IN_TRANS or not status & _AUTOCOMMIT)


class PoolDialect(MySQLDialect_pymysql):
    """SQLAlchemy's PyMySQL dialect, adapted to connections lent by a pool."""

    driver = "pymysqlpool"
    supports_statement_cache = True
    connection_pool: ConnectionPool  # set by create_engine()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Checkouts SQLAlchemy runs at isolation level AUTOCOMMIT: no BEGIN for them.
        self._autocommit_borrows: weakref.WeakSet[PooledConnection] = weakref.WeakSet()
        # The isolation level this dialect last set on each server session;
        # not kept when the pool resets sessions (reset_session=True) on return.
        self._session_levels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self.session_levels_persist = True

    def on_connect(self) -> Optional[Callable[[Any], None]]:  # type: ignore[override]  # None is allowed by Dialect
        # Every checkout is a "connect" to SQLAlchemy; PyMySQL already set the
        # character set when the pool opened the connection.
        return None

    def do_begin(self, dbapi_connection: Any) -> None:
        borrowed = _borrowed(dbapi_connection)
        raw = borrowed.raw
        if raw.server_status & _AUTOCOMMIT and borrowed not in self._autocommit_borrows:
            raw.begin()

    def do_commit(self, dbapi_connection: Any) -> None:
        raw = _borrowed(dbapi_connection).raw
        if _in_transaction(raw):
            raw.commit()

    def do_rollback(self, dbapi_connection: Any) -> None:
        raw = _borrowed(dbapi_connection).raw
        if _in_transaction(raw):
            raw.rollback()

    def set_isolation_level(self, dbapi_connection: Any, level: Any) -> None:
        borrowed = _borrowed(dbapi_connection)
        raw = borrowed.raw
        if level == "AUTOCOMMIT":
            self._autocommit_borrows.add(borrowed)
            raw.autocommit(True)  # no round trip when the pool lends in autocommit already
            return
        self._autocommit_borrows.discard(borrowed)
        if self._session_levels.get(raw) != level:
            with raw.cursor() as cur:
                cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
            if self.session_levels_persist:
                self._session_levels[raw] = level

    def do_terminate(self, dbapi_connection: Any) -> None:
        # SQLAlchemy invalidated the connection: the pool must not lend it again.
        borrowed = _borrowed(dbapi_connection)
        if not borrowed.returned:
            _driver.force_close(borrowed.raw)
            borrowed.close()


registry.register(DIALECT_NAME, __name__, "PoolDialect")


def pool_from_url(url: Union[str, URL], **pool_kwargs: Any) -> ConnectionPool:
    """A ConnectionPool for a ``mysql://`` / ``mysql+pymysql://`` URL; the URL's
    query string and ``pool_kwargs`` are ConnectionPool keywords (the rules
    of :meth:`ConnectionPool.from_url`)."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return ConnectionPool.from_url(text, **pool_kwargs)


def create_engine(pool_or_url: Union[ConnectionPool, str, URL], **engine_kwargs: Any) -> Engine:
    """A SQLAlchemy Engine whose connections come from a pymysqlpool pool.

    ``pool_or_url`` is a ``ConnectionPool`` or a MySQL URL (a pool is made
    for it; query parameters are ConnectionPool keywords). Other keywords go
    to ``sqlalchemy.create_engine``; ``pool_pre_ping`` is unnecessary (the
    pool validates connections idle longer than ``validation_interval``).
    The pool is ``engine.dialect.connection_pool``.
    """
    clash = sorted(key for key in _OWN_KEYWORDS if key in engine_kwargs)
    if clash:
        raise TypeError(f"create_engine() sets {', '.join(clash)} itself: configure the ConnectionPool instead")
    pool = pool_or_url if isinstance(pool_or_url, ConnectionPool) else pool_from_url(pool_or_url)
    if pool.closed:
        raise ValueError(f"pool {pool.name!r} is closed")
    engine = sqlalchemy.create_engine(
        "mysql+pymysqlpool://",
        creator=lambda: pool.get_conn(),
        poolclass=NullPool,
        **engine_kwargs,
    )
    dialect = engine.dialect
    assert isinstance(dialect, PoolDialect)
    dialect.connection_pool = pool
    dialect.session_levels_persist = not pool._config.reset_session
    return engine
