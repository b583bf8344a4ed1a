"""Everything that touches PyMySQL beyond its public API lives here.

The pool needs a few facts PyMySQL keeps on private attributes (is the socket
gone, is a result still unread) and one command it has no helper for
(COM_RESET_CONNECTION). Keeping them in one module makes a PyMySQL upgrade a
one-file review.
"""

from __future__ import annotations

import asyncio
import inspect
import select
import socket
import time
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple, Type

import pymysql
import pymysql.connections
import pymysql.cursors
from pymysql.constants import CLIENT, COMMAND, CR, ER, SERVER_STATUS

from ._tls import TlsContexts
from .cursors import Cursor, DictCursor, SSCursor, SSDictCursor

__all__ = ["INSTANCE_ATTRIBUTES", "STATE_CHANGED", "TRACK_LAST_GTID", "Connection"]

_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
_CLEAN_MASK = _IN_TRANS | _AUTOCOMMIT  # of server_status: clean is exactly _AUTOCOMMIT
_COM_QUERY = COMMAND.COM_QUERY
# PyMySQL's own, unbound: called directly, cheaper than through super().
_execute_command = pymysql.connections.Connection._execute_command  # type: ignore[attr-defined]
_read_query_result = pymysql.connections.Connection._read_query_result  # type: ignore[attr-defined]
_COM_RESET_CONNECTION = 0x1F

# PyMySQL's own cursor classes are swapped for ours so that ``db_query`` and
# ``db_modify`` exist on every cursor a pooled connection makes (0.5.0 did this).
CURSOR_MAP: Dict[Any, Any] = {
    pymysql.cursors.Cursor: Cursor,
    pymysql.cursors.DictCursor: DictCursor,
    pymysql.cursors.SSCursor: SSCursor,
    pymysql.cursors.SSDictCursor: SSDictCursor,
}


# Server errors that say "this is the wrong server now": 1290 with the read-only
# text (a demoted primary; 1290 also covers --secure-file-priv, which is not),
# 1047 (a Galera node outside the primary component, or not ready).
_READ_ONLY = 1290
_NOT_READY = 1047


class Connection(pymysql.connections.Connection):
    """A PyMySQL connection whose cursors carry the 0.5.0 helpers, and which
    knows whether it stopped in the middle of an answer.

    ``_exchanging`` is set when a command is sent (or the next result of a
    multi-result answer is read) and cleared once the answer was read to its
    end, or ended with the server's error packet. If a Python exception -- an
    interrupt, a signal-based timeout, a decoding error -- escapes in between,
    it stays set: the rest of that answer is still on the wire or in PyMySQL's
    read buffer, and the connection must never be lent again. No I/O, one
    attribute store per command and per answer.

    The pool's connections are of this class. Used on its own it is an
    ordinary PyMySQL connection (0.5.0 exported ``Connection`` too).
    """

    _exchanging = False
    _hung_up = False  # the server ended the connection (see note_lost)
    _shut_by_pool = False  # the pool shut its socket down under the borrower (see interrupt)
    _logged_in = False  # the server made the session ours (see note_unfinished)
    # Called (no argument) the first time this connection sees a wrong-node
    # error; the pool sets it to doom the connection's slot.
    wrong_node_hook: Optional[Callable[[], Any]] = None

    # The pool's shared TLS contexts; None (used on its own): PyMySQL's behaviour.
    _pool_tls: Optional[TlsContexts] = None

    # The private PyMySQL methods overridden below are not in its published
    # stubs (types-PyMySQL): hence the type: ignore[misc] on each super() call.
    def _create_ssl_ctx(self, sslp: Any) -> Any:
        tls = self._pool_tls
        if tls is None:
            return super()._create_ssl_ctx(sslp)  # type: ignore[misc]
        return tls.context(sslp, super()._create_ssl_ctx)  # type: ignore[misc]

    def cursor(self, cursor: Optional[Type[Any]] = None) -> Any:
        return cursor_class(self.cursorclass if cursor is None else cursor)(self)

    def _request_authentication(self) -> None:
        super()._request_authentication()  # type: ignore[misc]
        self._logged_in = True

    def _execute_command(self, command: int, sql: Any) -> None:
        result = self._result  # type: ignore[attr-defined]  # not in the stubs
        if result is not None and (result.has_next or result.unbuffered_active):
            self._read_leftovers(result)
        self._exchanging = True
        try:
            _execute_command(self, command, sql)
        except pymysql.err.MySQLError as exc:
            note_lost(self, exc)
            raise

    def query(self, sql: Any, unbuffered: bool = False) -> int:
        # PyMySQL's query() with the answer read by PyMySQL's own reader
        # called directly: PyMySQL passes ``unbuffered`` by keyword through
        # the override below and its super(), the costliest step of a
        # statement's client side. The mid-answer mark is set as our
        # _execute_command sets it (written out here: one frame less per
        # statement) and cleared here, as _read_query_result does.
        if isinstance(sql, str):
            sql = sql.encode(self.encoding)
        result = self._result  # type: ignore[attr-defined]  # not in the stubs
        if result is not None and (result.has_next or result.unbuffered_active):
            self._read_leftovers(result)
        self._exchanging = True
        try:
            _execute_command(self, _COM_QUERY, sql)
        except pymysql.err.MySQLError as exc:
            note_lost(self, exc)
            raise
        try:
            affected: int = _read_query_result(self, unbuffered)
        except pymysql.err.MySQLError as exc:
            answer_ended(self, exc, self._sock is not None)  # type: ignore[attr-defined]  # not in the stubs
            raise
        self._exchanging = False
        self._affected_rows = affected
        return affected

    def _read_leftovers(self, result: Any) -> None:
        # PyMySQL reads what the last answer left unread before it sends the
        # next command, through next_result(), whose end clears the mid-answer
        # mark: an interrupt after the new command was sent would then leave
        # its answer on the wire under a connection marked clean, and the next
        # borrower would read it. Read the leftovers here, as PyMySQL would,
        # before marking the new exchange.
        if result.unbuffered_active:
            warnings.warn("Previous unbuffered result was left incomplete", UserWarning, stacklevel=3)
            result._finish_unbuffered_query()
        while self._result.has_next:  # type: ignore[attr-defined]
            self.next_result()

    def next_result(self, unbuffered: bool = False) -> Any:
        self._exchanging = True
        return super().next_result(unbuffered)

    def _read_query_result(self, unbuffered: bool = False) -> Any:
        try:
            affected = super()._read_query_result(unbuffered)  # type: ignore[misc]
        except pymysql.err.MySQLError as exc:
            answer_ended(self, exc, self._sock is not None)  # type: ignore[attr-defined]  # not in the stubs
            raise
        self._exchanging = False
        return affected

    def _read_ok_packet(self) -> Any:
        try:
            ok = super()._read_ok_packet()  # type: ignore[misc]
        except pymysql.err.MySQLError as exc:
            answer_ended(self, exc, self._sock is not None)  # type: ignore[attr-defined]  # not in the stubs
            raise
        self._exchanging = False
        return ok

    # The two commands PyMySQL reads by hand rather than through the above.
    def show_warnings(self) -> Any:
        rows = super().show_warnings()  # type: ignore[no-untyped-call]
        self._exchanging = False
        return rows

    def set_character_set(self, charset: str, collation: Optional[str] = None) -> None:
        super().set_character_set(charset, collation)
        self._exchanging = False


def answer_ended(raw: Any, exc: BaseException, connected: bool) -> None:
    """``exc`` ended the answer ``raw`` was reading. A server error packet
    ends it at a packet boundary (the mid-answer mark is cleared); a client
    error (2000-2999, or a broken sequence) leaves the driver's connection
    closed (``connected`` False). Either way a wrong-node error is noted."""
    code = exc.args[0] if exc.args else None
    if isinstance(code, int) and not 2000 <= code < 3000 and connected:
        raw._exchanging = False
    note_lost(raw, exc)
    note_error(raw, exc)


_LOST = frozenset({CR.CR_SERVER_LOST, CR.CR_SERVER_GONE_ERROR})  # 2013, 2006
_TIMEOUTS = (TimeoutError, socket.timeout, asyncio.TimeoutError)  # distinct classes before Python 3.10/3.11


def note_lost(raw: Any, exc: BaseException) -> None:
    """Remember that the server hung up on ``raw`` (end of stream, reset,
    broken pipe) rather than the client giving up on it (a read timeout):
    its session is over, there is nothing to kill (and after a restart the
    id may be another session's)."""
    if (
        error_code(exc) in _LOST
        and not isinstance(exc.__cause__ or exc.__context__, _TIMEOUTS)
        and not getattr(raw, "_shut_by_pool", False)  # interrupt()'s end of stream is ours, not the server's
    ):
        raw._hung_up = True


_UNFINISHED = "_pymysqlpool_unfinished"


def note_unfinished(raw: Any, exc: BaseException) -> None:
    """An interrupt (KeyboardInterrupt, a cancelled task: not a connect error)
    cut ``raw``'s connect after the server logged the session in: its set-up
    (init_command, configure) may still be running there, like an abandoned
    statement. The connection, closed by the caller, rides on ``exc`` for the
    pool to kill (see ``unfinished``)."""
    if not isinstance(exc, Exception) and getattr(raw, "_logged_in", False):
        exc.__dict__.setdefault(_UNFINISHED, raw)  # the innermost connect's, should several see it


def unfinished(exc: BaseException) -> Any:
    """The connection ``note_unfinished`` left on ``exc`` (taken once), or None."""
    return exc.__dict__.pop(_UNFINISHED, None)


def left_running(raw: Any) -> bool:
    """The borrower left ``raw`` in the middle of an answer and the server
    did not hang up: its statement may still be running there."""
    return mid_answer(raw) and not getattr(raw, "_hung_up", False)


def adopt(raw: Any) -> None:
    """Make a connection from a ``connection_factory`` report mid-answer
    states too: a plain PyMySQL connection becomes our subclass (which only
    adds methods); anything else at least gets the attribute."""
    if type(raw) is pymysql.connections.Connection:
        raw.__class__ = Connection
    elif not hasattr(raw, "_exchanging"):
        raw._exchanging = False


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


def connect(
    kwargs: Dict[str, Any],
    timeout: Optional[float],
    tls: Optional[TlsContexts] = None,
    cls: Type[Connection] = Connection,
) -> Connection:
    """Open a connection; no socket wait (TCP connect, handshake, set-up
    queries) lasts longer than ``timeout`` seconds.

    Without this a server that accepts TCP but never answers (a hung server,
    a black-holing firewall) would block the handshake forever: PyMySQL reads
    it with ``read_timeout``, which defaults to no limit. ``tls``: the pool's
    TLS contexts, so that PyMySQL does not build one per connection.
    """
    raw = cls.__new__(cls)
    raw._pool_tls = tls  # read by _create_ssl_ctx, which PyMySQL calls from __init__
    pymysql.connections.Connection.__init__(raw, defer_connect=True, **kwargs)
    if timeout is not None:
        raw.connect_timeout = min(raw.connect_timeout or timeout, max(timeout, 0.001))
    with _bounded(raw, timeout):
        try:
            raw.connect()  # PyMySQL closes the socket of a connect that raised
        except BaseException as exc:
            note_unfinished(raw, exc)
            raise
    raw.connect_timeout = kwargs.get("connect_timeout", 10)
    return raw


# What PyMySQL's Connection sets on each instance (its __init__, connect()
# and the handshake), beside what its class defines: the proxy forwards these
# by name (connection.forward_all). tests/server/test_basics.py checks the
# list against a connection that was used.
INSTANCE_ATTRIBUTES = (
    "_affected_rows", "_auth_plugin_map", "_auth_plugin_name", "_closed", "_connect_attrs",
    "_current_timeout", "_local_infile", "_next_seq_id", "_read_timeout", "_result", "_rfile",
    "_secure", "_sock", "_ssl_required", "_write_timeout", "autocommit_mode", "bind_address",
    "charset", "client_flag", "collation", "connect_timeout", "ctx", "cursorclass", "db",
    "decoders", "encoders", "encoding", "host", "host_info", "init_command", "max_allowed_packet",
    "password", "port", "protocol_version", "salt", "server_capabilities", "server_charset",
    "server_language", "server_public_key", "server_status", "server_thread_id", "server_version",
    "sql_mode", "ssl", "unix_socket", "use_unicode", "user",
)  # fmt: skip


STATE_CHANGED = 0x4000  # SERVER_SESSION_STATE_CHANGED (not in PyMySQL's constants)


class WriteTrackingConnection(Connection):
    """A connection that notices, without a round trip, that it committed a write.

    The session asks the server to report changes of ``last_gtid`` (and
    nothing else); the server then flags the OK packet of every statement that
    wrote a transaction to the binary log, and carries the transaction's GTID
    in it. ``gtid_hook`` (if set) gets that GTID at once, at the COMMIT, not
    when the connection is returned; ``wrote`` is set instead when no hook
    took it (a caller must then read the position itself). Every answer is
    watched: ``query``, ``next_result`` (a CALL or a multi-statement whose
    write is not the first result) and the bare OK packets of ``commit()``.
    """

    wrote = False
    sync_wait_on = False  # a session setting the borrower's pool must undo on return
    gtid_hook: Optional[Callable[[str], bool]] = None  # True if it took the GTID
    node_pool: Any = None  # a cluster node pool that opened it (its clean return is found from here)

    def query(self, sql: Any, unbuffered: bool = False) -> int:
        # Connection.query reads its answer without _read_query_result.
        affected = super().query(sql, unbuffered)
        if self.server_status & STATE_CHANGED:  # type: ignore[attr-defined]  # not in the stubs
            self._wrote(getattr(self._result, "message", None))  # type: ignore[attr-defined]
        return affected

    def _read_query_result(self, unbuffered: bool = False) -> Any:
        affected = super()._read_query_result(unbuffered)
        if self.server_status & STATE_CHANGED:  # type: ignore[attr-defined]  # not in the stubs
            self._wrote(getattr(self._result, "message", None))  # type: ignore[attr-defined]
        return affected

    def _read_ok_packet(self) -> Any:
        ok = super()._read_ok_packet()
        if self.server_status & STATE_CHANGED:  # type: ignore[attr-defined]  # not in the stubs
            self._wrote(getattr(ok, "message", None))
        return ok

    def _wrote(self, message: Optional[bytes]) -> None:
        gtid = last_gtid(message) if message else None
        hook = self.gtid_hook
        pending, self.wrote = self.wrote, True  # an interrupt inside the hook leaves the write to the return
        if gtid is not None and hook is not None and hook(gtid):
            self.wrote = pending


def _lenenc(data: bytes, at: int) -> Tuple[int, int]:
    """A length-encoded integer of the protocol at ``data[at]``: (value, next offset)."""
    first = data[at]
    if first < 0xFB:
        return first, at + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if size is None:
        raise ValueError("not a length-encoded integer")
    return int.from_bytes(data[at + 1 : at + 1 + size], "little"), at + 1 + size


def last_gtid(message: bytes) -> Optional[str]:
    """The ``last_gtid`` an OK packet's session-state block reports, else None.

    ``message`` is what PyMySQL keeps after the status and warning count: the
    info string (length-encoded) then the session-state block (length-encoded),
    a list of (type, length-encoded data); type 0 (system variable) holds a
    length-encoded name and value. Anything malformed gives None.
    """
    try:
        size, at = _lenenc(message, 0)
        at += size  # the human-readable info
        size, at = _lenenc(message, at)
        end = at + size
        while at < end:
            kind = message[at]
            size, at = _lenenc(message, at + 1)
            entry, at = message[at : at + size], at + size
            if kind == 0:
                length, pos = _lenenc(entry, 0)
                name = entry[pos : pos + length]
                length, pos = _lenenc(entry, pos + length)
                if name == b"last_gtid":
                    return entry[pos : pos + length].decode("ascii") or None
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    return None


TRACK_LAST_GTID = (
    "SET SESSION session_track_system_variables='last_gtid', session_track_schema=OFF,"
    " session_track_state_change=OFF, session_track_transaction_info=OFF"
)


def connect_tracking_writes(kwargs: Dict[str, Any], timeout: float, tls: Optional[TlsContexts] = None) -> Connection:
    """Open a :class:`WriteTrackingConnection` (as :func:`connect`).

    Where the server cannot report ``last_gtid`` (MySQL, old MariaDB) a plain
    :class:`Connection` is returned: callers treat it as "may have written".
    """
    flags = int(kwargs.get("client_flag", 0)) | CLIENT.SESSION_TRACK
    raw = connect({**kwargs, "client_flag": flags}, timeout, tls, cls=WriteTrackingConnection)
    try:
        with _bounded(raw, timeout), raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(TRACK_LAST_GTID)
    except pymysql.err.MySQLError:
        close(raw)
        return connect(kwargs, timeout, tls)
    except BaseException as exc:
        close(raw)
        note_unfinished(raw, exc)
        raise
    # The handshake's own settings (autocommit, charset) were flagged as changes.
    raw.wrote = False  # type: ignore[attr-defined]  # connect() is typed for the base class
    # On the instance, not only the class: the cluster's return reads both, and
    # CPython reads an instance's own attribute faster than a class attribute.
    raw.sync_wait_on = False  # type: ignore[attr-defined]
    return raw


def session_wait_timeout(raw: Any, timeout: Optional[float] = None) -> Optional[float]:
    """The server's idle limit for this session (``wait_timeout``), in seconds;
    the answer awaited ``timeout`` seconds at most."""
    with _bounded(raw, timeout), raw.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute("SELECT @@SESSION.wait_timeout")
        row = cur.fetchone()
    return float(row[0]) if row and row[0] else None


def session_id(raw: Any) -> int:
    """The server's id of the connection's session (from the handshake); 0 if unknown."""
    try:
        return int(raw.server_thread_id[0])
    except Exception:  # a connection_factory's object without one
        return 0


# What a side connection that only kills leaves out: the schema (it may be the
# one gone; a KILL needs none), the set-up statements, and the borrowers'
# read/write timeouts (the kill has its own bound: connect_timeout).
_NOT_FOR_KILLING = ("database", "db", "init_command", "read_timeout", "write_timeout")

KILL_STATEMENT = "KILL CONNECTION %d"
GONE_QUERY = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s"
# Pauses between GONE_QUERY looks: most sessions go at once; one that lingers
# is looked at less often, so many kills at once do not flood the server.
GONE_POLL_FIRST = 0.001
GONE_POLL_CAP = 0.05
_NO_SUCH_THREAD = 1094  # ER_NO_SUCH_THREAD: the session had ended already


def kill_kwargs(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The connect arguments of a side connection that sends a KILL."""
    return {key: value for key, value in kwargs.items() if key not in _NOT_FOR_KILLING}


def kill_refused(exc: BaseException) -> bool:
    """The server answered a KILL with an error (1095: not the owner): asking
    again cannot help. A client error (2000-2999: unreachable) can."""
    return 1000 <= error_code(exc) < 2000


def too_many_sessions(exc: BaseException) -> bool:
    """The server refused a connection for too many sessions: 1040
    (max_connections) or 1226 (the account's max_user_connections)."""
    return error_code(exc) in (ER.CON_COUNT_ERROR, 1226)


def killed_already(exc: BaseException) -> bool:
    return error_code(exc) == _NO_SUCH_THREAD


UPTIME_QUERY = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'"


def restarted_since(side: int, session: int, uptime: Any, age: float) -> bool:
    """The server the side connection reached is not the one that ran
    ``session`` (opened ``age`` seconds ago): it restarted since, or it is
    another server. Its session ids only grow, so a side connection (opened
    later) with a lower id than the session's, or a server up for less time
    than the session has existed, cannot have it: a KILL of that id would
    end someone else's session."""
    if side and side < session:
        return True
    try:
        return int(uptime) + 1 <= age  # uptime counts whole seconds
    except (TypeError, ValueError):
        return False


def kill_session(
    raw: Any, target: Tuple[int, float], timeout: float, pooled: bool = False, reach: Optional[float] = None
) -> bool:
    """KILL the session ``target`` (its id and age in seconds) over the side
    connection ``raw``, whose server answers within ``reach`` (default
    ``timeout``), then look until the server dropped it (KILL returns once
    the session is marked, MariaDB's after up to 2 s of trying to wake it).
    True once it is gone (or the server restarted since: see
    restarted_since), False if it was still listed when ``timeout`` ran out.
    ``pooled``: ``raw`` is an idle connection of the pool, maybe older than
    the session: its id proves nothing, the uptime does."""
    session, age = target
    end = time.monotonic() + timeout
    pause = GONE_POLL_FIRST
    with raw.cursor(pymysql.cursors.Cursor) as cur:
        with _bounded(raw, min(timeout, reach) if reach is not None else timeout):
            cur.execute(UPTIME_QUERY)
            row = cur.fetchone()
        side = 0 if pooled else session_id(raw)
        if restarted_since(side, session, row[0] if row else None, age):
            return True
        with _bounded(raw, end - time.monotonic()):  # the server answers; its KILL may take its time
            try:
                cur.execute(KILL_STATEMENT % session)
            except pymysql.err.MySQLError as exc:
                if killed_already(exc):
                    return True
                raise
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            with _bounded(raw, left):
                cur.execute(GONE_QUERY, (session,))
                row = cur.fetchone()
            if not row or not row[0]:
                return True
            time.sleep(min(pause, max(end - time.monotonic(), 0.0)))
            pause = min(pause * 2, GONE_POLL_CAP)


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
    # One mask compare: autocommit on and no transaction open (with the pool
    # in autocommit mode; a pool without it resets every return).
    if not autocommit or raw.server_status & _CLEAN_MASK != _AUTOCOMMIT:
        return True
    if raw._sock is None or raw._exchanging:
        return True  # broken or mid-answer: the caller's slow path drops it
    result = raw._result
    # Not bool(...): the call costs more than the branch (has_next is an int flag).
    if result is not None and (result.unbuffered_active or result.has_next):  # noqa: SIM103
        return True
    return False


def mid_answer(raw: Any) -> bool:
    """True when the borrower left in the middle of an answer: a command
    whose reply was not read to its end, or an unbuffered result not read to
    its end. Either way the stream position is the borrower's, not a packet
    boundary the pool can prove, so the connection is closed, not drained."""
    if raw._exchanging:
        return True
    result = raw._result
    return result is not None and bool(result.unbuffered_active)


def results_pending(raw: Any) -> bool:
    """Further result sets of a multi-result answer are still to be read."""
    result = raw._result
    return result is not None and bool(result.has_next)


def reset(raw: Any, autocommit: bool, timeout: Optional[float]) -> bool:
    """Bring a connection back to the pool's clean state.

    Returns True if a ROLLBACK was sent. Raises on I/O errors: the caller
    then discards the connection.
    """
    with _bounded(raw, timeout):
        return _reset(raw, autocommit)


def _reset(raw: Any, autocommit: bool) -> bool:
    # Further result sets of a multi-result answer whose first sets were read
    # in full (mid_answer() was False): the stream is at a packet boundary,
    # so reading them to the end is safe.
    while results_pending(raw):
        raw.next_result()
    rolled_back = False
    if needs_reset(raw, True):  # results drained above: an open transaction or autocommit off
        raw.rollback()
        rolled_back = True
    raw.autocommit(autocommit)
    return rolled_back


def reset_session(raw: Any, autocommit: bool, timeout: Optional[float]) -> None:
    """COM_RESET_CONNECTION, then re-apply what the reset wiped.

    The reset clears user variables, temporary tables, prepared statements and
    session settings, and restores the session character set and autocommit
    to server defaults, so charset, init_command and autocommit are applied
    again as PyMySQL does after connecting. It keeps the current database,
    so the connection's own is selected again. (The pool's ``configure``
    runs after this, in the shell.)
    """
    with _bounded(raw, timeout):
        _reset_session(raw, autocommit)


def _reset_session(raw: Any, autocommit: bool) -> None:
    raw._execute_command(_COM_RESET_CONNECTION, b"")
    raw._read_ok_packet()
    if raw.db:  # the reset keeps the current schema: a borrower's USE would stay
        raw.select_db(raw.db)
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
    if isinstance(raw, WriteTrackingConnection):
        # The reset restored the server's default session tracking: ask for last_gtid again,
        # and forget what the statements above flagged (charset, autocommit are tracked by default).
        with raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(TRACK_LAST_GTID)
        raw.wrote = False


def ping(raw: Any, timeout: Optional[float] = None) -> None:
    """COM_PING without reconnecting: a dead connection must be replaced,
    not revived. Waits at most ``timeout`` seconds for the answer."""
    with _bounded(raw, timeout):
        raw.ping(reconnect=False)


def _forget_result(raw: Any) -> None:
    # An unbuffered result left mid-way would try to read itself to the end
    # from a closed socket when garbage-collected (PyMySQL's MySQLResult.__del__).
    result = getattr(raw, "_result", None)
    if result is not None:
        result.unbuffered_active = False


def close(raw: Any) -> None:
    """Polite close (COM_QUIT); never raises."""
    _forget_result(raw)
    try:
        if not raw._closed:
            raw.close()
    except Exception:
        force_close(raw)


def force_close(raw: Any) -> None:
    """Close the socket without a word to the server; never raises."""
    _forget_result(raw)
    try:
        raw._force_close()
    except Exception:
        pass


def interrupt(raw: Any) -> None:
    """Shut the socket down under a borrower still using it: its next (or
    current) read or write fails at once. The borrower's thread still owns
    the object and closes it; never raises. The end of stream it reads is
    not the server hanging up (see note_lost): a statement the server runs
    goes on (a lock wait for its whole timeout), so it is killed on return."""
    try:
        raw._shut_by_pool = True
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
            # PyMySQL keeps the socket error as original_exception, aiomysql chains it.
            original = getattr(exc, "original_exception", None) or exc.__cause__
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


def fetch_one(raw: Any, sql: str, args: Any = None, timeout: Optional[float] = None) -> Any:
    """Run one statement and return its first row; no socket wait lasts
    longer than ``timeout`` seconds (a frozen server then fails with 2013
    and the connection is closed)."""
    with _bounded(raw, timeout), raw.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(sql, args)
        return cur.fetchone()
