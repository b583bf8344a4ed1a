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
from typing import AbstractSet, Any, List, Optional, Sequence, Set, Tuple, Type, Union

import pymysql

from . import _driver, _forking, _topology
from ._steering import ClusterSettings, NodeState, SteeredCluster, check_borrow, is_connect_error, parse_cluster_url
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

    def __init__(self, node: NodeState, cluster: ClusterPool, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # built closed (open=False): nothing dials before the two below are set
        # Set last: an instance keeps its first 30 attributes in the class's
        # shared keys, and the pool's own hot ones must stay among them.
        self._node = node
        self._cluster = cluster

    def _dial(self, kwargs: Any, limit: float) -> Any:
        # Connections that report their writes (causal reads), with the
        # pool's TLS contexts and its keep-alive below the node's wait_timeout.
        raw = _driver.connect_tracking_writes(kwargs, limit, self._tls)
        if isinstance(raw, _TRACKED):
            raw.gtid_hook = self._cluster._took_gtid  # the position is known at the COMMIT
        return raw

    def _probe_connect(self, kwargs: Any, limit: float) -> Any:
        # The pool's TLS context: built once, not per probe (a down node is probed often).
        return _driver.connect(kwargs, limit, self._tls)

    def release(self, conn: PooledConnection, failed: bool = False) -> None:
        try:
            raw = conn.lent_raw  # None once given back
        except AttributeError:  # not a proxy: the pool says so
            raw = None
        # One test in the common case: a clean borrow on a connection that reports its writes.
        if (failed or raw.__class__ is not _TRACKED or raw.wrote or raw.sync_wait_on) and raw is not None:
            try:
                self._cluster._on_return(self._node, raw, failed)
            finally:  # interrupted or not, the connection goes back (a broken one is discarded)
                _base_release(self, conn, failed)
            return
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

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        hosts: Optional[Sequence[Union[Host, str]]] = None,
        max_lag: float = 5.0,
        causal: bool = False,
        probe_interval: float = 0.5,
        probe_timeout: float = 1.0,
        read_fallback_to_primary: bool = True,
        galera_writer: str = "single",
        balance: str = "least_borrowed",
        require_all_nodes: bool = False,
        **pool_kwargs: Any,
    ) -> None:
        # Every argument is checked before any connection is opened.
        settings = ClusterSettings.build(
            "ClusterPool",
            url,
            hosts,
            max_lag,
            causal,
            probe_interval,
            probe_timeout,
            read_fallback_to_primary,
            galera_writer,
            balance,
            require_all_nodes,
            pool_kwargs,
            _driver.CONNECT_PARAMETERS,
        )
        self._changed = threading.Condition(threading.Lock())
        self._steer(settings, threading.Lock(), _NodePool)
        try:
            for node in self._steering.nodes:
                self._open_node(node, require_all_nodes)
        except BaseException:
            for node in self._steering.nodes:
                node.pool.close()
            raise
        self._wake = threading.Event()
        self._first_round = threading.Event()
        self._probe_workers: AbstractSet[threading.Thread] = frozenset()
        self._monitor = self._start_monitor()
        _forking.register(self, ClusterPool._after_fork_in_child)

    def _open_node(self, node: NodeState, required: bool) -> None:
        """Open a node's pool and its ``pre_create_num`` connections. A node
        that does not answer leaves the cluster degraded, not unusable: its
        pool warms up in the background once the server answers (unless
        ``require_all_nodes``). Wrong credentials or database raise."""
        pool = node.pool
        pool.start()
        try:
            pool.prefill()
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            if required or _driver.is_fatal_connect_error(exc):
                raise
            node.last_error = str(exc)
            logger.warning("cluster %r: %s does not answer (%s); starting without it", self.name, node.address, exc)
            pool.start_maintenance()  # warms the node up in the background once it answers

    def _start_monitor(self) -> threading.Thread:
        thread = threading.Thread(target=self._monitor_loop, name=f"pymysqlpool-cluster-{self.name}", daemon=True)
        thread.start()
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
        self._changed = threading.Condition(threading.Lock())
        self._steering.lock = threading.Lock()
        self._wake = threading.Event()
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
        if read_only.__class__ is not bool or (causal is not None and causal.__class__ is not bool):
            check_borrow(read_only, causal)  # raises; the test is inlined for the hot path
        steering = self._steering
        if not read_only:
            pools = steering.writers
        elif causal or (causal is None and self._settings.causal):
            return self._borrow(True, True, timeout, _monotonic())
        else:
            pools = steering.readers
        started = _monotonic()
        failure: Optional[BaseException] = None
        if timeout is None and pools:
            pool = pools[0] if len(pools) == 1 else steering.pick(pools)
            try:
                return pool.get_conn()
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                if _driver.is_fatal_connect_error(exc):
                    raise
                self._node_failed(pool._node, exc)
                failure = exc
            except PoolTimeout as exc:
                failure = exc
        # The quick path's time and failure count: no second full wait after it.
        return self._borrow(read_only, False, timeout, started, failure)

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
                with self._changed:
                    if attempt.routing_unchanged():
                        self._changed.wait(limit)
                attempt.waited_for_routing()
                continue
            try:
                conn = pool.get_conn(attempt.remaining)
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError, PoolTimeout) as exc:
                if is_connect_error(exc):
                    if _driver.is_fatal_connect_error(exc):
                        raise  # wrong password, unknown database: no other node will do better
                    self.reprobe(pool._node.index)
                attempt.pool_failed(pool, pool._node, exc)
                continue
            if attempt.causal and not self._make_causal(pool, conn, attempt.deadline):
                attempt.not_caught_up(pool, pool._node)
                continue
            attempt.lent(pool)
            return conn

    def release(self, conn: PooledConnection, failed: bool = False) -> None:
        """Give a borrowed connection back to its node's pool."""
        try:
            pool: Any = conn.lender
        except AttributeError:
            pool = None
        if pool not in self._pools:
            raise ReturnConnectionToPoolError(f"this connection was not lent by cluster {self.name!r}")
        pool.release(conn, failed)

    # -- causal reads ---------------------------------------------------------

    def _took_gtid(self, gtid: str) -> bool:
        """A tracked connection's hook: the GTID its COMMIT reported."""
        return self._steering.took_gtid(gtid)

    def _on_return(self, node: NodeState, raw: Any, failed: bool) -> None:
        """What a return needs beyond the node pool's own work (rare path)."""
        if failed:
            # Inside ``with``'s __exit__ the block's exception is the one being handled.
            exc = sys.exc_info()[1]
            if exc is not None and self._steering.borrower_error(node, exc):
                self.reprobe(node.index)
        if getattr(raw, "wrote", True) is not False:
            self._after_write(node, raw)
        if getattr(raw, "sync_wait_on", False):
            self._end_sync_wait(raw)

    def _after_write(self, node: NodeState, raw: Any) -> None:
        """A borrow wrote, and its connection could not report the position
        (no ``last_gtid`` tracking): read it, within connect_timeout."""
        tracked = getattr(raw, "wrote", None) is not None
        if tracked:
            raw.wrote = False
        steering = self._steering
        if not steering.reads_gtid_after_write(node, tracked):
            return
        try:
            row = _driver.fetch_one(raw, "SELECT @@gtid_binlog_pos", timeout=self._connect_timeout)
        except BaseException as exc:
            steering.causal_unknown = True  # causal reads go to the primary until a position is known again
            _driver.force_close(raw)  # frozen or interrupted mid-answer: the pool discards it as broken
            if not isinstance(exc, Exception):
                raise
            logger.info("cluster %r: could not read the GTID after a write on %s: %s", self.name, node.address, exc)
            return
        if not steering.took_gtid(str(row[0] or "") if row else ""):
            steering.causal_unknown = True

    def _make_causal(self, pool: _NodePool, conn: PooledConnection, deadline: float) -> bool:
        """Wait until the borrowed node holds every write seen so far. False
        (connection given back) when it cannot in time."""
        raw = conn.raw
        remaining = max(deadline - _monotonic(), 0.0)
        try:
            kind, args, limit = self._steering.causal_plan(pool, pool._node, remaining)
            if kind == "sync_wait":
                _driver.fetch_one(raw, "SET SESSION wsrep_sync_wait=1", timeout=limit)
                raw.sync_wait_on = True
                return True
            if kind == "none":
                return True
            row = _driver.fetch_one(raw, "SELECT MASTER_GTID_WAIT(%s, %s)", args, limit)
            if row is not None and row[0] == 0:
                return True
        except BaseException as exc:
            interrupted = not isinstance(exc, Exception)
            if interrupted:
                _driver.force_close(raw)  # stopped mid-wait: the session cannot be reused
            else:
                logger.info("cluster %r: causal wait on %s failed: %s", self.name, pool._node.address, exc)
            pool.release(conn, True)
            if interrupted:
                raise
            return False
        pool.release(conn)
        return False

    def _end_sync_wait(self, raw: Any) -> None:
        raw.sync_wait_on = False
        try:
            _driver.fetch_one(raw, "SET SESSION wsrep_sync_wait=0", timeout=self._connect_timeout)
        except Exception:
            _driver.force_close(raw)  # the pool discards it as broken

    # -- errors that move the traffic ----------------------------------------

    def _node_failed(self, node: NodeState, exc: BaseException) -> None:
        """A borrow from ``node`` failed: probe it now, route around it meanwhile."""
        self._steering.node_failed(node, exc)
        self.reprobe(node.index)

    def reprobe(self, index: int) -> None:
        """Probe node ``index`` now instead of at its next turn (an error said it changed)."""
        node = self._steering.reprobe(index)
        node.pool.suspect_idle()  # one bad connection: check the idle others before use
        self._wake.set()

    # -- the monitor -----------------------------------------------------------

    def _monitor_loop(self) -> None:
        """Schedule probes and publish the routing. Each probe runs on its own
        worker, so a node that hangs (SIGSTOP, a black-holed link) delays
        neither the probes of the others nor the routing they change."""
        steering = self._steering
        started: Set[threading.Thread] = set()  # joined by close(): each worker adds itself as it starts
        self._probe_workers = started
        workers = ThreadPoolExecutor(
            max_workers=len(steering.nodes),
            thread_name_prefix=f"pymysqlpool-probe-{self.name}",
            initializer=lambda: started.add(threading.current_thread()),
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
            workers.shutdown(wait=False)

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
        with self._changed:
            changed = steering.publish()
            if steering.probed_once:
                self._first_round.set()
            if changed:
                self._changed.notify_all()

    # -- closing and stats -----------------------------------------------------

    def close(self) -> None:
        """Stop the monitor and close every node's pool. Safe to call twice:
        whatever a first call could not close, the second closes."""
        self._steering.closed = True
        self._wake.set()
        with self._changed:
            self._changed.notify_all()
        try:
            if threading.current_thread() is not self._monitor:
                deadline = _monotonic() + self._settings.probe_timeout * 3 + 5
                self._monitor.join(deadline - _monotonic())
                # A probe in flight ends within probe_timeout: wait for its worker, so that
                # no thread of the cluster outlives close().
                for worker in list(self._probe_workers):
                    if worker is not threading.current_thread():
                        worker.join(max(deadline - _monotonic(), 0.0))
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
        return self._first_round.wait(timeout)

    def wait_ready(self, timeout: float = 10.0, read_only: bool = False) -> bool:
        """Wait until a writer (or a reader) is known; True if one is.
        PoolClosed once the cluster is closed."""
        deadline = _monotonic() + timeout
        steering = self._steering
        with self._changed:
            while True:
                if steering.closed:
                    raise steering.close_error()
                if steering.readers if read_only else steering.writers:
                    break
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True
