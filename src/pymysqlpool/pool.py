"""ConnectionPool: the pool for threads.

A thin shell around the core (``_core.py``), which keeps the books and makes
every decision: this module does the blocking work the core asks for
(connect, ping, reset, close, wait) and holds the one lock that guards the
core's state. Nothing that waits on the network runs with it held: a borrower
reserves a slot under the lock and dials outside it, so the count of
connections can never pass ``maxsize`` and a slow connect never blocks other
borrowers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, List, Optional, Tuple, Type, cast

from . import _closing, _driver, _forking, _options, _urls, _warmup
from ._config import build, describe, resolve
from ._core import PoolCore
from ._driving import Driver
from ._maintenance import Maintenance
from ._plans import CHECK, CLOSE, DIAL, KILL, PING, RESET, SLEEP, WAIT, Plan
from ._slot import Slot
from ._validators import count, seconds
from ._waiting import ThreadWaiter
from .connection import THREAD_POOL_IN_ASYNC_WITH, PooledConnection, lend
from .errors import DriverError, connect_failed

__all__ = ["ConnectionPool"]

_monotonic = time.monotonic


_FROM_URL_KEYS = _urls.CONNECT_QUERY_KEYS | _urls.POOL_QUERY_KEYS | set(_urls.SOCKET_KEYS)


class ConnectionPool(PoolCore):
    """A thread-safe pool of PyMySQL connections.

    ``size``, ``maxsize``, ``name``, ``pre_create_num``, ``con_lifetime`` and
    ``autocommit`` keep their pymysql-pool 0.5.0 meaning and position; every
    other keyword is passed to ``pymysql.connect()``. See the parameter
    reference in ``docs/parameters.md``.
    """

    # A cast: _driver's __all__ exports Connection only, so mypy cannot match
    # the module to the Driver protocol (tests/fast/test_driving.py checks it).
    _drv = cast(Driver, _driver)
    _waiter = ThreadWaiter
    _proxy = PooledConnection

    @_options.takes(_options.options)
    def __init__(self, opts: _options.Options) -> None:
        config = build(**opts.build, kind=type(self).__name__)
        super().__init__(config, threading.Lock(), **opts.core)
        _forking.register(self, type(self)._after_fork_in_child)
        if opts.core["open"]:
            self._start()
            try:
                self._prefill()
            except DriverError as exc:  # as a borrow's: where, without the plan machinery
                raise connect_failed(exc, self.name, describe(config)) from exc

    @classmethod
    def from_url(cls, url: str, **pool_kwargs: Any) -> ConnectionPool:
        """A pool for ``mysql://user:password@host:port/db?charset=utf8mb4&maxsize=10``.

        The query holds connection and pool keywords (others are refused);
        ``pool_kwargs`` override what the URL gives. One host (a cluster URL
        goes to ``ClusterPool``); ``?socket=/path`` names a Unix socket."""
        parsed = _urls.parse(url, query_keys=_FROM_URL_KEYS, what="pool URL")
        if len(parsed.hosts) > 1:
            raise ValueError("pool URL names several hosts: use ClusterPool for a cluster")
        kwargs = parsed.connect_kwargs()
        if parsed.hosts:
            kwargs["host"], kwargs["port"] = parsed.hosts[0]
        return cls(**{**kwargs, **pool_kwargs})

    # -- running the core's plans -------------------------------------------

    def _run(self, plan: Plan) -> Any:
        """Carry out a plan of the core, blocking on each request; its result."""
        reply: Any = None
        error: Optional[BaseException] = None
        try:
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
                        reply = a.wait(b)
                    elif op == CLOSE:
                        _driver.close(a)
                    elif op == RESET:
                        if b:
                            _driver.reset_session(a, self._autocommit, self._config.io_timeout)
                            self._configure(a)  # the session reset wiped what it set
                        else:
                            reply = _driver.reset(a, self._autocommit, self._config.io_timeout)
                    elif op == CHECK:
                        self._check_alive(a, b)
                    elif op == PING:
                        _driver.ping(a, b)
                    elif op == DIAL:
                        reply = self._connect(a)
                    elif op == SLEEP:
                        time.sleep(a)
                    elif op == KILL:
                        reply = self._kill_session(a, b)
                except BaseException as exc:  # an interrupt too: the plan gives up what it holds
                    error = exc
        except BaseException:
            # An interrupt between two steps: close the plan here, outside the
            # lock. Left suspended, it would be finalized by the garbage
            # collector in whatever thread allocates next -- possibly one
            # holding the pool lock, which the plan's clean-up takes: a
            # deadlock (seen once in the asynchronous-exception storm test).
            plan.close()
            raise

    def _spawn(self, plan: Plan) -> bool:
        """Run the kill of an abandoned session in a thread of its own: the
        borrower that abandoned it does not wait, and kills in flight (at
        most one per slot) do not queue behind each other."""
        threading.Thread(target=self._run, args=(plan,), name=f"pymysqlpool-kill-{self.name}", daemon=True).start()
        return True

    def _kill_session(self, target: Tuple[Any, ...], limit: float) -> bool:
        """KILL a session (id, age) from a short-lived side connection, or
        over the idle pooled connection ``target[2]``, all of it within ``limit``."""
        session = target[:2]
        cfg = self._config
        reach = min(limit, cfg.kill_timeout)  # the KILL answered by then; the rest watches the session go
        if len(target) == 3:
            return _driver.kill_session(target[2], session, limit, pooled=True, reach=reach)
        end = _monotonic() + limit
        reached_by = _monotonic() + reach
        kwargs = _driver.kill_kwargs(resolve(cfg.connect_kwargs))
        factory = cfg.connection_factory
        raw = self._dial(kwargs, reach) if factory is None else factory(**kwargs)
        try:
            return _driver.kill_session(raw, session, end - _monotonic(), reach=reached_by - _monotonic())
        finally:
            _driver.close(raw)

    def _configure(self, raw: Any) -> None:
        """The pool's ``configure`` on a new or session-reset connection."""
        configure = self._config.configure
        if configure is not None:
            configure(raw)
            if raw.server_status & 1:  # configure() left a transaction open
                raw.commit()

    def _connect(self, limit: float) -> Any:
        """Open one connection (no lock held); every wait of the connect is
        bounded by ``limit``, never by the borrow's timeout alone."""
        cfg = self._config
        raw: Any = None
        end = _monotonic() + limit
        try:
            kwargs = resolve(cfg.connect_kwargs)  # callables (rotating passwords) evaluated now
            factory = cfg.connection_factory
            raw = self._dial(kwargs, limit) if factory is None else factory(**kwargs)
            _driver.adopt(raw)
            self._configure(raw)
            keepalive = cfg.keepalive_interval
            if keepalive and cfg.connection_factory is None:
                server_idle = _driver.session_wait_timeout(raw, end - _monotonic())
                if server_idle:
                    keepalive = min(keepalive, server_idle / 2.0)
        except BaseException as exc:
            if raw is not None:
                _driver.close(raw)
                _driver.note_unfinished(raw, exc)
            raise
        return raw, keepalive

    def _dial(self, kwargs: Any, limit: float) -> Any:
        """The driver's connect, with the pool's TLS contexts (a cluster's node
        pools dial a connection class of their own)."""
        return _driver.connect(kwargs, limit, self._tls)

    def _check_alive(self, raw: Any, budget: Optional[float] = None) -> None:
        """The pool's validation of an idle connection: ``check=`` or a ping.
        Raises if the connection must not be lent."""
        check = self._config.check
        if check is None:
            # Bounded by connect_timeout (or less, late in a borrow), not by
            # what is left of the timeout: timeout=0 must still be able to ping.
            _driver.ping(raw, self._config.io_timeout if budget is None else budget)
        elif check(raw) is False:
            raise ValueError("check() returned False")

    # -- borrowing ----------------------------------------------------------
    #
    # Interrupts (KeyboardInterrupt, SystemExit, asynchronous exceptions, gevent
    # timeouts) may land anywhere. Whatever a borrow holds -- a slot taken from
    # idle, a right to dial, a fresh connection -- is in a local variable and is
    # given up by one idempotent call in an ``except BaseException`` handler;
    # the slot's state says whether it still has to be done.

    if TYPE_CHECKING:

        def get_conn(self, timeout: Optional[float] = None) -> PooledConnection:
            """Borrow a connection (see PoolCore._get_conn)."""

    else:
        # The core's, not a wrapper: the common borrow runs in one frame.
        get_conn = PoolCore._get_conn

    connection = get_conn

    @contextmanager
    def transaction(self, timeout: Optional[float] = None) -> Iterator[PooledConnection]:
        """``with pool.transaction() as conn:`` -- BEGIN; COMMIT when the block
        ends, ROLLBACK if it raised (``with pool.connection()`` never commits:
        with ``autocommit=False`` its work is rolled back on return)."""
        with self.get_conn(timeout) as conn:
            conn.begin()
            yield conn
            conn.commit()

    def get_connection(
        self, retry_num: int = 3, retry_interval: float = 0.1, pre_ping: bool = False
    ) -> PooledConnection:
        """0.5.0 API: wait up to ``retry_num * retry_interval`` seconds.

        ``retry_num`` is capped at 10 as in 0.5.0; ``pre_ping=True`` pings the
        connection before lending it whatever its idle time.
        """
        retries = min(count("retry_num", retry_num, owner=self.name), 10)
        interval = seconds("retry_interval", retry_interval, self.name)
        return self._acquire(retries * interval if retries else 0.0, pre_ping)

    def _acquire(self, timeout: Optional[float], force_check: bool) -> PooledConnection:
        """Every borrow that is not get_conn()'s direct common case."""
        if timeout is not None:  # as a float: an int beyond any float (10**400) is forever, as inf
            timeout = seconds("timeout", timeout, self.name)
        if self._reclaim:
            self._run(self._reclaim_plan())
        return self._borrow(None, timeout, force_check)

    def _borrow(self, first: Optional[Slot], timeout: Optional[float], force_check: bool) -> PooledConnection:
        slot: Optional[Slot] = None
        try:
            slot = self._run(self._borrow_plan(first, timeout, force_check))
            assert slot is not None
            if self._maintenance is None:
                self._ensure_maintenance()  # the first connection a borrower dialed
            conn: PooledConnection = lend(self, slot)
            return conn
        except DriverError as exc:  # the connect failed: say where, without the plan machinery
            raise connect_failed(exc, self.name, describe(self._config)) from exc
        except BaseException:
            if slot is not None:
                self._abandon(slot)
            raise

    # -- returning ----------------------------------------------------------

    if TYPE_CHECKING:

        def release(self, conn: PooledConnection, failed: bool = False) -> None:
            """Give a borrowed connection back (see PoolCore._give_back)."""

    else:
        # The core's, not a wrapper: a clean return runs in one frame.
        release = PoolCore._give_back

    def _return_slow(self, slot: Slot, failed: bool) -> None:
        self._run(self._return_plan(slot, failed))

    def replace_session(self, slot: Slot) -> None:
        """Public seam (the proxy's ``ping(reconnect=True)``, 0.5.0's): close
        the lent slot's dead connection and put a new session in its place
        (``slot.raw``). On failure the dead one stays, dropped on return; a
        dial cut in its set-up (which may run on) takes the place instead,
        to be killed on return."""
        _driver.force_close(slot.raw)
        try:
            fresh = self._run(self._dial_plan())
        except BaseException as exc:
            cut = self._unfinished_slot(exc)
            if cut is not None:
                self._swap_in(slot, cut)
            raise
        self._swap_in(slot, fresh)

    # -- control ------------------------------------------------------------

    def check(self) -> int:
        """Validate every idle connection now (``check=`` or a ping) and close
        the ones that fail; returns how many were closed."""
        closed: int = self._run(self._check_plan())
        return closed

    def close(self, timeout: Optional[float] = None) -> int:
        """Stop lending and close idle connections now; borrowed ones are
        closed when they come back. New borrows raise ``PoolClosed``.

        With ``timeout``, wait up to that many seconds for borrowed
        connections to come back, then shut down the sockets of those still
        out (their borrower's next call fails). Returns how many were forced.
        Waits for the kills of sessions abandoned mid-answer that are still
        in flight (each ends within ``connect_timeout``). Safe to call more
        than once.
        """
        grace = None if timeout is None else seconds("timeout", timeout, self.name)
        shut = self._shut()
        if shut is not None:
            idle, maintenance = shut
            try:
                if maintenance is not None:
                    maintenance.stop()
            finally:
                self._run(self._dispose_all_plan(idle, "closed_on_pool_close"))
            self._run(self._reclaim_plan())
        cut: int = self._run(_closing.close_plan(self, grace))
        return cut

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Start a pool made with ``open=False``: connections are opened in the
        background (retrying with back-off) and borrows are served from now
        on. ``wait=True`` then blocks like :meth:`wait`. Opening an open pool
        does nothing; a closed pool cannot be opened again."""
        self._start()
        self._ensure_maintenance()
        if wait:
            self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> None:
        """Block until ``pre_create_num`` connections are open; ``PoolTimeout``
        (naming the last connect error) if that takes longer than ``timeout``."""
        self._run(_closing.wait_plan(self, seconds("timeout", timeout, self.name)))

    def drain(self) -> int:
        """Replace every connection without failing a borrower: idle ones are
        closed now, borrowed ones when they come back, connections being
        opened right now once they are used. The pool reopens what it keeps
        warm. Use after a credential rotation, failover or DNS change.
        Returns how many connections were marked."""
        marked: int = self._run(self._drain_plan())
        return marked

    def resize(self, maxsize: Optional[int] = None, size: Optional[int] = None) -> None:
        """Change ``maxsize`` and/or ``size`` while running. Growing serves
        queued borrowers at once; shrinking closes idle extras now and
        borrowed extras when they come back."""
        self._run(self._resize_plan(maxsize, size))

    def __enter__(self) -> ConnectionPool:
        return self

    async def __aenter__(self) -> None:
        raise TypeError(THREAD_POOL_IN_ASYNC_WITH)

    async def __aexit__(self, *exc: Any) -> None:  # pragma: no cover - __aenter__ raised
        pass

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # -- background work ----------------------------------------------------

    def _prefill(self) -> None:
        """Open ``pre_create_num`` connections now, in the constructor, up to
        ``MAX_AT_ONCE`` at a time. If one fails, all are closed and the error
        raised."""
        wanted = self._config.pre_create_num
        made: List[Slot] = []
        books = threading.Lock()
        dials = [0, 0]  # started, abandoned (the constructor failed or was interrupted)
        try:
            _warmup.run(
                lambda: bool(self._run(self._prefill_plan(books, dials, made))),
                min(wanted, _warmup.MAX_AT_ONCE),
                f"pymysqlpool-warmup-{self.name}",
            )
            for slot in made:
                if not self._book_idle(slot):
                    self._run(self._dispose_plan(slot, "closed_on_pool_close"))
        except BaseException:
            with books:
                dials[1] = 1
            self._run(self._dispose_all_plan(made, "closed_on_pool_close"))
            raise
        if made:
            self._ensure_maintenance()

    def _ensure_maintenance(self) -> None:
        if self._maintenance is None and not self._closed:
            with self._lock:
                if self._maintenance is None and not self._closed:
                    self._maintenance = Maintenance(self)
                    self._maintenance.start()

    def _after_fork_in_child(self) -> None:
        """The child inherits the parent's sockets: forget them unsent-to."""
        self._after_fork(threading.Lock())

    # -- Public seam: what the cluster and the integrations may use ---------
    # (with PoolCore's block; documented in docs/integrations.md)

    def prefill(self) -> None:
        """Open ``pre_create_num`` connections now, as the constructor does,
        then start the background upkeep; the first connect error is raised
        (the connections opened so far are closed). Call after :meth:`start`."""
        self._prefill()

    def start_maintenance(self) -> None:
        """Start the background upkeep (warm-up, keep-alive, refill) unless it
        runs already or the pool is closed."""
        self._ensure_maintenance()
