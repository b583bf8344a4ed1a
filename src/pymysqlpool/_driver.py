"""Everything that touches PyMySQL beyond its public API lives here.

The pool needs a few facts PyMySQL keeps on private attributes (is the socket
gone, is a result still unread) and one command it has no helper for
(COM_RESET_CONNECTION). Keeping them in one module makes a PyMySQL upgrade a
one-file review.
"""

from __future__ import annotations

import inspect
import select
import socket
from contextlib import contextmanager
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Type

import pymysql
import pymysql.connections
import pymysql.cursors
from pymysql.constants import CLIENT, CR, ER, SERVER_STATUS

from .cursors import Cursor, DictCursor, SSCursor, SSDictCursor

__all__ = ["Connection"]

_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
_COM_RESET_CONNECTION = 0x1F

# PyMySQL's own cursor classes are swapped for ours so that ``db_query`` and
# ``db_modify`` exist on every cursor a pooled connection makes (0.5.0 did this).
CURSOR_MAP: Dict[Any, Any] = {
    pymysql.cursors.Cursor: Cursor,
    pymysql.cursors.DictCursor: DictCursor,
    pymysql.cursors.SSCursor: SSCursor,
    pymysql.cursors.SSDictCursor: SSDictCursor,
}


_read_query_result = pymysql.connections.Connection._read_query_result

# Server errors that say "this is the wrong server now": 1290 with the read-only
# text (a demoted primary; 1290 also covers --secure-file-priv, which is not),
# 1047 (a Galera node outside the primary component, or not ready).
_READ_ONLY = 1290
_NOT_READY = 1047


class Connection(pymysql.connections.Connection):  # type: ignore[misc]
    """A PyMySQL connection whose cursors carry the 0.5.0 helpers.

    The pool's connections are of this class. Used on its own it is an
    ordinary PyMySQL connection (0.5.0 exported ``Connection`` too).
    """

    # Called (no argument) the first time this connection sees a wrong-node
    # error; the pool sets it to doom the connection's slot.
    wrong_node_hook: Optional[Callable[[], Any]] = None

    def cursor(self, cursor: Optional[Type[Any]] = None) -> Any:
        return cursor_class(self.cursorclass if cursor is None else cursor)(self)

    # Every statement's answer (query, next_result) is read here, and a server
    # error is raised from inside it: one frame per statement, no round trip.
    def _read_query_result(self, unbuffered: bool = False) -> Any:
        try:
            return _read_query_result(self, unbuffered)
        except pymysql.err.MySQLError as exc:
            note_error(self, exc)
            raise


def note_error(raw: Any, exc: BaseException) -> None:
    """If ``exc`` says the server is the wrong node, call ``raw``'s wrong-node hook."""
    args = exc.args
    if not args or args[0] not in (_READ_ONLY, _NOT_READY):
        return
    if args[0] == _READ_ONLY and "read-only" not in str(args[-1]).lower():
        return
    hook = getattr(raw, "wrong_node_hook", None)
    if hook is not None:
        hook()


def watch_wrong_node(raw: Any, hook: Callable[[], Any]) -> None:
    """Have ``hook`` called when ``raw`` sees a wrong-node error (see note_error)."""
    try:
        raw.wrong_node_hook = hook
    except AttributeError:  # a connection_factory's object that takes no attributes
        pass


def cursor_class(cls: Any) -> Any:
    """Our cursor class for PyMySQL's ``Cursor``/``DictCursor``, else ``cls``."""
    return CURSOR_MAP.get(cls, cls)


@contextmanager
def _bounded(raw: Any, seconds: Optional[float]) -> Iterator[None]:
    """Cap every socket wait of ``raw`` at ``seconds`` for the block.

    PyMySQL re-applies its own read/write timeouts before each read and write
    (it compares against ``_current_timeout``), so swapping the configured
    values is enough and restoring them takes effect on the next packet.
    """
    if seconds is None:
        yield
        return
    seconds = max(seconds, 0.001)
    read, write = raw._read_timeout, raw._write_timeout
    raw._read_timeout = seconds if read is None else min(read, seconds)
    raw._write_timeout = seconds if write is None else min(write, seconds)
    try:
        yield
    finally:
        raw._read_timeout, raw._write_timeout = read, write


def connect(kwargs: Dict[str, Any], timeout: Optional[float], cls: Type[Connection] = Connection) -> Connection:
    """Open a connection; no socket wait (TCP connect, handshake, set-up
    queries) lasts longer than ``timeout`` seconds.

    Without this a server that accepts TCP but never answers (a hung server,
    a black-holing firewall) would block the handshake forever: PyMySQL reads
    it with ``read_timeout``, which defaults to no limit.
    """
    raw = cls(defer_connect=True, **kwargs)
    if timeout is not None:
        raw.connect_timeout = min(raw.connect_timeout or timeout, max(timeout, 0.001))
    with _bounded(raw, timeout):
        raw.connect()
    raw.connect_timeout = kwargs.get("connect_timeout", 10)
    return raw


_STATE_CHANGED = 0x4000  # SERVER_SESSION_STATE_CHANGED (not in PyMySQL's constants)


class WriteTrackingConnection(Connection):
    """A connection that notices, without a round trip, that it committed a write.

    The session asks the server to report changes of ``last_gtid`` (and
    nothing else); the server then flags the OK packet of every statement that
    wrote a transaction to the binary log. ``wrote`` stays True until cleared.
    See :func:`track_writes`.
    """

    wrote = False
    sync_wait_on = False  # a session setting the borrower's pool must undo on return

    def query(self, sql: Any, unbuffered: bool = False) -> int:
        result: int = super().query(sql, unbuffered)
        if self.server_status & _STATE_CHANGED:
            self.wrote = True
        return result

    def commit(self) -> None:
        super().commit()
        if self.server_status & _STATE_CHANGED:
            self.wrote = True


_TRACK_LAST_GTID = (
    "SET SESSION session_track_system_variables='last_gtid', session_track_schema=OFF,"
    " session_track_state_change=OFF, session_track_transaction_info=OFF"
)


def connect_tracking_writes(**kwargs: Any) -> Connection:
    """Open a :class:`WriteTrackingConnection` (a ``connection_factory``).

    Where the server cannot report ``last_gtid`` (MySQL, old MariaDB) a plain
    :class:`Connection` is returned: callers treat it as "may have written".
    """
    flags = int(kwargs.get("client_flag", 0)) | CLIENT.SESSION_TRACK
    timeout = float(kwargs.get("connect_timeout") or 10)
    raw = connect({**kwargs, "client_flag": flags}, timeout, WriteTrackingConnection)
    try:
        with _bounded(raw, timeout), raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(_TRACK_LAST_GTID)
    except pymysql.err.MySQLError:
        close(raw)
        return connect(kwargs, timeout)
    except BaseException:
        close(raw)
        raise
    return raw


def session_wait_timeout(raw: Any) -> Optional[float]:
    """The server's idle limit for this session (``wait_timeout``), in seconds."""
    with raw.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute("SELECT @@SESSION.wait_timeout")
        row = cur.fetchone()
    return float(row[0]) if row and row[0] else None


def _connect_parameters() -> FrozenSet[str]:
    params = inspect.signature(pymysql.connections.Connection.__init__).parameters
    return frozenset(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY)


CONNECT_PARAMETERS = _connect_parameters()


def unknown_parameters(kwargs: Dict[str, Any]) -> list[str]:
    """Names in ``kwargs`` that ``pymysql.connect`` would reject."""
    return sorted(k for k in kwargs if k not in CONNECT_PARAMETERS)


Probe = Callable[[int], List[Any]]


def make_probe(raw: Any) -> Optional[Probe]:
    """A zero-timeout readability check of the connection's socket.

    Between commands a healthy connection has nothing to read. If the socket
    is readable the server closed it (KILL, restart, wait_timeout) or sent
    something unasked: the connection must not be lent again. One poll()
    syscall, no exception, no round trip. None when there is no real socket.
    """
    try:
        fd = raw._sock.fileno()
    except Exception:
        return None
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return poller.poll


def is_broken(raw: Any) -> bool:
    """PyMySQL drops its socket when a read or write fails: nothing to reuse."""
    return raw._sock is None


def needs_reset(raw: Any, autocommit: bool) -> bool:
    """True when the connection cannot simply be parked: it is broken, or
    the next borrower could see this borrower's state.

    An open transaction, autocommit switched off (a read snapshot may be held
    even without IN_TRANS), a mismatch with the pool's mode, or an unread
    result. All of it is read from the last OK packet: no round trip.
    """
    if raw._sock is None:
        return True  # broken: the caller's slow path drops it
    status = raw.server_status
    if status & _IN_TRANS or bool(status & _AUTOCOMMIT) != autocommit or not autocommit:
        return True
    result = raw._result
    return result is not None and (result.unbuffered_active or result.has_next)


def reset(raw: Any, autocommit: bool, timeout: Optional[float]) -> bool:
    """Bring a connection back to the pool's clean state.

    Returns True if a ROLLBACK was sent. Raises on I/O errors: the caller
    then discards the connection.
    """
    with _bounded(raw, timeout):
        return _reset(raw, autocommit)


def _reset(raw: Any, autocommit: bool) -> bool:
    result = raw._result
    if result is not None:
        # Drain unread rows so the next command is not out of sync; PyMySQL
        # would do it too, but with a warning aimed at the borrower.
        if result.unbuffered_active:
            result._finish_unbuffered_query()
        while raw._result is not None and raw._result.has_next:
            raw.next_result()
    rolled_back = False
    status = raw.server_status
    if status & _IN_TRANS or not status & _AUTOCOMMIT:
        raw.rollback()
        rolled_back = True
    raw.autocommit(autocommit)
    return rolled_back


def reset_session(raw: Any, autocommit: bool, timeout: Optional[float]) -> None:
    """COM_RESET_CONNECTION, then re-apply what the reset wiped.

    The reset clears user variables, temporary tables, prepared statements and
    session settings, and restores the session character set and autocommit
    to server defaults, so charset, init_command and autocommit are applied
    again as PyMySQL does after connecting.
    """
    with _bounded(raw, timeout):
        _reset_session(raw, autocommit)


def _reset_session(raw: Any, autocommit: bool) -> None:
    raw._execute_command(_COM_RESET_CONNECTION, b"")
    raw._read_ok_packet()
    raw.set_character_set(raw.charset, raw.collation)
    if raw.sql_mode is not None:
        with raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute("SET sql_mode=%s", (raw.sql_mode,))
    if raw.init_command is not None:
        with raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(raw.init_command)
        if raw.server_status & _IN_TRANS:
            raw.commit()
    raw.autocommit_mode = autocommit
    raw._send_autocommit_mode()


def ping(raw: Any, timeout: Optional[float] = None) -> None:
    """COM_PING without reconnecting: a dead connection must be replaced,
    not revived. Waits at most ``timeout`` seconds for the answer."""
    with _bounded(raw, timeout):
        raw.ping(reconnect=False)


def close(raw: Any) -> None:
    """Polite close (COM_QUIT); never raises."""
    try:
        if not raw._closed:
            raw.close()
    except Exception:
        force_close(raw)


def force_close(raw: Any) -> None:
    """Close the socket without a word to the server; never raises."""
    try:
        raw._force_close()
    except Exception:
        pass


def interrupt(raw: Any) -> None:
    """Shut the socket down under a borrower still using it: its next (or
    current) read or write fails at once and the server ends the session.
    The borrower's thread still owns the object and closes it; never raises."""
    try:
        sock = raw._sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:
        pass


def abandon(raw: Any) -> None:
    """Forget a socket inherited through fork without closing it.

    Dropping the references closes only the child's file descriptor; the
    parent's connection stays open and nothing is sent to the server.
    """
    try:
        sock = raw._sock
        raw._sock = None
        raw._rfile = None
        raw._closed = True
        if sock is not None:
            # Closing our copy of the fd sends nothing while the parent holds its own.
            sock.close()
    except Exception:
        pass


# Errors retrying cannot fix: wrong credentials, unknown database, unknown host.
_FATAL_CONNECT_ERRORS = frozenset(
    {
        ER.ACCESS_DENIED_ERROR,  # 1045
        ER.BAD_DB_ERROR,  # 1049
        ER.DBACCESS_DENIED_ERROR,  # 1044
        CR.CR_UNKNOWN_HOST,  # 2005
        1251,  # client does not support authentication protocol
        1698,  # access denied (auth plugin)
    }
)


def is_fatal_connect_error(exc: BaseException) -> bool:
    """True if trying again later cannot succeed without a config change."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args:
        code = exc.args[0]
        if code in _FATAL_CONNECT_ERRORS:
            return True
        if code == CR.CR_CONN_HOST_ERROR:
            original = getattr(exc, "original_exception", None)
            # socket.gaierror: the name does not resolve; retrying will not help.
            return original is not None and type(original).__name__ == "gaierror"
    return False


# Errors that say the borrower reached a server that must not serve it now:
# read-only (a demoted primary) and a Galera node outside the primary component.
WRONG_NODE_ERRORS = frozenset({_READ_ONLY, _NOT_READY})
# Errors that say the server is gone or unreachable.
NODE_GONE_ERRORS = frozenset({CR.CR_CONN_HOST_ERROR, CR.CR_SERVER_LOST, CR.CR_SERVER_GONE_ERROR})  # 2003, 2013, 2006


def error_code(exc: BaseException) -> int:
    """The server's or client library's error number of ``exc``, else 0."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return 0
