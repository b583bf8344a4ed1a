"""The asyncio pool behind the thread pool's blocking API, so that one
behaviour test runs against both shells.

``BlockingAsyncPool(**kwargs)`` makes an :class:`AsyncConnectionPool` on an
event loop of its own (one thread running ``loop.run_forever``) and carries
every call over to that loop, waiting for its result: the test thread sees
``get_conn()``, ``release()``, ``with pool.connection() as conn``, cursors with
``execute``/``fetchall``, exactly as with ``ConnectionPool``. Many test threads
may call at once; the pool itself only ever runs on its loop, as in an
asyncio program. The constructor opens the pool as ``async with`` would, so a
bad configuration raises there, as the thread pool's constructor does.

Only the tests' view is blocking: the pool, its waiters, its maintenance and
every cancellation are the asyncio pool's own.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, Optional

from pymysqlpool import AsyncConnectionPool

# A borrow may wait for its timeout plus a connect; no single call of the
# facade may outlast this (a hang fails the test instead of freezing it).
_CALL_LIMIT = 90.0


class BlockingAsyncPool:
    shell = "asyncio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="blocking-async-pool", daemon=True)
        self._thread.start()
        # Proxies lent and not given back: a late borrower still uses the loop
        # after close(timeout) stopped counting its connection.
        self._lent = 0
        try:
            self._pool = self._call(self._make(args, kwargs))
        except BaseException:
            self._stop_loop()
            raise

    async def _make(self, args: Any, kwargs: Any) -> AsyncConnectionPool:
        pool = AsyncConnectionPool(*args, **kwargs)
        if kwargs.get("open", True):
            await pool.__aenter__()
        return pool

    def _call(self, step: Any) -> Any:
        if threading.current_thread() is self._thread:
            # Called from the pool's own loop (an event hook): an asyncio
            # program would schedule the step, not wait for it.
            self._loop.create_task(_awaited(step))
            return None
        return asyncio.run_coroutine_threadsafe(_awaited(step), self._loop).result(_CALL_LIMIT)

    def tasks_named(self, name: str) -> list[asyncio.Task[Any]]:
        """The pool loop's live tasks called ``name`` (its maintenance)."""

        async def find() -> list[asyncio.Task[Any]]:
            return [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]

        return list(self._call(find()))

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    # -- the thread pool's API ------------------------------------------------

    def get_conn(self, timeout: Optional[float] = None) -> BlockingConnection:
        conn = BlockingConnection(self, self._call(self._pool.get_conn(timeout)))
        self._lent += 1
        return conn

    connection = get_conn

    def release(self, conn: Any, failed: bool = False) -> None:
        self._call(self._pool.release(conn._conn if isinstance(conn, BlockingConnection) else conn, failed))
        self._lent -= 1
        if not self._pool._open and not self._lent and self._pool.closed:
            self._stop_loop()  # the last late borrower gave its proxy back

    def close(self, timeout: Optional[float] = None) -> int:
        if self._loop.is_closed():
            return 0
        try:
            forced: int = self._call(self._pool.close(timeout))
        finally:
            if not self._pool._open and not self._lent:
                self._stop_loop()
        return forced

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        self._call(self._pool.open(wait, timeout))

    def wait(self, timeout: float = 30.0) -> None:
        self._call(self._pool.wait(timeout))

    def get_connection(self, retry_num: int = 3, retry_interval: float = 0.1, pre_ping: bool = False) -> Any:
        return BlockingConnection(self, self._call(self._pool.get_connection(retry_num, retry_interval, pre_ping)))

    def drain(self) -> int:
        return int(self._call(self._pool.drain()) or 0)

    def resize(self, maxsize: Optional[int] = None, size: Optional[int] = None) -> None:
        self._call(self._pool.resize(maxsize, size))

    def check(self) -> int:
        return int(self._call(self._pool.check()))

    def __enter__(self) -> BlockingAsyncPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Properties, stats, events and the private books the tests look at.
        return getattr(self._pool, name)

    def __repr__(self) -> str:
        return f"<BlockingAsyncPool {self._pool!r}>"


class BlockingAsyncClusterPool(BlockingAsyncPool):
    """:class:`AsyncClusterPool` behind :class:`ClusterPool`'s blocking API
    (opened as ``async with`` would open it)."""

    async def _make(self, args: Any, kwargs: Any) -> Any:
        from pymysqlpool import AsyncClusterPool

        pool = AsyncClusterPool(*args, **kwargs)
        await pool.open()
        return pool

    def _call(self, step: Any) -> Any:
        """As the base class; an interrupt of the waiting thread (Ctrl-C)
        cancels the awaited step, as ``asyncio.run`` cancels its task, and
        returns once the step has finished its cleanup."""
        if threading.current_thread() is self._thread:
            return super()._call(step)
        finished = threading.Event()

        async def run() -> Any:
            try:
                return await _awaited(step)
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return future.result(_CALL_LIMIT)
        except BaseException:
            if not future.done():
                future.cancel()
                finished.wait(_CALL_LIMIT)
            raise

    def get_conn(  # type: ignore[override]
        self, read_only: bool = False, causal: Optional[bool] = None, timeout: Optional[float] = None
    ) -> BlockingConnection:
        return BlockingConnection(self, self._call(self._pool.get_conn(read_only, causal, timeout)))

    connection = get_conn  # type: ignore[assignment]

    def release(self, conn: Any, failed: bool = False) -> None:
        # No count of lent proxies here: the cluster's close() ends the loop itself.
        self._call(self._pool.release(conn._conn if isinstance(conn, BlockingConnection) else conn, failed))

    def close(self, timeout: Optional[float] = None) -> int:
        if self._loop.is_closed():
            return 0
        try:
            self._call(self._pool.close())
        finally:
            self._stop_loop()
        return 0

    def wait_ready(self, timeout: float = 10.0, read_only: bool = False) -> bool:
        return bool(self._call(self._pool.wait_ready(timeout, read_only)))

    def wait_probed(self, timeout: float = 10.0) -> bool:
        return bool(self._call(self._pool.wait_probed(timeout)))

    def run(self, step: Any) -> Any:
        """Await ``step`` (a coroutine) on the cluster's loop: async-only tests."""
        return self._call(step)


class BlockingConnection:
    """A borrowed connection, its awaitables waited for."""

    def __init__(self, owner: BlockingAsyncPool, conn: Any) -> None:
        self._owner = owner
        self._conn = conn

    @property
    def pool(self) -> BlockingAsyncPool:
        return self._owner

    def cursor(self, cursor: Any = None) -> BlockingCursor:
        return BlockingCursor(self._owner, self._conn.cursor(cursor)._cursor)

    def close(self) -> None:
        self._owner.release(self)

    def __enter__(self) -> BlockingConnection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._conn.returned:
            self._owner.release(self, exc is not None)

    def ping(self, reconnect: bool = False) -> None:
        self._owner._call(self._conn.ping())

    def query(self, sql: Any, unbuffered: bool = False) -> Any:
        return self._owner._call(self._conn.raw.query(sql, unbuffered))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._conn, name)
        if inspect.iscoroutinefunction(value) or (callable(value) and inspect.ismethod(value)):
            return lambda *a, **k: self._owner._call(_awaited(value(*a, **k)))
        return value

    def __repr__(self) -> str:
        return f"<BlockingConnection {self._conn!r}>"


class BlockingCursor:
    def __init__(self, owner: BlockingAsyncPool, cursor: Any) -> None:
        self._owner = owner
        self._cursor = cursor

    def __enter__(self) -> BlockingCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Any:
        return iter(self.fetchall())

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cursor, name)
        if callable(value):
            return lambda *a, **k: self._owner._call(_awaited(value(*a, **k)))
        return value


async def _awaited(value: Any) -> Any:
    """``value`` itself, or what it gives when awaited (aiomysql's buffered
    fetches return done futures, its unbuffered ones coroutines)."""
    while inspect.isawaitable(value):
        value = await value
    return value
