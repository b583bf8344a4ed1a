"""Everything that touches aiomysql beyond its public API lives here: the
asyncio pool's counterpart of ``_driver.py``.

aiomysql is PyMySQL's protocol code on asyncio streams: the same packets, the
same ``server_status``, ``_result`` and cursor shapes, and it closes a
connection whose read is cancelled. So the non-blocking predicates the core
asks of a driver are PyMySQL's where the attribute is the same
(``mid_answer``, ``results_pending``, the wrong-node hook, fatal connect
errors) and written here where aiomysql keeps the fact elsewhere (its socket
is a transport). The awaitable steps (connect, ping, reset, close) are each
bounded by a timeout: aiomysql bounds only the TCP connect itself. The
packet reader takes a packet already whole in asyncio's ``StreamReader``
buffer straight from it (the private ``_buffer``, ``_exception`` and
``_paused`` that ``readexactly`` itself uses): two coroutine pairs fewer per
packet, a sixth of a query cycle's instructions.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import warnings
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Optional, Tuple, Type, TypeVar

import pymysql
import pymysql.cursors
from pymysql.connections import MAX_PACKET_LEN
from pymysql.constants import CLIENT, COMMAND, CR
from pymysql.protocol import MysqlPacket, OKPacketWrapper

try:
    import aiomysql
    import aiomysql.cursors
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("AsyncConnectionPool needs aiomysql: pip install 'pymysql-pool[asyncio]'") from exc

from . import _driver
from ._config import deferred
from ._driver import (
    GONE_POLL_CAP,
    GONE_POLL_FIRST,
    GONE_QUERY,
    KILL_STATEMENT,
    UPTIME_QUERY,
    _forget_result,
    answer_ended,
    is_broken,
    is_fatal_connect_error,
    kill_kwargs,
    kill_refused,
    killed_already,
    left_running,
    mid_answer,
    needs_reset,
    note_unfinished,
    restarted_since,
    results_pending,
    session_id,
    too_many_sessions,
    unfinished,
    watch_wrong_node,
)

__all__ = [
    "INSTANCE_ATTRIBUTES",
    "Connection",
    "abandon",
    "connect",
    "drop_unfinished",
    "force_close",
    "interrupt",
    "is_broken",
    "is_fatal_connect_error",
    "kill_kwargs",
    "kill_refused",
    "kill_session",
    "left_running",
    "make_probe",
    "mid_answer",
    "needs_reset",
    "open_cursor",
    "results_pending",
    "session_id",
    "too_many_sessions",
    "unfinished",
    "watch_wrong_node",
]

T = TypeVar("T")
_COM_RESET_CONNECTION = 0x1F
# aiomysql's own methods, unbound: called directly, cheaper than through super().
_aio_read_packet = aiomysql.Connection._read_packet
_aio_read_bytes = aiomysql.Connection._read_bytes
_aio_execute_command = aiomysql.Connection._execute_command
_aio_read_query_result = aiomysql.Connection._read_query_result
_aio_read_ok_packet = aiomysql.Connection._read_ok_packet
_COM_QUERY = COMMAND.COM_QUERY
_LONG_PACKET = 4 + MAX_PACKET_LEN  # a packet this long continues in the next one


# What aiomysql's Connection sets on each instance beside what its class
# defines: the asyncio proxy forwards these by name (connection.forward_all).
# tests/server/test_async_pool.py checks the list against a used connection.
INSTANCE_ATTRIBUTES = (
    "_affected_rows", "_auth_plugin_used", "_charset", "_client_auth_plugin", "_close_reason",
    "_collation", "_connect_attrs", "_db", "_echo", "_encoding", "_host", "_last_usage",
    "_local_infile", "_loop", "_next_seq_id", "_password", "_port", "_read_timeout", "_reader",
    "_result", "_secure", "_server_auth_plugin", "_ssl_context", "_unix_socket", "_user",
    "_writer", "autocommit_mode", "client_flag", "connect_timeout", "connected_time", "cursorclass",
    "decoders", "encoders", "host_info", "init_command", "protocol_version", "salt",
    "server_capabilities", "server_charset", "server_language", "server_public_key",
    "server_status", "server_thread_id", "server_version", "sql_mode", "use_unicode",
)  # fmt: skip


class Connection(aiomysql.Connection):  # type: ignore[misc]  # aiomysql ships no type hints
    """An aiomysql connection that knows whether it stopped in the middle of
    an answer (see ``_driver.Connection``: the same mark, set when a command
    is sent and cleared when its answer was read to the end or ended with the
    server's error packet)."""

    # aiomysql's stream writer (None once closed) as a slot of this class:
    # aiomysql's own assignments land in it (a data descriptor of the class
    # comes before the instance dict), and _sock, PyMySQL's name for "the
    # connection is open" that the pool's PyMySQL rules (is_broken,
    # needs_reset) read on every return, is the same slot under a second
    # name (set below the class): a read as fast as a plain attribute's,
    # ~600 instructions less than a property's.
    if not TYPE_CHECKING:  # mypy sees aiomysql's class as Any, so not its __dict__
        __slots__ = ("_writer",)
    _sock: Any

    _exchanging = False
    _hung_up = False  # the server ended the connection (see _driver.note_lost)
    _shut_by_pool = False  # the pool cut it under the borrower (see interrupt)
    _logged_in = False  # the server made the session ours (see _driver.note_unfinished)
    wrong_node_hook: Optional[Callable[[], Any]] = None
    _collation: Optional[str] = None
    sql_mode: Optional[str]
    init_command: Optional[str]
    autocommit_mode: Optional[bool]

    def __init__(self, *, collation: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._collation = collation

    async def _connect(self) -> None:
        # aiomysql pastes sql_mode into SET unquoted ("A,B" and "" fail with
        # 1064) and knows no collation: its part of the set-up is hidden from
        # it and run here in PyMySQL's order and quoting.
        sql_mode, init_command, autocommit = self.sql_mode, self.init_command, self.autocommit_mode
        self.sql_mode = self.init_command = self.autocommit_mode = None
        try:
            await super()._connect()
        finally:
            self.sql_mode, self.init_command, self.autocommit_mode = sql_mode, init_command, autocommit
        if self._collation is not None:
            await self.set_charset(self._charset)
        if sql_mode is not None:
            await self.query("SET sql_mode=" + self.escape(sql_mode))
        if init_command is not None:
            await self.query(init_command)
            await self.commit()
        if autocommit is not None:
            await self.autocommit(autocommit)

    def __del__(self) -> None:
        # aiomysql's own would raise from a half-made connection (no _writer)
        # or one whose event loop is closed ("Exception ignored" noise).
        if getattr(self, "_writer", None) is not None:
            force_close(self)

    async def _request_authentication(self) -> None:
        await super()._request_authentication()
        self._logged_in = True

    async def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        # A packet already whole in the stream's buffer is taken from it
        # without awaiting: aiomysql's reader would await two coroutine pairs
        # (header, body) that do not suspend either, so no cancellation and no
        # read timeout can land in a read served here. Anything else -- a
        # packet still arriving, an error packet, a wrong sequence number, a
        # stream error or end, a packet of 16 MiB or more -- goes through
        # aiomysql's reader, which handles each.
        reader = self._reader
        if reader is not None and reader._exception is None:
            buf = reader._buffer
            have = len(buf)
            if have > 4:
                end = 4 + (buf[0] | buf[1] << 8 | buf[2] << 16)
                seq: int = self._next_seq_id  # type: ignore[has-type]  # aiomysql is untyped
                if 4 < end <= have and end < _LONG_PACKET and buf[3] == seq and buf[4] != 0xFF:
                    data = bytes(memoryview(buf)[4:end])
                    del buf[:end]
                    if reader._paused:  # what readexactly does after taking bytes
                        reader._maybe_resume_transport()
                    self._next_seq_id = (seq + 1) & 0xFF
                    return packet_type(data, self._encoding)
        return await _aio_read_packet(self, packet_type)

    # PyMySQL's read_timeout, which aiomysql lacks: no read waits longer.
    _read_timeout: Optional[float] = None

    async def _read_bytes(self, num_bytes: int) -> bytes:
        limit = self._read_timeout
        if limit is None:
            return await _aio_read_bytes(self, num_bytes)  # type: ignore[no-any-return]
        try:
            return await bounded(_aio_read_bytes(self, num_bytes), limit)
        except asyncio.TimeoutError as exc:
            force_close(self)  # the answer is cut: never reusable
            raise pymysql.err.OperationalError(
                CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query (read_timeout={limit:g} s)"
            ) from exc

    async def _execute_command(self, command: int, sql: Any) -> None:
        result = self._result
        if result is not None and (result.has_next or result.unbuffered_active):
            await self._read_leftovers(result)  # see _driver.Connection._read_leftovers
        self._exchanging = True
        await _aio_execute_command(self, command, sql)

    async def query(self, sql: Any, unbuffered: bool = False) -> int:
        # aiomysql's query() with the answer read by aiomysql's own reader
        # called directly (as _driver.Connection.query does): one coroutine
        # and a super() less per statement. The mid-answer mark is set by our
        # _execute_command and cleared here, as _read_query_result does.
        if isinstance(sql, str):
            sql = sql.encode(self.encoding, "surrogateescape")
        await self._execute_command(_COM_QUERY, sql)
        try:
            await _aio_read_query_result(self, unbuffered)
        except pymysql.err.MySQLError as exc:
            answer_ended(self, exc, self._writer is not None)
            raise
        self._exchanging = False
        return self._affected_rows  # type: ignore[no-any-return]

    async def _read_leftovers(self, result: Any) -> None:
        if result.unbuffered_active:
            warnings.warn("Previous unbuffered result was left incomplete", UserWarning, stacklevel=3)
            await result._finish_unbuffered_query()
        while self._result.has_next:
            await self.next_result()

    async def next_result(self) -> Any:
        self._exchanging = True
        return await super().next_result()

    async def _read_query_result(self, unbuffered: bool = False) -> None:
        try:
            await _aio_read_query_result(self, unbuffered)
        except pymysql.err.MySQLError as exc:
            answer_ended(self, exc, self._writer is not None)
            raise
        self._exchanging = False

    async def _read_ok_packet(self) -> Any:
        try:
            ok = await _aio_read_ok_packet(self)
        except pymysql.err.MySQLError as exc:
            answer_ended(self, exc, self._writer is not None)
            raise
        self._exchanging = False
        return ok

    # Commands aiomysql reads by hand rather than through the above.
    async def show_warnings(self) -> Any:
        rows = await super().show_warnings()
        self._exchanging = False
        return rows

    async def set_charset(self, charset: str) -> None:
        collation = self._collation
        if collation is None:
            await super().set_charset(charset)
        else:  # PyMySQL's set_character_set (the name was checked at construction)
            await self.query(f"SET NAMES {charset} COLLATE {collation}")
            self._charset = charset
            self._encoding = pymysql.charset.charset_by_name(charset).encoding
        self._exchanging = False


Connection._sock = Connection.__dict__["_writer"]


class WriteTrackingConnection(Connection):
    """``_driver.WriteTrackingConnection`` on aiomysql: the server reports
    ``last_gtid`` in the OK packet of every statement that wrote; ``gtid_hook``
    takes it at the COMMIT, else ``wrote`` is left for the return to read."""

    wrote = False
    sync_wait_on = False
    gtid_hook: Optional[Callable[[str], bool]] = None
    node_pool: Any = None  # a cluster node pool that opened it (its clean return is found from here)
    _wrote = _driver.WriteTrackingConnection._wrote

    async def query(self, sql: Any, unbuffered: bool = False) -> int:
        # Connection.query reads its answer without _read_query_result.
        affected = await super().query(sql, unbuffered)
        if self.server_status & _driver.STATE_CHANGED:
            self._wrote(getattr(self._result, "message", None))
        return affected

    async def _read_query_result(self, unbuffered: bool = False) -> None:
        await super()._read_query_result(unbuffered)
        if self.server_status & _driver.STATE_CHANGED:
            self._wrote(getattr(self._result, "message", None))

    async def _read_ok_packet(self) -> Any:
        # aiomysql's own, which drops the packet: its session-state block is needed here.
        try:
            pkt = await self._read_packet()
            if not pkt.is_ok_packet():
                raise pymysql.err.OperationalError(CR.CR_COMMANDS_OUT_OF_SYNC, "Command Out of Sync")
        except pymysql.err.MySQLError as exc:
            answer_ended(self, exc, self._writer is not None)
            raise
        ok = OKPacketWrapper(pkt)
        self.server_status = ok.server_status
        self._exchanging = False
        if self.server_status & _driver.STATE_CHANGED:
            self._wrote(ok.message)
        return True


async def connect_tracking_writes(kwargs: Dict[str, Any], timeout: float) -> Connection:
    """Open a :class:`WriteTrackingConnection` (as :func:`connect`); a plain
    :class:`Connection` where the server cannot report ``last_gtid``."""
    flags = int(kwargs.get("client_flag", 0)) | CLIENT.SESSION_TRACK
    raw = await connect({**kwargs, "client_flag": flags}, timeout, WriteTrackingConnection)
    try:
        await bounded(_execute(raw, _driver.TRACK_LAST_GTID), timeout)
    except pymysql.err.MySQLError:
        await close(raw, timeout)
        return await connect(kwargs, timeout)
    except BaseException as exc:
        drop_unfinished(raw, exc)
        raise
    raw.wrote = False  # the handshake's own settings were flagged as changes
    # On the instance, not only the class: the cluster's return reads both, and
    # CPython reads an instance's own attribute faster than a class attribute.
    raw.sync_wait_on = False
    return raw


# -- cursors: bound to one borrow ---------------------------------------------


class _Bound:
    """Cursor mix-in: once its borrow was given back, a cursor fails with
    ``ConnectionReturnedError`` instead of running statements in the next
    borrower's session (every aiomysql cursor method that talks to the
    server goes through ``_get_db``). Closing such a cursor just lets go:
    the pool already reset or closed its connection."""

    _borrow: Any = None
    _connection: Any

    def _get_db(self) -> Any:
        borrow = self._borrow
        if borrow is not None and borrow.lent_raw is None:
            return borrow.raw  # given back: the proxy's raw raises ConnectionReturnedError
        connection = self._connection  # aiomysql's own _get_db, inline: it runs on every read
        if not connection:
            raise pymysql.err.ProgrammingError("Cursor closed")
        return connection

    async def close(self) -> None:
        borrow = self._borrow
        conn = self._connection
        if (borrow is not None and borrow.lent_raw is None) or (conn is not None and conn._writer is None):
            # Returned, or closed under it (aiomysql closes a connection whose
            # read was cancelled): nothing left to read, nothing to drain.
            self._connection = None
            return
        await super().close()  # type: ignore[misc]

    def let_go(self) -> None:
        """Close without reading the rest of the answer: the connection is
        left mid-answer, and the pool closes it (``closed_unread``)."""
        self._connection = None


class Cursor(_Bound, aiomysql.cursors.Cursor):  # type: ignore[misc]
    async def close(self) -> None:
        # _Bound.close and aiomysql's in one frame: this runs once per query.
        conn = self._connection
        if conn is None:
            return
        borrow = self._borrow
        try:
            if (borrow is None or borrow.lent_raw is not None) and conn._writer is not None:
                while await self.nextset():
                    pass
        finally:
            self._connection = None


class DictCursor(_Bound, aiomysql.cursors.DictCursor):  # type: ignore[misc]
    pass


class SSCursor(_Bound, aiomysql.cursors.SSCursor):  # type: ignore[misc]
    pass


class SSDictCursor(_Bound, aiomysql.cursors.SSDictCursor):  # type: ignore[misc]
    pass


# PyMySQL's classes (what the thread pool takes) and aiomysql's own map to ours.
CURSOR_MAP: Dict[Any, Any] = {
    None: Cursor,
    pymysql.cursors.Cursor: Cursor,
    pymysql.cursors.DictCursor: DictCursor,
    pymysql.cursors.SSCursor: SSCursor,
    pymysql.cursors.SSDictCursor: SSDictCursor,
    aiomysql.cursors.Cursor: Cursor,
    aiomysql.cursors.DictCursor: DictCursor,
    aiomysql.cursors.SSCursor: SSCursor,
    aiomysql.cursors.SSDictCursor: SSDictCursor,
}


def open_cursor(raw: Any, cls: Any, borrow: Any) -> Any:
    """A cursor of our bound class for ``cls`` (None: the connection's
    ``cursorclass``) on ``raw``, tied to the proxy ``borrow``."""
    cur = cursor_class(cls or raw.cursorclass)(raw, raw._echo)
    cur._borrow = borrow
    return cur


def cursor_class(cls: Any) -> Any:
    """Our bound class for ``cls``: an application's own aiomysql cursor
    class gets the same guards, as a subclass made once."""
    mapped = CURSOR_MAP.get(cls) if isinstance(cls, type) or cls is None else None
    if mapped is not None:
        return mapped
    if not (isinstance(cls, type) and issubclass(cls, aiomysql.cursors.Cursor)):
        raise TypeError(f"cursorclass must be an aiomysql or PyMySQL cursor class, got {cls!r}")
    if issubclass(cls, _Bound):
        return cls
    bound = CURSOR_MAP[cls] = type(cls.__name__, (_Bound, cls), {"__module__": cls.__module__})
    return bound


# -- non-blocking facts (the core's driver interface) ---------------------------


def make_probe(raw: Any) -> Optional[Callable[[int], Any]]:
    """Has the server hung up (KILL, restart, wait_timeout)? The event loop
    reads the socket as data arrives, so the stream already knows: no syscall."""
    reader = raw._reader
    if reader is None:
        return None

    def probe(timeout: int = 0) -> bool:
        # StreamReader.at_eof()/exception() read these two; asked on every
        # lend and return. Both operands are bools: no bool() call.
        ended: bool = reader._eof or reader._exception is not None
        return ended

    return probe


def force_close(raw: Any) -> None:
    """Drop the connection without a word to the server; never raises."""
    _forget_result(raw)
    writer = getattr(raw, "_writer", None)
    raw._writer = raw._reader = None
    if writer is not None:
        _abort(writer.transport, raw._loop)


def interrupt(raw: Any) -> None:
    """Cut the connection under a borrower still using it: its current or
    next read fails at once (not the server hanging up: see
    _driver.interrupt). Never raises."""
    raw._shut_by_pool = True
    writer = raw._writer
    if writer is not None:
        _abort(writer.transport, raw._loop)


def _abort(transport: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close a transport's socket now; never raises. A transport closes its
    socket through its loop: once that loop is closed (its asyncio.run()
    ended) the socket is closed here, or the server keeps the session until
    garbage collection."""
    try:
        transport.abort()
    except RuntimeError:  # "Event loop is closed"
        pass
    if loop.is_closed():
        sock = transport.get_extra_info("socket")
        try:
            getattr(sock, "_sock", sock).close()  # asyncio's TransportSocket wraps the real socket
        except Exception:  # uvloop's cannot be closed: its loop's own clean-up closes it
            pass


def abandon(raw: Any) -> None:
    """Forget a connection (the asyncio pool does not survive fork: the
    child's event loop is not the parent's)."""
    force_close(raw)


# -- awaitable steps ------------------------------------------------------------


async def bounded(step: Awaitable[T], seconds: Optional[float]) -> T:
    """Await ``step`` for at most ``seconds`` (TimeoutError after)."""
    if seconds is None:
        return await step
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(max(seconds, 0.001)):
            return await step
    return await asyncio.wait_for(step, max(seconds, 0.001))  # pragma: no cover - Python < 3.11


# PyMySQL's connect() names that aiomysql spells differently.
_RENAMED = {"database": "db", "passwd": "password"}
# PyMySQL connect() arguments aiomysql has no counterpart for: accepted only
# at the value that means "off" in PyMySQL (None, False, an empty map).
_UNSUPPORTED = frozenset(
    {
        "auth_plugin_map",
        "bind_address",
        "max_allowed_packet",
        "binary_prefix",
        "compress",
        "named_pipe",
        "ssl_ca",
        "ssl_cert",
        "ssl_key",
        "ssl_key_password",
        "ssl_verify_cert",
        "ssl_verify_identity",
        "client_flag_overrides",
    }
)
# PyMySQL's None for these means its default; aiomysql would use None itself.
_NONE_IS_DEFAULT = frozenset({"port", "conv", "collation"})


def driver_kwargs(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """PyMySQL-style connect arguments (what both pools take) as aiomysql's;
    ``TypeError`` naming an argument aiomysql cannot honour."""
    out: Dict[str, Any] = {}
    tls_off = bool(kwargs.get("ssl_disabled"))
    for key, value in kwargs.items():
        if deferred(value) and key != "cursorclass":  # checked when called, at each connect
            out[_RENAMED.get(key, key)] = value
            continue
        if key in _UNSUPPORTED:
            if value is None or value is False or (isinstance(value, dict) and not value):
                continue
            raise TypeError(
                f"AsyncConnectionPool: {key!r} is not supported by the aiomysql driver"
                " (pass ssl=<ssl.SSLContext> for TLS; statement timeouts: asyncio.timeout())"
            )
        if value is None and key in _NONE_IS_DEFAULT:
            continue
        if key == "ssl_disabled" or (key == "ssl" and tls_off):
            continue
        if key == "ssl" and value is not None and not isinstance(value, ssl.SSLContext):
            raise TypeError(f"AsyncConnectionPool: ssl must be an ssl.SSLContext (or None), got {type(value).__name__}")
        if key == "cursorclass":
            value = cursor_class(value)
        out[_RENAMED.get(key, key)] = value
    return out


async def connect(kwargs: Dict[str, Any], timeout: float, cls: Type[Connection] = Connection) -> Connection:
    """Open a connection; the whole handshake (TCP, greeting, authentication,
    set-up queries) ends within ``timeout`` seconds (else ``connect_timed_out``)."""
    kwargs = dict(kwargs)
    read_timeout = kwargs.pop("read_timeout", None)
    kwargs.pop("write_timeout", None)  # asyncio buffers writes: a write never blocks
    raw = cls(**kwargs)
    try:
        await bounded(raw._connect(), timeout)
    except asyncio.TimeoutError as exc:
        force_close(raw)
        raise connect_timed_out(raw, "handshake", timeout) from exc
    except BaseException as exc:
        drop_unfinished(raw, exc)
        raise
    raw._read_timeout = read_timeout
    return raw


def drop_unfinished(raw: Any, exc: BaseException) -> None:
    """A connect that ``exc`` cut: drop the connection; if an interrupt cut
    it after the server logged the session in, leave it on ``exc`` for the
    pool to kill (``_driver.note_unfinished``)."""
    force_close(raw)
    note_unfinished(raw, exc)


def connect_timed_out(raw: Any, step: str, timeout: float) -> pymysql.err.OperationalError:
    """A connect that ran out of time, at whichever step: the error aiomysql
    raises for a refused connect (2003), naming the server."""
    where = raw.unix_socket or f"{raw.host}:{raw.port}"
    return pymysql.err.OperationalError(
        CR.CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on {where!r} ({step} not done within {timeout:.3g} s)"
    )


async def _execute(raw: Any, statement: str, args: Any = None) -> Any:
    """Run one statement on a plain cursor; its first row."""
    cur = aiomysql.cursors.Cursor(raw)
    try:
        await cur.execute(statement, args)
        return await cur.fetchone()
    finally:
        await cur.close()


async def fetch_one(raw: Any, sql: str, args: Any = None, timeout: Optional[float] = None) -> Any:
    """Run one statement and return its first row within ``timeout`` seconds;
    after that the connection is dropped and 2013 raised (``_driver.fetch_one``)."""
    try:
        return await bounded(_execute(raw, sql, args), timeout)
    except asyncio.TimeoutError as exc:
        force_close(raw)  # the answer is cut: never reusable
        raise pymysql.err.OperationalError(
            CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query (no answer within {timeout:.3g} s)"
        ) from exc


async def fetch_all(raw: Any, sql: str, as_dicts: bool = False) -> Any:
    """Run one statement; every row (as dicts with ``as_dicts``)."""
    cur = (aiomysql.cursors.DictCursor if as_dicts else aiomysql.cursors.Cursor)(raw)
    try:
        await cur.execute(sql)
        return await cur.fetchall()
    finally:
        await cur.close()


async def session_wait_timeout(raw: Any) -> Optional[float]:
    """The server's idle limit for this session (``wait_timeout``), in seconds."""
    row = await _execute(raw, "SELECT @@SESSION.wait_timeout")
    return float(row[0]) if row and row[0] else None


async def ping(raw: Any, timeout: Optional[float]) -> None:
    """COM_PING without reconnecting (aiomysql's default would redial)."""
    await bounded(raw.ping(reconnect=False), timeout)


async def reset(raw: Any, autocommit: bool, timeout: Optional[float]) -> bool:
    """Bring a connection back to the pool's clean state; True if a ROLLBACK
    was sent. Raises on I/O errors: the caller then closes it."""
    return await bounded(_reset(raw, autocommit), timeout)


async def _reset(raw: Any, autocommit: bool) -> bool:
    while results_pending(raw):  # further result sets of a fully read first one
        await raw.next_result()
    rolled_back = False
    if needs_reset(raw, True):  # results drained above: an open transaction or autocommit off
        await raw.rollback()
        rolled_back = True
    # Sent unless the server already reports the pool's mode (no round trip then).
    raw.autocommit_mode = autocommit
    if raw.get_autocommit() != autocommit:
        await raw._send_autocommit_mode()
    return rolled_back


async def reset_session(raw: Any, autocommit: bool, timeout: Optional[float]) -> None:
    """COM_RESET_CONNECTION, then re-apply what it wiped (character set,
    sql_mode, init_command, autocommit)."""
    await bounded(_reset_session(raw, autocommit), timeout)


async def _reset_session(raw: Any, autocommit: bool) -> None:
    await raw._execute_command(_COM_RESET_CONNECTION, b"")
    await raw._read_ok_packet()
    if raw.db:  # the reset keeps the current schema: a borrower's USE would stay
        await raw.select_db(raw.db)
    await raw.set_charset(raw.charset)
    if raw.sql_mode is not None:
        await _execute(raw, "SET sql_mode=%s", (raw.sql_mode,))
    if raw.init_command is not None:
        await _execute(raw, raw.init_command)
    if raw.server_status & 1:  # init_command opened a transaction
        await raw.commit()
    raw.autocommit_mode = autocommit
    await raw._send_autocommit_mode()
    if isinstance(raw, WriteTrackingConnection):
        # The reset restored the server's default session tracking: ask for last_gtid again.
        await _execute(raw, _driver.TRACK_LAST_GTID)
        raw.wrote = False


async def kill_session(
    raw: Any, target: Tuple[int, float], pooled: bool = False, reach: Optional[float] = None
) -> bool:
    """KILL the session ``target`` (id, age in seconds) over the side
    connection ``raw``, whose server answers within ``reach`` seconds (None:
    unbounded), and look until the server dropped it (the caller bounds the
    whole: a server that answers may take its time over the KILL, see
    _config.KILL_WATCH); True once it is gone or the server restarted since
    (see ``_driver.restarted_since``; ``pooled`` as in ``_driver.kill_session``)."""
    session, age = target
    row = await bounded(_execute(raw, UPTIME_QUERY), reach)
    if restarted_since(0 if pooled else session_id(raw), session, row[0] if row else None, age):
        return True
    try:
        await _execute(raw, KILL_STATEMENT % session)
    except pymysql.err.MySQLError as exc:
        if killed_already(exc):
            return True
        raise
    pause = GONE_POLL_FIRST
    while True:
        row = await _execute(raw, GONE_QUERY, (session,))
        if not row or not row[0]:
            return True
        await asyncio.sleep(pause)
        pause = min(pause * 2, GONE_POLL_CAP)


async def close(raw: Any, timeout: Optional[float]) -> None:
    """Polite close (COM_QUIT) within ``timeout``; never raises."""
    _forget_result(raw)
    try:
        await bounded(raw.ensure_closed(), timeout)
    except Exception:
        force_close(raw)
