"""AsyncClusterPool: ClusterPool for asyncio, on the same steering (``_steering``).

One ``AsyncConnectionPool`` per server; one task per node probes it and a
monitor task publishes the routing, so a frozen node delays neither the others'
probes nor the routing. Every rule (roles, split-brain memory, causal
positions, fallback, deadlines) is the thread cluster's, in ``_steering``;
what both shells ask of it alike (the constructor, a failed borrow, the
statements of a return after a write and of a causal read) is in
``_clusterbase``; this module only awaits.
"""

# What is still twin with cluster.py, and why. Shared once elsewhere: the
# constructor and its checks, the node pools' construction, the properties,
# stats and repr (_clusterbase.SteeredCluster); every routing, probe-schedule,
# borrow-step and causal decision (_steering); what a failed borrow or an
# unanswering node at opening does (_first_failed, _attempt_failed,
# _did_not_answer); the statements of a return and of a causal read and what
# their answers mean (_return_steps, _causal_steps).
# - get_conn's common case and release: the same lines, awaited here. They are
#   the routed hot path: a shared step would be one more frame per borrow and
#   per return (~+300-500 instructions each), which the write rows (<= +3,000
#   over the plain pool) cannot afford.
# - _release_checked: the same lender and clean-return tests; the statements
#   after a write run in a try/finally there and in a coroutine handed back
#   to the caller here (release is a plain function returning an awaitable).
# - _borrow: the same Attempt loop; waiting for a new routing is a Condition
#   there and an Event replaced on each change here, and each node pool call
#   blocks there and is awaited here.
# - _run: the same send/throw loop over a plan's statements; each statement
#   blocks there and is awaited here (as aio.py's _run beside pool.py's).
# - _make_causal: the connection goes back (blocking or awaited) inside the
#   except clause, so that the return sees the wait's error; interrupted,
#   the thread shell drops the socket itself, here the node pool's return
#   kills the statement of a connection left mid-answer.
# - the node pool subclasses: their drivers differ (PyMySQL with the pool's
#   TLS contexts, aiomysql), and the async release returns an awaitable.
# - opening, the monitor and the probes: threads and a ThreadPoolExecutor
#   started by the constructor there; tasks on the loop that first uses the
#   cluster here, with a probe's queries awaited within probe_timeout.
# - close, wait_probed, wait_ready: join threads / cancel tasks, a Condition /
#   an Event; the decisions they take are the steering's (closed, writers).
# - _ClusterBorrowing beside aio.py's _Borrowing (duplicates D2): the same
#   async context manager with the cluster's three borrow arguments and the
#   cluster's message for a plain 'with'; aio.py's is the plain pool's own
#   'async with' path, left alone rather than slowed by a generalisation.

from __future__ import annotations

import asyncio
import logging
import sys
import time
from types import TracebackType
from typing import Any, Awaitable, Callable, Coroutine, Dict, List, NoReturn, Optional, Set, Tuple, Type, cast

import pymysql

from . import _adriver, _topology
from ._clusterbase import SteeredCluster, Steps
from ._config import resolve
from ._core import NoLock
from ._steering import NodeState
from ._validators import flag
from .aio import AsyncConnectionPool, AsyncPooledConnection
from .errors import PoolTimeout, ReturnConnectionToPoolError, WrongEventLoop

__all__ = ["AsyncClusterPool"]

logger = logging.getLogger("pymysqlpool")

_monotonic = time.monotonic
_running_loop = asyncio.get_running_loop
_base_release = AsyncConnectionPool.release
_TRACKED = _adriver.WriteTrackingConnection

Host = Tuple[str, int]


class _AsyncNodePool(AsyncConnectionPool):
    """A node's pool: connections that report their writes; on return it
    notices that the borrow wrote (causal reads) or met an error."""

    def __init__(
        self, node: NodeState, cluster: AsyncClusterPool, gtid_hook: Callable[[str], bool], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)  # built closed (open=False): nothing dials before those below are set
        # Set last: an instance keeps its first 30 attributes in the class's
        # shared keys, and the pool's own hot ones must stay among them.
        self._node = node
        self._cluster = cluster
        self._gtid_hook = gtid_hook  # the steering's: merges a COMMIT's GTID into what causal reads wait for

    async def _dial(self, kwargs: Dict[str, Any], limit: float) -> Any:
        raw = await _adriver.connect_tracking_writes(kwargs, limit)
        if isinstance(raw, _TRACKED):
            raw.gtid_hook = self._gtid_hook  # the position is known at the COMMIT
            raw.node_pool = self  # the cluster's clean return finds the pool here
        return raw

    def _probe_kwargs(self, limit: float) -> Dict[str, Any]:
        """A probe connection's keywords: the pool's, every wait bounded by ``limit``."""
        return {
            **resolve(self._config.connect_kwargs, check=True),
            "connect_timeout": limit,
            "read_timeout": limit,
            "autocommit": True,
        }

    def release(self, conn: AsyncPooledConnection, failed: bool = False) -> Coroutine[Any, Any, None]:
        # ``await conn.close()`` and ``async with conn`` come here: the
        # cluster's return (the rules of a return after a write are there, once).
        try:
            mine = conn.lender is self
        except AttributeError:  # not a proxy: the pool says so
            mine = False
        if mine:
            return self._cluster.release(conn, failed)
        return _base_release(self, conn, failed)


_ASYNC_CLUSTER_IN_WITH = (
    "AsyncClusterPool is the asyncio cluster: use 'async with', not 'with' (for threads: ClusterPool)"
)


class AsyncClusterPool(SteeredCluster["_AsyncNodePool"]):
    """``ClusterPool`` for asyncio: the same constructor (a URL or ``hosts=``,
    every ``AsyncConnectionPool`` keyword per node, ``max_lag``, ``causal``,
    ``probe_interval``, ``probe_timeout``, ``read_fallback_to_primary``,
    ``galera_writer``, ``balance``, ``require_all_nodes``) and behaviour, awaited.

    ``async with AsyncClusterPool(url) as cluster:`` opens every node (a node
    that does not answer leaves the cluster degraded unless
    ``require_all_nodes``) and starts the probes; without it the first borrow
    starts them. Bound to the event loop that first uses it.
    """

    _node_pool_class = _AsyncNodePool
    _new_lock = NoLock  # one loop and no await inside the causal merge: no lock needed
    _force_close = staticmethod(_adriver.force_close)

    def _begin(self) -> None:
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._opened = False
        self._monitor: Optional[asyncio.Task[None]] = None
        self._probes: Set[asyncio.Task[None]] = set()
        self._changed: Optional[asyncio.Event] = None  # set (and replaced) when the routing changes
        self._first_round: Optional[asyncio.Event] = None

    # -- the event loop and opening ------------------------------------------------

    def _bind(self) -> None:
        """First use: adopt the running loop and start the node pools and the
        probes (no warm-up: ``async with`` warms up). Another loop later: WrongEventLoop."""
        loop = _running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:
            raise WrongEventLoop(
                f"cluster {self.name!r} runs on another event loop than this one; make one cluster per loop"
            )
        if self._steering.closed:
            raise self._steering.close_error()
        self._loop = loop
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._first_round = asyncio.Event()
        for node in self._steering.nodes:
            pool = node.pool
            pool.bind(loop)
            pool.start()
            pool.start_maintenance()
        self._start_monitor()

    def _start_monitor(self) -> None:
        if self._monitor is None and not self._steering.closed:
            assert self._loop is not None
            self._monitor = self._loop.create_task(self._monitor_loop(), name=f"pymysqlpool-cluster-{self.name}")

    async def open(self) -> None:
        """Open every node's pool with its ``pre_create_num`` connections and
        start the probes. A node that does not answer leaves the cluster
        degraded (its pool warms up once it answers) unless
        ``require_all_nodes``; wrong credentials or database raise."""
        loop = _running_loop()
        if self._loop is not None and self._loop is not loop:
            raise WrongEventLoop(f"cluster {self.name!r} runs on another event loop than this one")
        if self._opened:
            return
        if self._steering.closed:
            raise self._steering.close_error()
        self._opened = True
        self._loop = loop
        self._wake = self._wake or asyncio.Event()
        self._changed = self._changed or asyncio.Event()
        self._first_round = self._first_round or asyncio.Event()
        try:
            for node in self._steering.nodes:
                await self._open_node(node, loop)
        except BaseException:
            await self.close()
            raise
        self._start_monitor()

    async def _open_node(self, node: NodeState, loop: asyncio.AbstractEventLoop) -> None:
        pool = node.pool
        pool.bind(loop)
        if pool.start():
            try:
                await pool.prefill()
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                self._did_not_answer(node, exc)
        pool.start_maintenance()  # warms the node up in the background once it answers

    async def __aenter__(self) -> AsyncClusterPool:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __enter__(self) -> NoReturn:
        raise TypeError(_ASYNC_CLUSTER_IN_WITH)

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover - __enter__ raised
        pass

    # -- borrowing ----------------------------------------------------------------------

    async def get_conn(
        self, read_only: bool = False, causal: Optional[bool] = None, timeout: Optional[float] = None
    ) -> AsyncPooledConnection:
        """Borrow a connection: from the writer, or with ``read_only=True``
        from a reader (a replica within ``max_lag``, else the primary);
        ``causal=True`` (default: the cluster's ``causal``) makes a read see
        every write committed through this cluster before the borrow began.
        Waits up to ``timeout`` seconds (default: the pools' ``timeout``)."""
        if self._loop is not _running_loop():
            self._bind()
        steering = self._steering
        if causal is not None or read_only is not False:
            pools = self._routed(read_only, causal)
            if pools is None:
                return await self._borrow(True, True, timeout, _monotonic())
            pool = pools[0] if len(pools) == 1 else steering.pick(pools) if pools else None
        else:  # a write with the defaults: no other test on the way to the node pool
            pool = steering.writer  # the only writer; None: none, or several
            if pool is None and steering.writers:
                pool = steering.pick(steering.writers)
        started = _monotonic()
        if timeout is None and pool is not None:
            try:
                # The node pool's core borrow: get_conn's coroutine less (the
                # node pools are bound to this loop by _bind).
                got = pool.lend_or_wait()
                if type(got) is AsyncPooledConnection:
                    return got
                return await cast("Awaitable[AsyncPooledConnection]", got)
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError, PoolTimeout) as exc:
                self._first_failed(pool, exc)
                # The quick path's time and failure count: no second full wait after it.
                return await self._borrow(read_only, False, None, started, exc)
        return await self._borrow(read_only, False, timeout, started)

    def connection(
        self, read_only: bool = False, causal: Optional[bool] = None, timeout: Optional[float] = None
    ) -> _ClusterBorrowing:
        """``async with cluster.connection(read_only=True) as conn:`` -- the
        connection goes back to its node when the block ends."""
        return _ClusterBorrowing(self, read_only, causal, timeout)

    async def get_connection(
        self, retry_num: int = 3, retry_interval: float = 0.1, pre_ping: bool = False
    ) -> AsyncPooledConnection:
        """0.5.0-style: a writer, waiting up to ``retry_num * retry_interval`` seconds."""
        if self._loop is not _running_loop():
            self._bind()
        return await self._borrow(False, False, min(retry_num, 10) * retry_interval, _monotonic())

    async def _borrow(
        self,
        read_only: bool,
        causal: bool,
        timeout: Optional[float],
        started: float,
        last_error: Optional[BaseException] = None,
    ) -> AsyncPooledConnection:
        """Every borrow but the common case, as the steering's ``Attempt`` decides."""
        attempt = self._steering.attempt(read_only, causal, timeout, started, self._timeout, last_error)
        while True:
            pool = attempt.choose(_monotonic())
            if pool is None:
                limit = attempt.wait_for()
                changed = self._changed
                assert changed is not None
                if attempt.routing_unchanged():
                    try:
                        await asyncio.wait_for(changed.wait(), limit)
                    except asyncio.TimeoutError:
                        pass
                attempt.waited_for_routing()
                continue
            try:
                conn = await pool.get_conn(attempt.remaining)
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError, PoolTimeout) as exc:
                self._attempt_failed(attempt, pool, exc)
                continue
            if attempt.causal and not await self._make_causal(pool, conn, attempt.deadline):
                attempt.not_caught_up(pool, pool._node)
                continue
            attempt.lent(pool)
            return conn

    def release(self, conn: AsyncPooledConnection, failed: bool = False) -> Coroutine[Any, Any, None]:
        """``await cluster.release(conn)``: give a borrowed connection back to its node's pool."""
        # A plain function giving the coroutine to await. The common case in
        # one frame over the node pool's own return: a clean borrow on a
        # connection that reports its writes, whose node pool (stamped on it
        # at connect) is this cluster's. A plain attribute of the connection is
        # read faster than the proxy's lender and than a set of pools.
        try:
            raw = conn.lent_raw  # None once given back
            pool = raw.node_pool  # only tracking connections carry it
            clean = pool._cluster is self and not (failed or raw.wrote or raw.sync_wait_on)
        except AttributeError:  # not a proxy, given back already, not tracking its writes
            clean = False
        if clean:
            return _base_release(pool, conn, failed)
        return self._release_checked(conn, failed)

    def _release_checked(self, conn: AsyncPooledConnection, failed: bool) -> Coroutine[Any, Any, None]:
        """Every return but the clean one: the lender is checked, and a return
        after a write, an error or a Galera sync wait does its statements."""
        flag("failed", failed, self.name)  # before the return's statements: a refused return does nothing
        try:
            pool: Any = conn.lender
            raw = conn.lent_raw  # None once given back
        except AttributeError:  # not a proxy
            pool = raw = None
        if pool not in self._pools:
            raise ReturnConnectionToPoolError(f"this connection was not lent by cluster {self.name!r}")
        if (failed or type(raw) is not _TRACKED or raw.wrote or raw.sync_wait_on) and raw is not None:
            return self._release_after(pool, conn, raw, failed)
        return _base_release(pool, conn, failed)

    async def _release_after(self, pool: Any, conn: AsyncPooledConnection, raw: Any, failed: bool) -> None:
        try:
            await self._on_return(pool._node, raw, failed)
        finally:  # cancelled or not, the connection goes back (a broken one is discarded)
            await _base_release(pool, conn, failed)

    async def _on_return(self, node: NodeState, raw: Any, failed: bool) -> None:
        """What a return needs beyond the node pool's own work (rare path)."""
        # Inside ``async with``'s __aexit__ the block's exception is the one being handled.
        await self._run(self._return_steps(node, raw, failed, sys.exc_info()[1] if failed else None))

    async def _make_causal(self, pool: _AsyncNodePool, conn: AsyncPooledConnection, deadline: float) -> bool:
        """Wait until the borrowed node holds every write seen so far. False
        (connection given back) when it cannot in time."""
        try:
            if await self._run(self._causal_steps(pool, conn.raw, deadline)):
                return True
        except BaseException as exc:
            # Cancelled mid-wait, the connection is mid-answer: the node pool's
            # return discards it (and ends the statement on the server).
            await pool.release(conn, True)
            if not isinstance(exc, Exception):
                raise
            logger.info("cluster %r: causal wait on %s failed: %s", self.name, pool._node.address, exc)
            return False
        await pool.release(conn)
        return False

    @staticmethod
    async def _run(steps: Steps) -> Any:
        """Run a plan's statements (``_clusterbase.Steps``), awaiting each; its result."""
        reply: Any = None
        error: Optional[BaseException] = None
        try:
            while True:
                try:
                    raw, (sql, args, limit) = steps.send(reply) if error is None else steps.throw(error)
                except StopIteration as done:
                    return done.value
                reply = error = None
                try:
                    reply = await _adriver.fetch_one(raw, sql, args, limit)
                except BaseException as exc:  # cancellation too: the plan decides
                    error = exc
        except BaseException:
            steps.close()  # cancelled between two steps: not left to the garbage collector
            raise

    # -- the monitor: one task, and one probe task per node -----------------------------

    async def _monitor_loop(self) -> None:
        steering = self._steering
        wake = self._wake
        assert wake is not None and self._loop is not None
        while not steering.closed:
            wake.clear()
            # Publish before the next probes start: every probe's result, a failure
            # included, is seen by the routing before that node is probed again.
            self._publish()
            for node in steering.due(_monotonic()):
                task = self._loop.create_task(self._probe(node), name=f"pymysqlpool-probe-{node.address}")
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)
            try:
                await asyncio.wait_for(wake.wait(), steering.sleep_for(_monotonic()))
            except asyncio.TimeoutError:
                pass

    async def _probe(self, node: NodeState) -> None:
        try:
            await self._probe_once(node)
        finally:
            node.busy = False
            if self._wake is not None:
                self._wake.set()

    async def _probe_once(self, node: NodeState) -> None:
        started = _monotonic()
        limit = self._settings.probe_timeout
        try:
            if node.probe_raw is None:
                kwargs = node.pool._probe_kwargs(limit)
                node.probe_raw = await _adriver.connect(_adriver.driver_kwargs(kwargs), limit)
            facts = await _adriver.bounded(_ask(node.probe_raw), limit)
        except Exception as exc:
            if node.probe_raw is not None:
                _adriver.force_close(node.probe_raw)
                node.probe_raw = None
            if self._steering.probe_failed(node, exc, started, _monotonic()):
                # Borrowers must not keep dialing a dead node until their timeout.
                node.pool.fail_fast()
                node.pool.suspect_idle()  # its idle connections are pinged before use
            return
        except BaseException:
            if node.probe_raw is not None:  # cancelled mid-answer (close): never reused
                _adriver.force_close(node.probe_raw)
                node.probe_raw = None
            raise
        self._steering.probed(node, facts, started)

    def _publish(self) -> None:
        steering = self._steering
        changed = steering.publish()
        if steering.probed_once and self._first_round is not None:
            self._first_round.set()
        if changed and self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    # -- closing and stats -----------------------------------------------------------------

    async def close(self) -> None:
        """Stop the probes and close every node's pool. Safe to call twice:
        whatever a first call could not close, the second closes."""
        steering = self._steering
        steering.closed = True
        if self._changed is not None:
            self._changed.set()
        tasks = [t for t in (self._monitor, *self._probes) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._settings.probe_timeout + 5)
        errors: List[BaseException] = []
        for node in steering.nodes:
            try:
                await node.pool.close()
            except Exception as exc:  # every node is closed, whatever one of them raises
                errors.append(exc)
            if node.probe_raw is not None:
                raw, node.probe_raw = node.probe_raw, None
                await _adriver.close(raw, self._connect_timeout)
        if errors:
            raise errors[0]

    async def wait_probed(self, timeout: float = 10.0) -> bool:
        """Wait until every node was probed once (answered or not); True if so."""
        if self._loop is not _running_loop():
            self._bind()
        assert self._first_round is not None
        limit = self._wait_limit(timeout)  # before the coroutine is made: a refusal leaves none unawaited
        try:
            await asyncio.wait_for(self._first_round.wait(), limit)
        except asyncio.TimeoutError:
            return False
        return True

    async def wait_ready(self, timeout: float = 10.0, read_only: bool = False) -> bool:
        """Wait until a writer (or a reader) is known; True if one is.
        PoolClosed once the cluster is closed."""
        if self._loop is not _running_loop():
            self._bind()
        limit = self._wait_limit(timeout)
        deadline = None if limit is None else _monotonic() + limit
        steering = self._steering
        while True:
            if steering.closed:
                raise steering.close_error()
            if steering.readers if read_only else steering.writers:
                break
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                return False
            changed = self._changed
            assert changed is not None
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return True


async def _ask(raw: Any) -> _topology.NodeFacts:
    """One probe's queries (``_topology.probe``'s, awaited)."""
    started = _monotonic()
    row = await _adriver.fetch_one(raw, _topology.PROBE_SQL)
    status: Any = []
    rows: Any = []
    if _topology.is_galera(row):
        status = await _adriver.fetch_all(raw, _topology.GALERA_SQL)
    else:
        rows = await _adriver.fetch_all(raw, _topology.REPLICATION_SQL, as_dicts=True)
    return _topology.facts_from(row, status, rows, (_monotonic() - started) * 1000.0)


class _ClusterBorrowing:
    """``async with cluster.connection(...) as conn``: borrowed on enter, given
    back on exit (as failed if the block raised or was cancelled)."""

    __slots__ = ("_args", "_cluster", "_conn")

    def __init__(
        self, cluster: AsyncClusterPool, read_only: bool, causal: Optional[bool], timeout: Optional[float]
    ) -> None:
        self._cluster = cluster
        self._args = (read_only, causal, timeout)
        self._conn: Optional[AsyncPooledConnection] = None

    async def __aenter__(self) -> AsyncPooledConnection:
        self._conn = await self._cluster.get_conn(*self._args)
        return self._conn

    def __enter__(self) -> NoReturn:
        raise TypeError(_ASYNC_CLUSTER_IN_WITH)

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover - __enter__ raised
        pass

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.lent_raw is not None:
            pool: Any = conn.lender
            await pool.release(conn, exc is not None)
