"""SQLAlchemy on top of a pymysqlpool pool: ``pip install 'pymysql-pool[sqlalchemy]'``.

::

    from pymysqlpool.sqlalchemy import create_engine
    engine = create_engine(pool)            # or create_engine("mysql://user:pw@host/db")
    engine = sqlalchemy.create_engine("mysql+pymysqlpool://user:pw@host/db?maxsize=20")

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

import inspect
import weakref
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

try:
    import sqlalchemy
    from sqlalchemy.dialects import registry
    from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
    from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql
    from sqlalchemy.engine import URL, Engine, make_url
    from sqlalchemy.pool import NullPool
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "pymysqlpool.sqlalchemy needs SQLAlchemy 2: install the extra with pip install 'pymysql-pool[sqlalchemy]'"
    ) from exc

from pymysql.constants import CLIENT, SERVER_STATUS

from . import _driver
from ._registry import PoolRegistry
from ._validators import int_between
from .connection import PooledConnection
from .pool import ConnectionPool

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MariaDBPoolDialect", "PoolDialect", "close_pools", "create_engine", "pool_for_url", "pool_from_url"]

DIALECT_NAME = "mysql.pymysqlpool"
_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
# What the helper sets itself: passing them would undo what makes it correct.
_OWN_KEYWORDS = ("creator", "poolclass", "pool", "connect_args", "module")
_POOL_KEYWORDS = frozenset(inspect.signature(ConnectionPool.__init__).parameters) - {"self", "connect_kwargs"}
# The pools of mysql+pymysqlpool:// engines, one per process and URL.
_url_pools = PoolRegistry()
# The isolation level last set on each server session, by any engine on it.
_session_levels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


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

    # The DB-API module is PyMySQL's: what SQLAlchemy (and its test suite)
    # decides by driver name holds here too. The URL scheme is mysql+pymysqlpool.
    driver = "pymysql"
    supports_statement_cache = True
    # Set by create_engine(); a mysql+pymysqlpool:// engine's on its first connect.
    connection_pool: Optional[ConnectionPool] = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Checkouts SQLAlchemy runs at isolation level AUTOCOMMIT: no BEGIN for them.
        self._autocommit_borrows: weakref.WeakSet[PooledConnection] = weakref.WeakSet()
        # Levels are not kept when the pool resets sessions (reset_session=True) on return.
        self.session_levels_persist = True

    @classmethod
    def load_provisioning(cls) -> None:
        # SQLAlchemy's test suite looks beside the dialect's module; MySQL's is the one.
        MySQLDialect_pymysql.load_provisioning()  # type: ignore[no-untyped-call]

    @classmethod
    def get_pool_class(cls, url: URL) -> Any:
        # The pymysqlpool pool keeps the connections: SQLAlchemy keeps none.
        return NullPool

    def create_connect_args(self, url: URL, _translate_args: Optional[Dict[str, Any]] = None) -> Any:
        # Called by create_engine(): the pool's own parser and checks refuse a
        # bad URL now, by name, not at the first checkout. SQLAlchemy's alone
        # would drop port 0 and int() a connect_timeout without naming it.
        ConnectionPool.from_url(url.render_as_string(hide_password=False), open=False).close()
        args, kwargs = super().create_connect_args(url, _translate_args)
        return args, {**kwargs, **_query_kwargs(url, kwargs)}

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        # Only mysql+pymysqlpool:// engines get here; create_engine() passes a creator.
        pool = self.connection_pool
        if pool is None:
            pool = _url_pool(cparams, self._on_connect_isolation_level)
            self.adopt(pool)
        return pool.get_conn()

    def adopt(self, pool: ConnectionPool) -> None:
        """Lend from ``pool``; rowcount counts rows changed, not matched,
        unless its connections have ``CLIENT.FOUND_ROWS``: say so to SQLAlchemy."""
        self.connection_pool = pool
        self.session_levels_persist = not pool.reset_session
        found_rows = bool(pool.client_flag & CLIENT.FOUND_ROWS)
        self.supports_sane_rowcount = self.supports_sane_multi_rowcount = found_rows

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
        if _session_levels.get(raw) != level:
            with raw.cursor() as cur:
                cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
            if self.session_levels_persist:
                _session_levels[raw] = level

    def do_terminate(self, dbapi_connection: Any) -> None:
        # SQLAlchemy invalidated the connection: the pool must not lend it again.
        borrowed = _borrowed(dbapi_connection)
        if not borrowed.returned:
            _driver.force_close(borrowed.raw)
            borrowed.close()


class MariaDBPoolDialect(MariaDBDialect, PoolDialect):
    """``mariadb+pymysqlpool://``: the same, with SQLAlchemy's MariaDB dialect."""

    supports_statement_cache = True


registry.register(DIALECT_NAME, __name__, "PoolDialect")
registry.register("mariadb.pymysqlpool", __name__, "MariaDBPoolDialect")


def _mysql_url(url: Union[str, URL]) -> URL:
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("mysql", "mariadb"):
        raise ValueError(f"not a MySQL or MariaDB URL: {parsed.render_as_string(hide_password=True)}")
    return parsed


def _query_kwargs(url: URL, given: Mapping[str, Any]) -> Dict[str, Any]:
    """The URL's query parameters that SQLAlchemy left as text, as numbers and booleans."""
    return {key: _number(value) for key, value in given.items() if key in url.query and isinstance(value, str)}


def _url_pool(cparams: Dict[str, Any], isolation_level: Optional[str]) -> ConnectionPool:
    options = {key: value for key, value in cparams.items() if key in _POOL_KEYWORDS}
    connect_kwargs = {key: value for key, value in cparams.items() if key not in _POOL_KEYWORDS}
    # An engine-wide isolation level stays on the server session: engines
    # with another level (or none, the server's default) get sessions of their own.
    owner = f"sqlalchemy isolation_level={isolation_level}"
    return _url_pools.get(owner, connect_kwargs, options, None)  # named host-port-user-database by default


def pool_for_url(url: Union[str, URL], isolation_level: Optional[str] = None) -> ConnectionPool:
    """The pool of ``mysql+pymysqlpool://`` engines for ``url`` (and an
    engine-wide ``isolation_level``) in this process, made on first use."""
    # With its driver module, as an engine's: the FOUND_ROWS flag comes from it.
    _, cparams = PoolDialect(dbapi=PoolDialect.import_dbapi()).create_connect_args(_mysql_url(url))
    return _url_pool(cparams, isolation_level)


def close_pools() -> None:
    """Close the pools of every ``mysql+pymysqlpool://`` engine in this process
    (``engine.dispose()`` leaves them open: other engines on the URL share them)."""
    _url_pools.close_all()


def pool_from_url(url: Union[str, URL], **pool_kwargs: Any) -> ConnectionPool:
    """A ConnectionPool for a ``mysql://`` / ``mysql+pymysql://`` URL; the URL's
    query string and ``pool_kwargs`` are ConnectionPool keywords (the rules
    of :meth:`ConnectionPool.from_url`). Its connections count rows matched,
    not changed (``CLIENT.FOUND_ROWS``), as SQLAlchemy's MySQL dialects do."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    flags = int_between("client_flag", pool_kwargs.get("client_flag", 0), 0, 2**31 - 1) | CLIENT.FOUND_ROWS
    return ConnectionPool.from_url(text, **{**pool_kwargs, "client_flag": flags})


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


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
    dialect.adopt(pool)
    return engine
