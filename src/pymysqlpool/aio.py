"""AsyncConnectionPool: the pool for asyncio.

The same core as the thread pool (``_core.py``: slots, counts, the FIFO of
waiters and every decision), driven from one event loop: no lock (the core
gets a no-op one), a waiter is a future, every request of a core plan is
awaited, and maintenance is a task of the loop, not a thread. Needs the
optional extra ``pymysqlpool[asyncio]`` (aiomysql).

Cancellation is an interrupt like KeyboardInterrupt in the thread pool: it
is thrown into the plan at the ``await`` it lands on, and the plan gives up
what it holds without awaiting anything -- a waiter leaves the queue or
passes its grant on, a half-reset or half-read connection is closed, a dial
in flight gives its right to dial back.
"""

# What is still twin with pool.py, and why. Shared once elsewhere: every
# decision and the books (_core.py), close(timeout)/wait() (_closing.py),
# the reset decision (_returning.reset_plan), on_timeout (_borrowing.borrow_plan),
# the constructor's parameters (_options.py), the maintenance loop
# (_maintenance.rounds), the warm-up rule (_warmup), the proxy base and
# its refusal of a foreign object (connection.Borrowed).
# - _run: the same send/throw loop over a plan, but each request is awaited
#   here and blocks there; one generic runner would cost an extra call per
#   request, and a blocking step cannot be awaited nor an awaitable blocked on.
# - _connect/_dial/_set_up, _kill_session, _check_alive: the drivers differ
#   (aiomysql vs PyMySQL: connection_factory, the TLS contexts and socket
#   timeouts are the thread pool's; check=/configure= may be coroutines here).
# - _spawn, _kill_done, _drop_stranded_kills: a kill is a thread there, a task
#   of the pool's loop here, and only a task can be stranded by its loop's end.
# - close(): a pool bound to a loop may be closed on another one once its loop
#   ended (asyncio.run(pool.close())); threads have no such case.
# - _prefill, _ensure_maintenance, _leaked: threads vs tasks to start
#   (_warmup.run/run_tasks, Maintenance/TaskMaintenance), and a dropped proxy
#   is reclaimed on the pool's loop (the collector may run in any thread).
# - the public methods (get_conn, release, check, drain, resize, open, wait,
#   __aenter__...): the same one-line calls into the core, awaited here; the
#   thread pool's get_conn/release are the core's functions themselves (one
#   frame on the hot path), which a coroutine function cannot be.
# - the proxies' methods (commit, rollback, cursor...): awaitables here.

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Awaitable, Dict, List, NoReturn, Optional, Tuple, Type, Union, cast

from . import _adriver, _closing, _options, _warmup
from ._config import build, describe, resolve
from ._core import NoLock, PoolCore
from ._lifecycle import POOL_PENDING
from ._maintenance import TaskMaintenance
from ._plans import CHECK, CLOSE, DIAL, KILL, PING, RESET, SLEEP, WAIT, Plan
from ._slot import HELD, Slot
from ._validators import count, seconds
from ._waiting import Waiter
from .connection import PROXY_TYPES, Borrowed, forward_all, lend
from .errors import DriverError, WrongEventLoop, connect_failed

__all__ = ["AsyncConnectionPool", "AsyncPooledConnection"]

logger = logging.getLogger("pymysqlpool")

_running_loop = asyncio.get_running_loop
_FOREVER = 1e9  # seconds: longer waits need no timer
_ASYNC_POOL_IN_WITH = (
    "AsyncConnectionPool is the asyncio pool: use 'async with', not 'with'"
    " (for threads, pymysqlpool.ConnectionPool takes 'with')"
)


class TaskWaiter(Waiter):
    """A waiter that is a task awaiting a future of its own."""

    __slots__ = ("_future",)

    def __init__(self, since: float) -> None:
        self._future: asyncio.Future[bool] = _running_loop().create_future()
        super().__init__(since, self._woken)

    def _woken(self) -> None:
        future = self._future
        # Cancelled or timed out meanwhile: the grant is recorded anyway. On a
        # closed loop (close() from another loop) no task will ever run again.
        if not future.done() and not future.get_loop().is_closed():
            future.set_result(True)

    async def wait(self, timeout: float) -> bool:
        """Until woken (True) or ``timeout`` seconds passed (False)."""
        future = self._future
        if future.done():
            return True
        if timeout >= _FOREVER:
            return await future
        timer = _running_loop().call_later(max(timeout, 0.0), _expire, future)
        try:
            return await future
        finally:
            timer.cancel()


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class AsyncConnectionPool(PoolCore):
    """An asyncio pool of aiomysql connections with the thread pool's rules.

    Takes the thread pool's arguments (``maxsize``, ``pre_create_num``,
    ``timeout``, ``con_lifetime``, ``validation_interval``, ...) and
    PyMySQL-style connect arguments (``host``, ``user``, ``password``,
    ``database``, ...). It binds to the event loop that first uses it; using
    it from another loop raises :class:`~pymysqlpool.errors.WrongEventLoop`.
    ``async with pool:`` opens it (``pre_create_num`` connections made, the
    first connect error raised) and closes it; without that, the first
    borrow opens it (``open=False``: only :meth:`open` does).
    """

    _drv = _adriver
    _waiter = TaskWaiter
    _proxy: Type[Any]  # AsyncPooledConnection, set below its definition
    _probe_free = True  # the loop has read a hang-up already: every return looks

    @_options.takes(_options.options)
    def __init__(self, opts: _options.Options) -> None:
        built = opts.build
        if built["connection_factory"] is not None:
            raise TypeError(
                "AsyncConnectionPool() takes no connection_factory (the thread pool's): subclass it and override _dial"
            )
        cursorclass = built["connect_kwargs"].pop("cursorclass", None)
        config = build(**built, kind=type(self).__name__)
        kwargs = {**config.connect_kwargs, "cursorclass": _adriver.cursor_class(cursorclass)}
        _adriver.driver_kwargs(kwargs)  # what aiomysql cannot take is refused now, not at every connect
        config = dataclasses.replace(config, connect_kwargs=kwargs)
        super().__init__(config, NoLock(), **opts.core)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # Kills in flight, referenced until done, each with its side connection
        # once open: a loop that ends strands them (see _drop_stranded_kills).
        self._kills: Dict[asyncio.Task[Any], Any] = {}

    # -- the event loop -----------------------------------------------------

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called when used from ``loop`` and that is not the pool's loop:
        adopt it (first use), else refuse at once."""
        if self._loop is None:
            self._loop = loop
            if self._state == POOL_PENDING:  # made with open=True: opens on first use
                self._start()
                self._ensure_maintenance()
            return
        raise WrongEventLoop(
            f"pool {self.name!r} runs on another event loop than this one; an asyncio pool (its connections"
            " and waiters) belongs to one loop: make one pool per loop"
        )

    async def _run(self, plan: Plan) -> Any:
        """Carry out a plan of the core, awaiting each request; its result."""
        reply: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                if error is None:
                    op, a, b = plan.send(reply)
                else:
                    op, a, b = plan.throw(error)
            except StopIteration as done:
                return done.value
            error = None
            reply = None
            try:
                if op == WAIT:
                    reply = await a.wait(b)
                elif op == CLOSE:
                    await _adriver.close(a, self._config.io_timeout)
                elif op == RESET:
                    if b:
                        await _adriver.reset_session(a, self._autocommit, self._config.io_timeout)
                        await self._configure(a)  # the session reset wiped what it set
                    else:
                        reply = await _adriver.reset(a, self._autocommit, self._config.io_timeout)
                elif op == CHECK:
                    await self._check_alive(a, b)
                elif op == PING:
                    await _adriver.ping(a, b)
                elif op == DIAL:
                    reply = await self._connect(a)
                elif op == SLEEP:
                    await asyncio.sleep(a)
                elif op == KILL:
                    reply = await self._kill_session(a, b)
            except BaseException as exc:  # cancellation too: the plan gives up what it holds
                error = exc

    def _spawn(self, plan: Plan) -> bool:
        """Run the kill of an abandoned session as a task of the pool's loop:
        the cancelled borrower does not wait for it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            # The pool's loop ended: close() awaited on a new loop runs the
            # kill there (and waits for it); no loop at all, no kill.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                plan.close()
                return False
        task = loop.create_task(self._run(plan), name=f"pymysqlpool-kill-{self.name}")
        self._kills[task] = None
        task.add_done_callback(self._kill_done)
        return True

    def _kill_done(self, task: asyncio.Task[Any]) -> None:
        self._kills.pop(task, None)

    def _drop_stranded_kills(self) -> None:
        """Let go of the kills whose loop ended under them (its asyncio.run()
        returned): their tasks never run again, yet each holds its side
        connection -- a session on the server until garbage collection. The
        socket is closed here, then the coroutine, so nothing is left to await.
        The slots stay KILLING, for the caller to kill again (_renew_kills)."""
        for task, side in list(self._kills.items()):
            if task.done() or not task.get_loop().is_closed():
                continue
            del self._kills[task]
            if side is not None:
                _adriver.force_close(side)
            task._log_destroy_pending = False  # type: ignore[attr-defined]  # let go on purpose
            try:
                task.get_coro().close()  # its clean-up finds the socket closed: it awaits nothing
            except RuntimeError:  # a clean-up that awaited regardless; the socket is closed
                pass

    async def _kill_session(self, target: Tuple[Any, ...], limit: float) -> bool:
        """KILL a session (id, age) from a short-lived side connection, or
        over the idle pooled connection ``target[2]``, all of it within ``limit``."""
        session = target[:2]
        reach = min(limit, self._config.kill_timeout)  # the KILL answered by then; the rest watches the session go
        if len(target) == 3:
            return await _adriver.bounded(_adriver.kill_session(target[2], session, True, reach), limit)
        loop = _running_loop()
        end = loop.time() + limit
        reached_by = loop.time() + reach
        kwargs = _adriver.kill_kwargs(resolve(self._config.connect_kwargs))
        raw = await _adriver.connect(kwargs, reach)
        task = asyncio.current_task()
        if task in self._kills:
            self._kills[task] = raw
        try:
            kill = _adriver.kill_session(raw, session, reach=reached_by - loop.time())
            return await _adriver.bounded(kill, end - loop.time())
        finally:
            if task in self._kills:
                self._kills[task] = None
            await _adriver.close(raw, max(end - loop.time(), 0.0))

    async def _connect(self, limit: float) -> Any:
        """Open one connection; the whole of it (handshake, configure, the
        wait_timeout read) ends within ``limit`` seconds."""
        cfg = self._config
        loop = _running_loop()
        end = loop.time() + limit
        raw = await self._dial(_adriver.driver_kwargs(resolve(cfg.connect_kwargs, check=True)), limit)
        try:
            keepalive = await _adriver.bounded(self._set_up(raw), end - loop.time())
        except asyncio.TimeoutError as exc:
            _adriver.force_close(raw)
            raise _adriver.connect_timed_out(raw, "set-up", limit) from exc
        except BaseException as exc:
            _adriver.drop_unfinished(raw, exc)
            raise
        return raw, keepalive

    async def _dial(self, kwargs: Dict[str, Any], limit: float) -> Any:
        """The driver's connect (a subclass may open another connection class)."""
        return await _adriver.connect(kwargs, limit)

    async def _configure(self, raw: Any) -> None:
        """The pool's ``configure`` on a new or session-reset connection."""
        configure = self._config.configure
        if configure is not None:
            await _maybe_await(configure(raw))
            if raw.server_status & 1:  # configure() left a transaction open
                await raw.commit()

    async def _set_up(self, raw: Any) -> float:
        cfg = self._config
        await self._configure(raw)
        keepalive = cfg.keepalive_interval
        if keepalive:
            server_idle = await _adriver.session_wait_timeout(raw)
            if server_idle:
                keepalive = min(keepalive, server_idle / 2.0)
        return keepalive

    async def _check_alive(self, raw: Any, budget: Optional[float]) -> None:
        check = self._config.check
        if check is None:
            await _adriver.ping(raw, self._config.io_timeout if budget is None else budget)
        elif await _maybe_await(check(raw)) is False:
            raise ValueError("check() returned False")

    # -- borrowing ----------------------------------------------------------

    async def get_conn(self, timeout: Optional[float] = None) -> AsyncPooledConnection:
        """Borrow a connection, waiting up to ``timeout`` seconds (default: the
        pool's ``timeout``) when all ``maxsize`` are in use; ``PoolTimeout``
        after that. See :meth:`connection` for the ``async with`` form."""
        if _running_loop() is not self._loop:
            self._bind(_running_loop())
        got = self._get_conn(timeout)
        if type(got) in PROXY_TYPES:  # lent at once (the class chosen by Borrowed.proxy_for)
            conn: AsyncPooledConnection = got
            return conn
        return await cast("Awaitable[AsyncPooledConnection]", got)

    async def get_connection(
        self, retry_num: int = 3, retry_interval: float = 0.1, pre_ping: bool = False
    ) -> AsyncPooledConnection:
        """The thread pool's 0.5.0-style borrow: wait up to ``retry_num *
        retry_interval`` seconds; ``pre_ping=True`` validates whatever the idle time."""
        self._bind_here()
        retries = min(count("retry_num", retry_num, owner=self.name), 10)
        interval = seconds("retry_interval", retry_interval, self.name)
        return await self._acquire(retries * interval if retries else 0.0, pre_ping)

    def connection(self, timeout: Optional[float] = None) -> _Borrowing:
        """``async with pool.connection() as conn:`` -- the connection goes
        back when the block ends (rolled back if it raised)."""
        return _Borrowing(self, timeout)

    @asynccontextmanager
    async def transaction(self, timeout: Optional[float] = None) -> AsyncIterator[AsyncPooledConnection]:
        """``async with pool.transaction() as conn:`` -- BEGIN; COMMIT when the
        block ends, ROLLBACK if it raised or was cancelled (``pool.connection()``
        never commits: with ``autocommit=False`` its work is rolled back on return)."""
        async with _Borrowing(self, timeout) as conn:
            await conn.begin()
            yield conn
            await conn.commit()

    async def _acquire(self, timeout: Optional[float], force_check: bool) -> AsyncPooledConnection:
        if timeout is not None:  # as a float: an int beyond any float (10**400) is forever, as inf
            timeout = seconds("timeout", timeout, self.name)
        if self._reclaim:
            await self._run(self._reclaim_plan())
        return await self._borrow(None, timeout, force_check)

    async def _borrow(self, first: Optional[Slot], timeout: Optional[float], force: bool) -> AsyncPooledConnection:
        slot: Optional[Slot] = None
        try:
            slot = await self._run(self._borrow_plan(first, timeout, force))
            assert slot is not None
            conn: AsyncPooledConnection = lend(self, slot)
            return conn
        except DriverError as exc:  # the connect failed: say where, without the plan machinery
            raise connect_failed(exc, self.name, describe(self._config)) from exc
        except BaseException:
            if slot is not None:
                self._abandon(slot)
            raise

    # A seam for a caller that bound the pool to its running loop already
    # (AsyncClusterPool's common case): the core's borrow itself, without
    # get_conn's coroutine -- a connection, or an awaitable of one.
    if TYPE_CHECKING:

        def lend_or_wait(self) -> Union[AsyncPooledConnection, Awaitable[AsyncPooledConnection]]:
            """``get_conn()`` on the pool's own loop: the connection, or what to await for it."""

    else:
        lend_or_wait = PoolCore._get_conn

    # -- returning ----------------------------------------------------------

    async def release(self, conn: AsyncPooledConnection, failed: bool = False) -> None:
        """Give a borrowed connection back: rolled back and autocommit restored
        if needed (nothing sent on a clean return), closed if it is broken or
        was left in the middle of an answer. ``ReturnConnectionToPoolError``
        if it was returned already or is not this pool's."""
        if _running_loop() is not self._loop:
            if type(conn) not in PROXY_TYPES or conn._pool is not self:
                raise AsyncPooledConnection.refusal(self, conn)  # before binding: a stranger's object binds nothing
            self._bind(_running_loop())
        # _give_back checks conn itself: every read through a proxy costs (its
        # __getattr__ keeps CPython 3.11 from specializing the read).
        pending = self._give_back(conn, failed)
        if pending is not None:
            await pending

    async def _return_slow(self, slot: Slot, failed: bool) -> None:
        try:
            await self._run(self._return_plan(slot, failed))
        except BaseException:
            # Cancelled (or failed) while the pool held it: its session state is unknown.
            if slot.state == HELD:
                self._kill(slot, "closed_broken")
            raise

    # -- control ------------------------------------------------------------

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Start lending; connections are opened in the background.
        ``wait=True`` then waits like :meth:`wait`. A closed pool cannot be
        opened again."""
        self._bind_here()
        self._start()
        self._ensure_maintenance()
        if wait:
            await self.wait(timeout)

    async def wait(self, timeout: float = 30.0) -> None:
        """Until ``pre_create_num`` connections are open; ``PoolTimeout``
        (naming the last connect error) after ``timeout`` seconds."""
        self._bind_here()
        await self._run(_closing.wait_plan(self, seconds("timeout", timeout, self.name)))

    def _bind_here(self) -> None:
        loop = _running_loop()
        if loop is not self._loop:
            self._bind(loop)

    async def check(self) -> int:
        """Validate every idle connection now; returns how many were closed."""
        self._bind_here()
        closed: int = await self._run(self._check_plan())
        return closed

    async def drain(self) -> int:
        """Replace every connection without failing a borrower (see the
        thread pool's ``drain``); returns how many were marked."""
        self._bind_here()
        marked: int = await self._run(self._drain_plan())
        return marked

    async def resize(self, maxsize: Optional[int] = None, size: Optional[int] = None) -> None:
        """Change ``maxsize`` and/or ``size`` while running."""
        self._bind_here()
        await self._run(self._resize_plan(maxsize, size))

    async def close(self, timeout: Optional[float] = None) -> int:
        """Stop lending, fail the waiters, close idle connections now and
        borrowed ones when they come back. With ``timeout``, wait that long
        for borrowed ones, then cut them; returns how many were cut. Waits for
        the kills of sessions abandoned mid-answer still in flight (each ends
        within ``connect_timeout``).

        Once the pool's event loop is closed, ``close()`` may be awaited on
        any loop (``asyncio.run(pool.close())``): every session ends at once,
        borrowed ones too (they are counted as cut)."""
        grace = None if timeout is None else seconds("timeout", timeout, self.name)
        ended = self._loop is not None and self._loop.is_closed()
        if self._loop is not None and not ended:
            self._bind_here()
        shut = self._shut()
        if shut is not None:
            idle, upkeep = shut
            self._life.stopped = upkeep
            try:
                if upkeep is not None and not ended:
                    await upkeep.stop()
            finally:
                await self._run(self._dispose_all_plan(idle, "closed_on_pool_close"))
        elif self._life.stopped is not None and not ended:
            await self._life.stopped.stop()  # an earlier close() was cancelled before it ended
        await self._run(self._reclaim_plan())
        if ended:
            # The pool's loop is gone (its asyncio.run() ended): nothing lent
            # can come back, so every session ends now, its socket closed here
            # (the pool's closes need no loop of their own then). Kills in
            # flight when that loop ended were cancelled or stranded with it,
            # their statements running on: kill them again from here.
            self._drop_stranded_kills()
            for slot in self._renew_kills():
                self._start_kill(slot)
            grace = 0.0
        # Waits for the kills in flight (a loop that ends would cancel them).
        cut: int = await self._run(_closing.close_plan(self, grace))
        return cut

    def __enter__(self) -> NoReturn:
        raise TypeError(_ASYNC_POOL_IN_WITH)

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover - __enter__ raised
        pass

    async def __aenter__(self) -> AsyncConnectionPool:
        """Open the pool and make ``pre_create_num`` connections; the first
        connect error is raised (and the pool closed)."""
        loop = _running_loop()
        if self._loop is None:
            self._loop = loop  # bound without the lazy start: opened here, warm first
        elif loop is not self._loop:
            self._bind(loop)
        if self._start():
            try:
                await self._prefill()
            except BaseException as exc:
                await self.close()
                if isinstance(exc, DriverError):  # as a borrow's: where, without the plan machinery
                    raise connect_failed(exc, self.name, describe(self._config)) from exc
                raise
        self._ensure_maintenance()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    # -- background work ----------------------------------------------------

    async def _prefill(self) -> None:
        made: List[Slot] = []
        dials = [0, 0]  # started, abandoned
        books = NoLock()
        try:
            await _warmup.run_tasks(
                lambda: self._run(self._prefill_plan(books, dials, made)),
                min(self._config.pre_create_num, _warmup.MAX_AT_ONCE),
            )
            for slot in made:
                if not self._book_idle(slot):
                    await self._run(self._dispose_plan(slot, "closed_on_pool_close"))
        except BaseException:
            dials[1] = 1
            for slot in made:
                self._kill(slot, "closed_on_pool_close")
            raise

    def _leaked(self, slot: Slot) -> None:
        """A proxy was collected while borrowed: its slot is reclaimed on the
        pool's loop (the collector may run in any thread, and a transport is
        closed only by its loop)."""
        self._reclaim.append(slot)
        loop = self._loop
        if self._maintenance is not None:
            self._maintenance.wake()
        elif loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._reclaim_now)

    def _ensure_maintenance(self) -> None:
        if self._maintenance is None and not self._closed and self._loop is not None:
            self._maintenance = TaskMaintenance(self, self._loop)

    # -- Public seam: what the cluster and the integrations may use ---------
    # (with PoolCore's block; documented in docs/integrations.md)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Belong to ``loop`` from now on, without opening (``start`` does);
        ``WrongEventLoop`` if the pool already belongs to another loop."""
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            self._bind(loop)

    async def prefill(self) -> None:
        """Open ``pre_create_num`` connections now, as ``async with`` does;
        the first connect error is raised (the connections opened so far are
        closed). Call after :meth:`bind` and :meth:`start`."""
        await self._prefill()

    def start_maintenance(self) -> None:
        """Start the background upkeep (warm-up, keep-alive, refill) on the
        pool's loop unless it runs already, the pool is closed or not bound."""
        self._ensure_maintenance()


async def _maybe_await(value: Any) -> Any:
    """``configure``/``check`` may be plain functions or coroutine functions."""
    if inspect.isawaitable(value):
        return await value
    return value


class _Borrowing:
    """What ``pool.connection()`` returns: an async context manager."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: AsyncConnectionPool, timeout: Optional[float]) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Optional[AsyncPooledConnection] = None

    async def __aenter__(self) -> AsyncPooledConnection:
        self._conn = await self._pool.get_conn(self._timeout)
        return self._conn

    def __enter__(self) -> NoReturn:
        raise TypeError(_ASYNC_POOL_IN_WITH)

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover - __enter__ raised
        pass

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn._raw is not None:
            await self._pool.release(conn, exc is not None)


class _CursorContext:
    """``conn.cursor()``: awaitable (``cur = await conn.cursor()``) and an
    async context manager that closes the cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __await__(self) -> Any:
        return _ready(self._cursor).__await__()

    async def __aenter__(self) -> Any:
        return self._cursor

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], *exc: Any) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            # Cancelled (or interrupted): draining the answer would await the
            # server inside the cancellation, and may replace it with an error.
            self._cursor.let_go()
            return
        await self._cursor.close()


async def _ready(value: Any) -> Any:
    return value


class AsyncPooledConnection(Borrowed):
    """A borrowed aiomysql connection. Give it back with ``await
    pool.release(conn)``, ``await conn.close()`` or by leaving ``async with
    pool.connection()``/``async with conn``. After that every use raises
    ``ConnectionReturnedError`` -- its cursors' too."""

    __slots__ = ()
    _pool: AsyncConnectionPool

    @property
    def pool(self) -> AsyncConnectionPool:
        return self._pool

    async def close(self) -> None:
        """Give the connection back to its pool (the connection stays open)."""
        await self._pool.release(self)

    async def __aenter__(self) -> AsyncPooledConnection:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._raw is not None:
            await self._pool.release(self, exc is not None)

    def cursor(self, cursor: Any = None) -> _CursorContext:
        """A cursor tied to this borrow (``async with conn.cursor() as cur``
        or ``cur = await conn.cursor()``)."""
        raw = self.raw
        cls = _adriver.cursor_class(cursor or raw.cursorclass)
        cur = cls(raw, raw._echo)
        cur._borrow = self
        return _CursorContext(cur)

    async def commit(self) -> None:
        await self.raw.commit()

    async def rollback(self) -> None:
        await self.raw.rollback()

    async def begin(self) -> None:
        await self.raw.begin()

    async def autocommit(self, value: bool) -> None:
        await self.raw.autocommit(value)

    def get_autocommit(self) -> bool:
        return bool(self.raw.get_autocommit())

    async def select_db(self, db: str) -> None:
        await self.raw.select_db(db)

    async def ping(self) -> None:
        """Check the server answers (never reconnects: a dead connection is
        closed on return and replaced)."""
        await self.raw.ping(reconnect=False)


forward_all(
    AsyncPooledConnection, (_adriver.Connection, _adriver.WriteTrackingConnection), _adriver.INSTANCE_ATTRIBUTES
)
AsyncConnectionPool._proxy = AsyncPooledConnection
