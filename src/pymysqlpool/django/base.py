"""The ENGINE module Django loads for ``"ENGINE": "pymysqlpool.django"``."""

from __future__ import annotations

import sys
import types
import weakref
from typing import Any, Dict

import pymysql
import pymysql.constants
import pymysql.constants.CLIENT
import pymysql.constants.FIELD_TYPE
import pymysql.converters
from django.core.exceptions import ImproperlyConfigured

from .pools import get_pool

__all__ = ["DatabaseWrapper"]


def _mysqldb() -> types.ModuleType:
    """PyMySQL dressed as MySQLdb, as ``pymysql.install_as_MySQLdb()`` does,
    but as a module of its own: PyMySQL itself is not changed. Its
    ``version_info`` is the mysqlclient version PyMySQL says it matches,
    which is what Django's version check reads."""
    shim = types.ModuleType("MySQLdb")
    vars(shim).update({k: v for k, v in vars(pymysql).items() if not k.startswith("__")})
    vars(shim)["__version__"] = pymysql.__version__  # the mysqlclient-compatible one, as version_info
    return shim


def _import_django_mysql() -> types.ModuleType:
    """Import Django's MySQL backend with the MySQLdb shim in place only for
    the duration of the import; afterwards ``import MySQLdb`` elsewhere in the
    process behaves as before (mysqlclient, or an ImportError)."""
    name = "django.db.backends.mysql.base"
    if name in sys.modules:
        return sys.modules[name]
    aliases = {
        "MySQLdb": _mysqldb(),
        "MySQLdb.constants": pymysql.constants,
        "MySQLdb.constants.CLIENT": pymysql.constants.CLIENT,
        "MySQLdb.constants.FIELD_TYPE": pymysql.constants.FIELD_TYPE,
        "MySQLdb.converters": pymysql.converters,
    }
    saved = {key: sys.modules.get(key) for key in aliases}
    sys.modules.update(aliases)
    try:
        __import__(name)
    finally:
        for key, previous in saved.items():
            if previous is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = previous
    return sys.modules[name]


_mysql = _import_django_mysql()  # imports are serialized by the import lock

# Session settings already applied, per server connection: Django would send
# them on every connect(), which with a pool is every request.
_applied: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


class DatabaseWrapper(_mysql.DatabaseWrapper):  # type: ignore[misc,name-defined]
    """Django's MySQL DatabaseWrapper, borrowing from a pool."""

    def get_connection_params(self) -> Dict[str, Any]:
        params: Dict[str, Any] = super().get_connection_params()
        self._pool_options = _pool_options(params.pop("pool", True))
        return params

    def get_new_connection(self, conn_params: Dict[str, Any]) -> Any:
        options = {"autocommit": bool(self.settings_dict["AUTOCOMMIT"]), **self._pool_options}
        pool = get_pool(self.alias, conn_params, options)
        # reset_session=True wipes the session settings on every return.
        self._settings_persist = not pool.reset_session
        conn = pool.get_conn()
        if conn.encoders.get(bytes) is bytes:  # as Django does for mysqlclient
            conn.encoders.pop(bytes)
        return conn

    def init_connection_state(self) -> None:
        # Django's own version runs its SET statements each connect(); with a
        # pool they are needed once per server connection.
        super(_mysql.DatabaseWrapper, self).init_connection_state()
        assignments = []
        if self.features.is_sql_auto_is_null_enabled:
            assignments.append("SET SQL_AUTO_IS_NULL = 0")
        if self.isolation_level:
            assignments.append(f"SET SESSION TRANSACTION ISOLATION LEVEL {self.isolation_level.upper()}")
        wanted = "; ".join(assignments)
        raw = self.connection.raw
        if wanted and (_applied.get(raw) != wanted or not self._settings_persist):
            with self.cursor() as cursor:
                cursor.execute(wanted)
            _applied[raw] = wanted

    def _close(self) -> None:
        # Closed already (connection.close(), or _close() twice): nothing to give back.
        if self.connection is not None and self.connection.returned:
            return
        super()._close()

    def is_usable(self) -> bool:
        # The proxy's ping() reconnects in place by default; Django asks
        # whether the connection it holds still works.
        try:
            self.connection.ping(reconnect=False)
        except self.Database.Error:
            return False
        return True


def _pool_options(value: Any) -> Dict[str, Any]:
    if value is True or value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    raise ImproperlyConfigured(
        f"OPTIONS['pool'] must be True or a dict of ConnectionPool keywords, not {type(value).__name__}"
    )
