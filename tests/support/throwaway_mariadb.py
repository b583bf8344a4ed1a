"""A private, disposable ``mariadbd`` for tests that stop, restart or kill a server.

The shared server on 127.0.0.1:3306 is never touched: every command starts with
``--no-defaults`` so no ``/etc/mysql`` option file (which names port 3306 and the
shared socket) is read, and each instance gets its own temp dir, port and socket.

``mariadb-install-db`` runs once per process; each instance copies that template.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import pymysql

SHARED_SERVER_PORT = 3306

# Flags given to both mariadb-install-db and mariadbd: small and quick, not durable
# against power loss (a killed *process* still keeps committed data).
_COMMON_ARGS = (
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--skip-log-bin",
    "--skip-name-resolve",
)
_SERVER_ARGS = (
    "--innodb-buffer-pool-dump-at-shutdown=0",
    "--innodb-buffer-pool-load-at-startup=0",
    "--loose-feedback=OFF",
)

_template_lock = threading.Lock()
_template_dir: Path | None = None
_live: set[ThrowawayMariaDB] = set()

# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so servers
# are spawned from one long-lived worker: they then die with this process even if
# it is killed hard and atexit never runs.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mariadbd-spawner")


def _find_binary(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin:/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        raise RuntimeError(f"{name} not found: install mariadb-server")
    return found


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
    with log.open("ab") as out:
        future = _spawner.submit(subprocess.Popen, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        return future.result(timeout=30)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<{path} unreadable>"
    return "\n".join(text.splitlines()[-lines:])


# Its own generator: hypothesis seeds the module's one during its examples.
_pick = random.SystemRandom()
_handed_out: set[int] = set()


def _ports_of_this_worker() -> range:
    """Ports below the kernel's ephemeral range, a slice of their own for each
    pytest-xdist worker: a port picked by binding port 0 comes from the
    ephemeral range, where every outgoing client socket (thousands per run,
    from any worker) may take it before mariadbd (or Galera's IST and SST
    listeners, picked up front) binds it."""
    try:
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768
    low, slices = 10000, 8
    width = max(1, (first_ephemeral - low) // slices)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % slices if worker[2:].isdigit() else 0
    return range(low + index * width, low + (index + 1) * width)


def _free_port() -> int:
    # Still racy (the port is released before mariadbd binds it), but only
    # against this worker's own servers; start() retries a first start with
    # a new port when the bind fails.
    ports = _ports_of_this_worker()
    for _ in range(100):
        port = _pick.choice(ports)
        if port == SHARED_SERVER_PORT or port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (a listener of this machine's services, or ours)
        _handed_out.add(port)  # picked up front (a Galera node's three) must differ
        return port
    raise RuntimeError(f"no free port in {ports} after 100 tries")


def _all_threads_stopped(pid: int) -> bool:
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            # The state letter follows the ")" that closes the command name.
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread just exited
        if state not in ("T", "t"):
            return False
    return True


def template_datadir() -> Path:
    """Return a datadir made by ``mariadb-install-db``, created once per process."""
    global _template_dir
    with _template_lock:
        if _template_dir is None:
            root = Path(tempfile.mkdtemp(prefix="pymysqlpool-mariadb-template-"))
            datadir = root / "data"
            log = root / "install.log"
            (root / "tmp").mkdir()
            argv = [
                _find_binary("mariadb-install-db"),
                "--no-defaults",  # must be first
                f"--datadir={datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
                # A private tmpdir: concurrent installs clash on temp table names in /tmp.
                f"--tmpdir={root / 'tmp'}",
                *_COMMON_ARGS,
            ]
            with log.open("wb") as out:
                result = subprocess.run(
                    argv,
                    check=False,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=120,
                )
            if result.returncode != 0:
                message = f"mariadb-install-db failed ({result.returncode}):\n{_tail(log)}"
                shutil.rmtree(root, ignore_errors=True)
                raise RuntimeError(message)
            _template_dir = root
        return _template_dir / "data"


class ThrowawayMariaDB:
    """A private ``mariadbd`` on 127.0.0.1 with root / empty password and a ``test`` database.

    The port stays the same across ``restart()``/``kill()``+``start()`` so clients
    and proxies can reconnect to the same address.

    MariaDB raises ``max_connections`` below 10 to 10, and root ignores
    max_user_connections (and gets one connection beyond max_connections); to run
    out of connections, use an ordinary account, e.g.
    ``CREATE USER app@'%' WITH MAX_USER_CONNECTIONS 3`` (then GRANT on ``test.*``).

    Not thread-safe: drive one instance from one thread at a time.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        extra_args: list[str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.max_connections = max_connections
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        template = template_datadir()  # before mkdtemp: nothing to clean up if it fails
        self.root = Path(tempfile.mkdtemp(prefix="pymysqlpool-mariadb-"))
        self.datadir = self.root / "data"
        self.socket_path = self.root / "mariadbd.sock"
        self.pid_file = self.root / "mariadbd.pid"
        self.error_log = self.root / "mariadbd.err"
        self.output_log = self.root / "mariadbd.out"
        self.port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False
        self._closed = False
        try:
            (self.root / "tmp").mkdir()
            shutil.copytree(template, self.datadir)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        _live.add(self)

    # -- lifecycle -----------------------------------------------------------

    def _argv(self) -> list[str]:
        return [
            _find_binary("mariadbd"),
            "--no-defaults",  # must be first: never read the shared server's config
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            f"--tmpdir={self.root / 'tmp'}",
            "--user=root",
            "--bind-address=127.0.0.1",
            f"--max-connections={self.max_connections}",
            *_COMMON_ARGS,
            *_SERVER_ARGS,
            *self.extra_args,
        ]

    def start(self) -> None:
        """Start the server and wait (bounded) until root can log in over TCP."""
        if self._closed:
            raise RuntimeError("ThrowawayMariaDB is closed")
        if self.is_running():
            return
        # Only the very first start may move to another port: later starts must
        # keep the address that clients already know.
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._start_once()
                break
            except _BindError:
                if attempt == attempts - 1:
                    raise
                self.port = _free_port()
        if not self._started_once:
            # Only once: a restarted replica must not log a transaction of its own.
            self._query("CREATE DATABASE IF NOT EXISTS test", None, database=None)
        self._started_once = True

    def _start_once(self) -> None:
        log_offset = self.error_log.stat().st_size if self.error_log.exists() else 0
        proc = _spawn(self._argv(), self.output_log)
        self._proc = proc
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                new_log = self._error_log_since(log_offset)
                if "Bind on TCP/IP port" in new_log or "Address already in use" in new_log:
                    raise _BindError(new_log)
                raise RuntimeError(f"mariadbd exited with {proc.returncode} during startup:\n{self.log_tail()}")
            try:
                # No database: `test` does not exist before the first start.
                probe = {**self._admin_kwargs(database=None), "read_timeout": 2}
                pymysql.connect(**probe).close()
                return
            except pymysql.err.MySQLError as exc:
                last_error = exc
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"mariadbd not ready after {self.startup_timeout}s (last error: {last_error}):\n{self.log_tail()}"
        )

    def _error_log_since(self, offset: int) -> str:
        try:
            with self.error_log.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Clean shutdown: SIGTERM, wait up to ``stop_timeout``, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.resume()  # a paused server would not see SIGTERM
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the server, like a crash; InnoDB recovers on the next ``start()``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: a hung server. The kernel still completes TCP handshakes, but
        nothing is answered until ``resume()``."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGSTOP)
        # Threads stop asynchronously; on a busy machine one could still answer a
        # query sent right after kill() returns, so wait until all have stopped.
        deadline = time.monotonic() + 10
        while not _all_threads_stopped(proc.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd {proc.pid} did not stop within 10s")
            time.sleep(0.01)

    def resume(self) -> None:
        """SIGCONT after ``pause()``; harmless otherwise."""
        if self.is_running() and self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def close(self) -> None:
        """Stop the server and delete its temp dir. Idempotent."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            _live.discard(self)
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayMariaDB:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- clients -------------------------------------------------------------

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` (or the pool) to reach this server."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "password": "",
            "database": "test",
        }

    def _admin_kwargs(self, database: str | None = "test") -> dict[str, Any]:
        return {
            **self.connect_kwargs(),
            "database": database,
            "connect_timeout": 2,
            "read_timeout": 30,
            "write_timeout": 30,
            "autocommit": True,
        }

    def admin_query(self, sql: str, args: Any = None) -> tuple[tuple[Any, ...], ...]:
        """Run one statement (autocommit, database ``test``) on a fresh connection; return its rows."""
        return self._query(sql, args, database="test")

    def _query(self, sql: str, args: Any, database: str | None) -> tuple[tuple[Any, ...], ...]:
        conn = pymysql.connect(**self._admin_kwargs(database))
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return tuple(cur.fetchall())
        finally:
            conn.close()

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.error_log} ---\n{_tail(self.error_log, lines)}\n" + (
            f"--- {self.output_log} ---\n{_tail(self.output_log, lines)}"
        )

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<ThrowawayMariaDB 127.0.0.1:{self.port} {state} {self.root}>"


class _BindError(RuntimeError):
    """mariadbd could not bind its port (someone took it after _free_port())."""


@atexit.register
def _cleanup() -> None:
    # Last resort when a test session forgot (or failed) to close its servers.
    for server in list(_live):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            server.close()
    if _template_dir is not None:
        shutil.rmtree(_template_dir, ignore_errors=True)
