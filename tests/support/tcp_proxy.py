"""A loopback TCP proxy that can simulate network faults between a client and a server.

Every accepted connection gets one daemon thread that owns both of its sockets
and shuttles bytes with non-blocking I/O and a short ``select`` timeout. Control
calls (``blackhole``, ``cut_all``, ...) set flags and then wait, bounded, until
every connection thread has seen them, so they are in force when they return.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import struct
import threading
import time
from types import TracebackType

_POLL = 0.05  # seconds between checks of the control flags
_CHUNK = 65536
_MAX_BUFFERED = 1 << 20  # stop reading a side whose peer is this far behind
_JOIN_TIMEOUT = 5.0


def _abort(sock: socket.socket | None) -> None:
    """Close with SO_LINGER 0 so the peer gets a RST, not a FIN."""
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Conn:
    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.server: socket.socket | None = None
        self.cut = threading.Event()
        self.done = threading.Event()
        # Held by the connection thread around each batch of socket I/O, so that a
        # control call can wait for an in-progress batch to finish.
        self.io_lock = threading.Lock()
        self.thread: threading.Thread | None = None


class TCPProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``, with fault switches.

    Modes (``heal()`` ends all of them):

    * ``blackhole()``: nothing is forwarded in either direction. Existing
      connections stay open; new connections are accepted but never answered
      (not even connected upstream). Bytes sent meanwhile wait in socket buffers.
    * ``refuse()``: the port stops listening, so connects get ECONNREFUSED. The
      port stays reserved and ``heal()`` listens on the same port again.
    * ``cut_all()`` is a one-shot: every current connection is reset (RST) on
      both sides; new connections are then forwarded as usual.

    By default ``heal()`` resumes black-holed connections where they stopped,
    like a healed network partition: buffered bytes are delivered, and
    connections accepted during the blackhole are connected upstream then (a
    client that has given up meanwhile just causes a short-lived server
    connection). ``heal(drop_stalled=True)`` resets them instead.
    """

    def __init__(
        self,
        *,
        target_host: str = "127.0.0.1",
        target_port: int,
        connect_timeout: float = 5.0,
    ) -> None:
        if not ipaddress.ip_address(target_host).is_loopback:
            raise ValueError(f"TCPProxy only forwards to loopback addresses, not {target_host}")
        self.target = (target_host, target_port)
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._accepted = 0
        self._blackholed = False
        self._refused = False
        self._closed = False
        self._listener = self._bind(0)
        self.port: int = self._listener.getsockname()[1]
        self._listener.listen(128)
        self._accept_stop = threading.Event()
        self._accept_thread = self._start_accepting()

    # -- public API ------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def accepted(self) -> int:
        """Connections accepted since creation (including black-holed ones)."""
        with self._lock:
            return self._accepted

    @property
    def active(self) -> int:
        """Connections currently open through the proxy."""
        with self._lock:
            return len(self._conns)

    def blackhole(self) -> None:
        with self._lock:
            self._blackholed = True
            conns = list(self._conns)
        self._quiesce(conns)

    def cut_all(self) -> None:
        """Reset every current connection on both sides (SO_LINGER 0 -> RST)."""
        with self._lock:
            conns = list(self._conns)
        self._cut(conns)

    def refuse(self) -> None:
        with self._lock:
            if self._refused or self._closed:
                return
            self._refused = True
        self._stop_accepting()
        # A listening socket cannot share its port, so close it first, then hold
        # the port with a bound but non-listening socket: connects are refused
        # and nobody else can take the port before heal().
        self._listener.close()
        self._listener = self._bind(self.port)

    def heal(self, *, drop_stalled: bool = False) -> None:
        """Forward normally again; see the class docstring for black-holed connections."""
        with self._lock:
            if self._closed:
                return
            stalled = list(self._conns) if self._blackholed else []
        if drop_stalled:
            self._cut(stalled)
        with self._lock:
            self._blackholed = False
            relisten = self._refused
            self._refused = False
        if relisten:
            self._listener.listen(128)
            self._accept_stop = threading.Event()
            self._accept_thread = self._start_accepting()

    def close(self) -> None:
        """Stop listening, reset all connections and join the threads (bounded)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
        self._stop_accepting()
        self._listener.close()
        self._cut(conns)

    def __enter__(self) -> TCPProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TCPProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]}>"

    # -- internals -------------------------------------------------------------

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def _start_accepting(self) -> threading.Thread:
        thread = threading.Thread(
            target=self._accept_loop,
            args=(self._listener, self._accept_stop),
            name=f"tcp-proxy-{self.port}-accept",
            daemon=True,
        )
        thread.start()
        return thread

    def _stop_accepting(self) -> None:
        self._accept_stop.set()
        self._accept_thread.join(_JOIN_TIMEOUT)

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        listener.settimeout(_POLL)  # so `stop` is noticed promptly
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:  # TimeoutError only from 3.10 on
                continue
            except OSError:
                return
            conn = _Conn(client)
            with self._lock:
                if self._closed:
                    _abort(client)
                    return
                self._accepted += 1
                self._conns.add(conn)
            conn.thread = threading.Thread(
                target=self._serve,
                args=(conn,),
                name=f"tcp-proxy-{self.port}-conn",
                daemon=True,
            )
            conn.thread.start()

    def _quiesce(self, conns: list[_Conn]) -> None:
        # Taking each io_lock once waits out any batch of I/O that started before
        # the flag was set; later batches see the flag.
        for conn in conns:
            if conn.io_lock.acquire(timeout=_JOIN_TIMEOUT):
                conn.io_lock.release()

    def _cut(self, conns: list[_Conn]) -> None:
        for conn in conns:
            conn.cut.set()
        deadline = time.monotonic() + self.connect_timeout + _JOIN_TIMEOUT
        for conn in conns:
            conn.done.wait(max(0.0, deadline - time.monotonic()))

    def _serve(self, conn: _Conn) -> None:
        try:
            self._hold_while_blackholed(conn)
            if conn.cut.is_set():
                return
            conn.server = socket.create_connection(self.target, timeout=self.connect_timeout)
            self._pump(conn, conn.client, conn.server)
        except OSError:
            # Upstream refused, or a peer reset/vanished: reset the other side too.
            return
        finally:
            # No-ops for sockets that _pump already closed gracefully.
            _abort(conn.client)
            _abort(conn.server)
            with self._lock:
                self._conns.discard(conn)
            conn.done.set()

    def _is_blackholed(self) -> bool:
        with self._lock:
            return self._blackholed

    def _hold_while_blackholed(self, conn: _Conn) -> None:
        while self._is_blackholed() and not conn.cut.is_set():
            conn.cut.wait(_POLL)

    def _pump(self, conn: _Conn, client: socket.socket, server: socket.socket) -> None:
        client.setblocking(False)
        server.setblocking(False)
        # For each source socket: its peer, bytes waiting for the peer, EOF seen.
        peer = {client: server, server: client}
        pending: dict[socket.socket, bytearray] = {client: bytearray(), server: bytearray()}
        eof: dict[socket.socket, bool] = {client: False, server: False}
        shut_wr: dict[socket.socket, bool] = {client: False, server: False}
        while True:
            if conn.cut.is_set():
                return
            if self._is_blackholed():
                conn.cut.wait(_POLL)
                continue
            readable = [s for s in (client, server) if not eof[s] and len(pending[s]) < _MAX_BUFFERED]
            writable = [peer[s] for s in (client, server) if pending[s]]
            if not readable and not writable:
                # Both sides sent FIN and everything was delivered.
                client.close()
                server.close()
                return
            r, w, _ = select.select(readable, writable, [], _POLL)
            with conn.io_lock:
                # Re-check: blackhole()/cut_all() may have been called during select.
                if conn.cut.is_set() or self._is_blackholed():
                    continue
                for src in r:
                    try:
                        data = src.recv(_CHUNK)
                    except BlockingIOError:
                        continue
                    if data:
                        pending[src] += data
                    else:
                        eof[src] = True
                for dst in w:
                    buf = pending[peer[dst]]
                    try:
                        sent = dst.send(buf)
                    except BlockingIOError:
                        continue
                    del buf[:sent]
                # Pass a FIN on once everything before it was delivered.
                for src in (client, server):
                    dst = peer[src]
                    if eof[src] and not pending[src] and not shut_wr[dst]:
                        dst.shutdown(socket.SHUT_WR)
                        shut_wr[dst] = True
