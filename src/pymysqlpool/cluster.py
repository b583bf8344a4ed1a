"""ClusterPool: one pool per server of a replication or Galera cluster, borrows routed by role.

A monitor thread probes every node (see ``_topology``) and publishes the
routing as tuples of node pools; a borrow reads those tuples and asks the
chosen node's ``ConnectionPool`` for a connection, so the hot path takes no
lock but the node pool's own. The pool follows a failover, it never performs
one: roles come from the servers, never from the order of the hosts.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Callable, List, Optional, Tuple, Type

import pymysql

from . import _driver, _forking, _topology
from ._clusterbase import SteeredCluster, Steps
from ._signals import Latch, Wakeup, start_thread
from ._steering import NodeState, parse_cluster_url
from ._validators import flag
from .connection import PooledConnection
from .errors import PoolTimeout, ReturnConnectionToPoolError
from .pool import ConnectionPool

__all__ = ["ClusterPool", "parse_cluster_url"]

logger = logging.getLogger("pymysqlpool")

_monotonic = time.monotonic

Host = Tuple[str, int]

_base_release = ConnectionPool.release
_TRACKED = _driver.WriteTrackingConnection


class _NodePool(ConnectionPool):
    """A node's pool. On return it notices, from what the borrower already
    saw, that the borrow wrote (for causal reads) or met an error."""

    def __init__(self, node: NodeState, cluster: ClusterPool, gtid_hook: Callable[[str], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)  # built closed (open=False): nothing dials before those below are set
        # Set last: an instance keeps its first 30 attributes in the class's
        # shared keys, and the pool's own hot ones must stay among them.
        self._node = node
        self._cluster = cluster
        self._gtid_hook = gtid_hook  # the steering's: merges a COMMIT's GTID into what causal reads wait for

    def _dial(self, kwargs: Any, limit: float) -> Any:
        # Connections that report their writes (causal reads), with the
        # pool's TLS contexts and its keep-alive below the node's wait_timeout.
        raw = _driver.connect_tracking_writes(kwargs, limit, self._tls)
        if isinstance(raw, _TRACKED):
            raw.gtid_hook = self._gtid_hook  # the position is known at the COMMIT
            raw.node_pool = self  # the cluster's clean return finds the pool here
        return raw

    def _probe_connect(self, kwargs: Any, limit: float) -> Any:
        # The pool's TLS context: built once, not per probe (a down node is probed often).
        return _driver.connect(kwargs, limit, self._tls)

    def release(self, conn: PooledConnection, failed: bool = False) -> None:
        # The proxy's close() and ``with conn`` come here: the cluster's return
        # (the rules of a return after a write are there, once).
        try:
            mine = conn.lender is self
        except AttributeError:  # not a proxy: the pool says so
            mine = False
        if mine:
            self._cluster.release(conn, failed)
        else:
            _base_release(self, conn, failed)


class ClusterPool(SteeredCluster[_NodePool]):
    """A pool over the servers of a MariaDB/MySQL replication or Galera cluster.

    ``ClusterPool("mysql://u:pw@h1:p1,h2:p2,h3:p3/db", maxsize=10)`` or
    ``ClusterPool(hosts=[(h, p), ...], user=..., password=..., database=...)``.
    Every ``ConnectionPool`` keyword applies per node (``maxsize`` is per node).
    Borrows are writes unless ``read_only=True``; see ``docs/cluster.md``.
    The rules live in ``_steering`` (shared with ``AsyncClusterPool``); this
    shell probes on threads and borrows from ``ConnectionPool`` nodes.
    """

    _node_pool_class = _NodePool
    _new_lock = threading.Lock
    _force_close = staticmethod(_driver.force_close)

    def _begin(self) -> None:
        # Not threading.Event/Condition, nor Thread.join(): borrowers' threads
        # set and wait on these, and an interrupt landing inside an Event's or
        # Condition's Python code can leave its lock held for good (see _signals).
        self._changed = Latch()  # set, and replaced by a new one, when the routing changed
        self._wake = Wakeup()
        try:
            for node in self._steering.nodes:
                self._open_node(node)
        except BaseException:
            for node in self._steering.nodes:
                node.pool.close()
            raise
        self._first_round = Latch()
        self._monitor = self._start_monitor()
        _forking.register(self, ClusterPool._after_fork_in_child)

    def _open_node(self, node: NodeState) -> None:
        """Open a node's pool and its ``pre_create_num`` connections (see ``_did_not_answer``)."""
        pool = node.pool
        pool.start()
        try:
            pool.prefill()
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            self._did_not_answer(node, exc)
            pool.start_maintenance()  # warms the node up in the background once it answers

    def _start_monitor(self) -> threading.Thread:
        thread, self._monitor_ended = start_thread(self._monitor_loop, f"pymysqlpool-cluster-{self.name}")
        return thread

    def _after_fork_in_child(self) -> None:
        """The child has no monitor thread and shares the parent's probe
        sockets: forget those unsent-to and probe anew (the node pools,
        registered first, were reset already). The parent's routing stands
        until the first probe."""
        if self._steering.closed:
            return
        for node in self._steering.nodes:
            if node.probe_raw is not None:
                _driver.abandon(node.probe_raw)
                node.probe_raw = None
            node.busy = False
            node.urgent = True
        self._changed = Latch()
        self._steering.lock = threading.Lock()
        self._wake = Wakeup()
        self._monitor = self._start_monitor()

    # -- borrowing ------------------------------------------------------------

    def get_conn(
        self, read_only: bool = False, causal: Optional[bool] = None, timeout: Optional[float] = None
    ) -> PooledConnection:
        """Borrow a connection: from the writer, or with ``read_only=True``
        from a reader (a replica within ``max_lag``, else the primary).

        ``causal=True`` (default: the cluster's ``causal``) makes a read see
        every write committed through this cluster before the borrow began.
        Waits up to ``timeout`` seconds (default: the pools' ``timeout``).
        """
        steering = self._steering
        if causal is not None or read_only is not False:
            pools = self._routed(read_only, causal)
            if pools is None:
                return self._borrow(True, True, timeout, _monotonic())
            pool = pools[0] if len(pools) == 1 else steering.pick(pools) if pools else None
        else:  # a write with the defaults: no other test on the way to the node pool
            pool = steering.writer  # the only writer; None: none, or several
            if pool is None and steering.writers:
                pool = steering.pick(steering.writers)
        started = _monotonic()
        if timeout is None and pool is not None:
            try:
                return pool.get_conn()
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError, PoolTimeout) as exc:
                self._first_failed(pool, exc)
                # The quick path's time and failure count: no second full wait after it.
                return self._borrow(read_only, False, None, started, exc)
        return self._borrow(read_only, False, timeout, started)

    connection = get_conn

    def get_connection(
        self, retry_num: int = 3, retry_interval: float = 0.1, pre_ping: bool = False
    ) -> PooledConnection:
        """0.5.0 API: a writer, waiting up to ``retry_num * retry_interval`` seconds."""
        return self._borrow(False, False, min(retry_num, 10) * retry_interval, _monotonic())

    def _borrow(
        self,
        read_only: bool,
        causal: bool,
        timeout: Optional[float],
        started: float,
        last_error: Optional[BaseException] = None,
    ) -> PooledConnection:
        """Every borrow but the common case, as the steering's ``Attempt`` decides."""
        attempt = self._steering.attempt(read_only, causal, timeout, started, self._timeout, last_error)
        while True:
            pool = attempt.choose(_monotonic())
            if pool is None:
                limit = attempt.wait_for()
                changed = self._changed  # taken before the look: a change after it sets this one
                if attempt.routing_unchanged():
                    changed.wait(limit)
                attempt.waited_for_routing()
                continue
            try:
                conn = pool.get_conn(attempt.remaining)
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError, PoolTimeout) as exc:
                self._attempt_failed(attempt, pool, exc)
                continue
            if attempt.causal and not self._make_causal(pool, conn, attempt.deadline):
                attempt.not_caught_up(pool, pool._node)
                continue
            attempt.lent(pool)
            return conn

    def release(self, conn: PooledConnection, failed: bool = False) -> None:
        """Give a borrowed connection back to its node's pool."""
        # The common case in one frame over the node pool's own return: a
        # clean borrow on a connection that reports its writes, whose node pool
        # (stamped on it at connect) is this cluster's. A plain attribute of
        # the connection is read faster than the proxy's lender and than a
        # set of pools. Everything else: _release_checked.
        try:
            raw = conn.lent_raw  # None once given back
            pool = raw.node_pool  # only tracking connections carry it
            clean = pool._cluster is self and not (failed or raw.wrote or raw.sync_wait_on)
        except AttributeError:  # not a proxy, given back already, not tracking its writes
            clean = False
        if clean:
            _base_release(pool, conn, failed)
        else:
            self._release_checked(conn, failed)

    def _release_checked(self, conn: PooledConnection, failed: bool) -> None:
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
            try:
                self._on_return(pool._node, raw, failed)
            finally:  # interrupted or not, the connection goes back (a broken one is discarded)
                _base_release(pool, conn, failed)
            return
        _base_release(pool, conn, failed)

    # -- causal reads ---------------------------------------------------------

    def _on_return(self, node: NodeState, raw: Any, failed: bool) -> None:
        """What a return needs beyond the node pool's own work (rare path)."""
        # Inside ``with``'s __exit__ the block's exception is the one being handled.
        self._run(self._return_steps(node, raw, failed, sys.exc_info()[1] if failed else None))

    def _make_causal(self, pool: _NodePool, conn: PooledConnection, deadline: float) -> bool:
        """Wait until the borrowed node holds every write seen so far. False
        (connection given back) when it cannot in time."""
        try:
            if self._run(self._causal_steps(pool, conn.raw, deadline)):
                return True
        except BaseException as exc:
            interrupted = not isinstance(exc, Exception)
            if interrupted:
                _driver.force_close(conn.raw)  # stopped mid-wait: the session cannot be reused
            else:
                logger.info("cluster %r: causal wait on %s failed: %s", self.name, pool._node.address, exc)
            pool.release(conn, True)
            if interrupted:
                raise
            return False
        pool.release(conn)
        return False

    @staticmethod
    def _run(steps: Steps) -> Any:
        """Run a plan's statements (``_clusterbase.Steps``), blocking on each; its result."""
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
                    reply = _driver.fetch_one(raw, sql, args, limit)
                except BaseException as exc:  # an interrupt too: the plan decides
                    error = exc
        except BaseException:
            steps.close()  # an interrupt between two steps: not left to the garbage collector
            raise

    # -- the monitor -----------------------------------------------------------

    def _monitor_loop(self) -> None:
        """Schedule probes and publish the routing. Each probe runs on its own
        worker, so a node that hangs (SIGSTOP, a black-holed link) delays
        neither the probes of the others nor the routing they change."""
        steering = self._steering
        workers = ThreadPoolExecutor(
            max_workers=len(steering.nodes), thread_name_prefix=f"pymysqlpool-probe-{self.name}"
        )
        try:
            while not steering.closed:
                self._wake.clear()
                # Publish before the next probes start: every probe's result, a failure
                # included, is seen by the routing before that node is probed again.
                self._publish()
                for node in steering.due(_monotonic()):
                    workers.submit(self._probe, node)
                self._wake.wait(steering.sleep_for(_monotonic()))
        finally:
            # A probe in flight ends within probe_timeout: the monitor ends
            # after its workers, so close() waits for them by waiting for it.
            workers.shutdown(wait=True)

    def _probe(self, node: NodeState) -> None:
        try:
            self._probe_once(node)
        finally:
            node.busy = False
            self._wake.set()

    def _probe_once(self, node: NodeState) -> None:
        started = _monotonic()
        try:
            if node.probe_raw is None:
                kwargs = self._settings.probe_kwargs(node.host, node.port)
                node.probe_raw = node.pool._probe_connect(kwargs, self._settings.probe_timeout)
            facts = _topology.probe(node.probe_raw)
        except Exception as exc:
            if node.probe_raw is not None:
                _driver.force_close(node.probe_raw)
                node.probe_raw = None
            if self._steering.probe_failed(node, exc, started, _monotonic()):
                # Borrowers must not keep dialing a dead node until their timeout:
                # its pool now gives up on the first failed connect.
                node.pool.fail_fast()
                node.pool.suspect_idle()  # its idle connections are pinged before use
            return
        self._steering.probed(node, facts, started)

    def _publish(self) -> None:
        steering = self._steering
        changed = steering.publish()
        if steering.probed_once:
            self._first_round.set()
        if changed:
            self._announce()

    def _announce(self) -> None:
        """Wake whoever waits for a new routing (or the close)."""
        changed, self._changed = self._changed, Latch()
        changed.set()

    # -- closing and stats -----------------------------------------------------

    def close(self) -> None:
        """Stop the monitor and close every node's pool. Safe to call twice:
        whatever a first call could not close, the second closes."""
        self._steering.closed = True
        self._wake.set()
        self._announce()
        try:
            if threading.current_thread() is not self._monitor:
                # The monitor ends after its probe workers (a probe in flight ends
                # within probe_timeout), so that no thread of the cluster outlives close().
                self._monitor_ended.wait(self._settings.probe_timeout * 3 + 5)
        finally:
            errors: List[BaseException] = []
            for node in self._steering.nodes:
                try:
                    node.pool.close()
                except Exception as exc:  # every node is closed, whatever one of them raises
                    errors.append(exc)
                if node.probe_raw is not None:
                    _driver.close(node.probe_raw)
                    node.probe_raw = None
            if errors:
                raise errors[0]

    def __enter__(self) -> ClusterPool:
        return self

    async def __aenter__(self) -> None:
        raise TypeError(
            "ClusterPool is the thread cluster: use 'with', not 'async with' (for asyncio: AsyncClusterPool)"
        )

    async def __aexit__(self, *exc: Any) -> None:  # pragma: no cover - __aenter__ raised
        pass

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def wait_probed(self, timeout: float = 10.0) -> bool:
        """Wait until every node was probed once (answered or not); True if so."""
        return self._first_round.wait(self._wait_limit(timeout))

    def wait_ready(self, timeout: float = 10.0, read_only: bool = False) -> bool:
        """Wait until a writer (or a reader) is known; True if one is.
        PoolClosed once the cluster is closed."""
        limit = self._wait_limit(timeout)
        deadline = None if limit is None else _monotonic() + limit
        steering = self._steering
        while True:
            changed = self._changed  # taken before the look: a change after it sets this one
            if steering.closed:
                raise steering.close_error()
            if steering.readers if read_only else steering.writers:
                return True
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                return False
            changed.wait(remaining)
