"""ClusterPool: one pool per server of a replication or Galera cluster, borrows routed by role.

A monitor thread probes every node (see ``_topology``) and publishes the
routing as tuples of node pools; a borrow reads those tuples and asks the
chosen node's ``ConnectionPool`` for a connection, so the hot path takes no
lock but the node pool's own. The pool follows a failover, it never performs
one: roles come from the servers, never from the order of the hosts.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union

import pymysql

from . import _driver, _topology, _urls
from .connection import PooledConnection
from .errors import PoolClosed, PoolTimeout, ReturnConnectionToPoolError, SplitBrainError
from .pool import ConnectionPool

__all__ = ["ClusterPool", "parse_cluster_url"]

logger = logging.getLogger("pymysqlpool")

_monotonic = time.monotonic
_BACKOFF_CAP = 2.0  # longest pause between probes of a node that does not answer
_CAUSAL_WAIT = 1.0  # longest MASTER_GTID_WAIT before a causal read goes to the primary
_CLIENT_SLACK = 0.25  # a server-side wait's answer may take this much longer to arrive

Host = Tuple[str, int]


def parse_cluster_url(url: str) -> Tuple[Dict[str, Any], List[Host]]:
    """``mysql://user:pw@h1:p1,h2:p2/db?charset=...`` -> (keywords, [(host, port), ...]).

    The rules of every URL of this package (``_urls``); query parameters are
    connection and pool keywords, others are refused."""
    parsed = _urls.parse(url, query_keys=_URL_KEYS, what="cluster URL")
    return parsed.connect_kwargs(), parsed.hosts


_URL_KEYS = _urls.CONNECT_QUERY_KEYS | _urls.POOL_QUERY_KEYS
_PROBE_TIMEOUT_MAX = 60.0  # a probe that may wait longer than this would hide a dead node for minutes
# Errors no other node and no retry can fix: the account or the database is wrong.
_CONFIG_ERRORS = frozenset({1045, 1044, 1049, 1698, 1251})
_NO_MONITOR_PRIVILEGE = 1227  # SHOW ALL SLAVES STATUS without SLAVE MONITOR / SUPER


_base_release = ConnectionPool.release
_TRACKED = _driver.WriteTrackingConnection


class _NodePool(ConnectionPool):
    """A node's pool. On return it notices, from what the borrower already
    saw, that the borrow wrote (for causal reads) or met an error."""

    _node: _Node

    def _dial(self, kwargs: Any, limit: float) -> Any:
        # Connections that report their writes (causal reads), with the
        # pool's TLS contexts and its keep-alive below the node's wait_timeout.
        raw = _driver.connect_tracking_writes(kwargs, limit, self._tls)
        if isinstance(raw, _TRACKED):
            raw.gtid_hook = self._node.cluster._took_gtid  # the position is known at the COMMIT
        return raw

    def release(self, conn: PooledConnection, failed: bool = False) -> None:
        raw = conn._raw
        # One test in the common case: a clean borrow on a connection that reports its writes.
        if (failed or raw.__class__ is not _TRACKED or raw.wrote or raw.sync_wait_on) and raw is not None:
            try:
                self._node.cluster._on_return(self._node, raw, failed)
            finally:  # interrupted or not, the connection goes back (a broken one is discarded)
                _base_release(self, conn, failed)
            return
        _base_release(self, conn, failed)


class _NodeEvents:
    """Pool events of one node: a connection closed for a wrong-node error
    (1290 read-only, 1047 not in the primary component) means the node's
    role changed, whoever borrowed it and however it was given back."""

    def __init__(self, node: _Node) -> None:
        self._node = node

    def on_close(self, raw: Any, reason: str) -> None:
        if reason == "closed_wrong_node":
            node = self._node
            node.wrong_node_errors += 1
            node.cluster.reprobe(node.index)


class _Node:
    """One server: its pool, its probe connection and what the monitor knows."""

    def __init__(self, cluster: ClusterPool, index: int, host: str, port: int, pool: _NodePool) -> None:
        self.cluster = cluster
        self.index = index
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.pool = pool
        self.facts: Optional[_topology.NodeFacts] = None
        self.failures = 0
        self.next_probe = 0.0
        self.urgent = False
        self.busy = False  # a probe is running on a worker
        self.last_error = ""
        self.probe_raw: Any = None
        self.probed_at: Optional[float] = None
        self.wrong_node_errors = 0
        self.gone_errors = 0
        self.config_error: Optional[BaseException] = None  # the probe met 1045/1044/1049/1227
        self.duplicate_of: Optional[int] = None  # the earlier node that is the same server


class ClusterPool:
    """A pool over the servers of a MariaDB/MySQL replication or Galera cluster.

    ``ClusterPool("mysql://u:pw@h1:p1,h2:p2,h3:p3/db", maxsize=10)`` or
    ``ClusterPool(hosts=[(h, p), ...], user=..., password=..., database=...)``.
    Every ``ConnectionPool`` keyword applies per node (``maxsize`` is per node).
    Borrows are writes unless ``read_only=True``; see ``docs/cluster.md``.
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
        url_kwargs: Dict[str, Any] = {}
        url_hosts: List[Host] = []
        if url is not None:
            url_kwargs, url_hosts = parse_cluster_url(url)
        if hosts is not None and url_hosts:
            raise TypeError("give the nodes once: in the URL or as hosts=, not both")
        nodes = _urls.parse_hosts(hosts) if hosts is not None else url_hosts
        if not nodes:
            raise ValueError("ClusterPool needs at least one node (a URL or hosts=)")
        if len(set(nodes)) != len(nodes):
            raise ValueError("ClusterPool got the same node twice")
        for key in ("host", "port", "unix_socket"):
            if key in pool_kwargs:
                raise TypeError(f"ClusterPool() takes no {key}=: the nodes come from the URL or hosts=")
        self._max_lag = _seconds("max_lag", max_lag)
        interval = _seconds("probe_interval", probe_interval)
        if not 0 < interval <= 1.0:
            raise ValueError(f"probe_interval must be > 0 and <= 1 second, got {probe_interval}")
        self._probe_interval = interval
        probe_limit = _seconds("probe_timeout", probe_timeout)
        if not 0 < probe_limit <= _PROBE_TIMEOUT_MAX:
            raise ValueError(f"probe_timeout must be > 0 and <= {_PROBE_TIMEOUT_MAX:g} seconds, got {probe_timeout!r}")
        self._probe_timeout = probe_limit
        if galera_writer not in ("single", "spread"):
            raise ValueError(f"galera_writer must be 'single' or 'spread', got {galera_writer!r}")
        if balance not in ("least_borrowed", "round_robin"):
            raise ValueError(f"balance must be 'least_borrowed' or 'round_robin', got {balance!r}")
        for flag, value in (
            ("causal", causal),
            ("read_fallback_to_primary", read_fallback_to_primary),
            ("require_all_nodes", require_all_nodes),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {value!r}")
        self._causal = causal
        self._fallback = read_fallback_to_primary
        self._galera_writer = galera_writer
        self._round_robin = balance == "round_robin"
        self._turn = 0
        kwargs = {**url_kwargs, **pool_kwargs}
        base = str(kwargs.pop("pool_name", None) or kwargs.pop("name", None) or "cluster")
        self.name = base
        self._connect_kwargs = {k: v for k, v in kwargs.items() if k in _driver.CONNECT_PARAMETERS}
        # The routing, published by the monitor (replaced whole, read without a lock).
        self._routing = _topology.Routing(_topology.UNKNOWN, (), (), "not probed yet")
        self._writers: Tuple[_NodePool, ...] = ()
        self._readers: Tuple[_NodePool, ...] = ()
        self._changed = threading.Condition(threading.Lock())
        self._version = 0
        self._closed = False
        self._history = _topology.History(len(nodes))
        # Causal reads: the primary's GTID position after the last write seen.
        self._causal_lock = threading.Lock()
        self._causal_pos: Dict[int, Tuple[int, int]] = {}  # domain -> (server_id, seq)
        self._causal_text = ""
        self._causal_unknown = False  # a write whose position could not be read
        self._stats = {"causal_waits": 0, "causal_fallbacks": 0, "rerouted": 0, "write_waits": 0}
        self._nodes: List[_Node] = []
        try:
            # Built closed (open=False): every node's keywords are validated before any node connects.
            for index, (host, port) in enumerate(nodes):
                pool = _NodePool(pool_name=f"{base}/{host}:{port}", host=host, port=port, **{**kwargs, "open": False})
                node = _Node(self, index, host, port, pool)
                pool._node = node
                pool.add_events(_NodeEvents(node))
                self._nodes.append(node)
            for node in self._nodes:
                self._open_node(node, require_all_nodes)
        except BaseException:
            for node in self._nodes:
                node.pool.close()
            raise
        self._pools = frozenset(n.pool for n in self._nodes)
        self._timeout = self._nodes[0].pool.timeout
        self._connect_timeout = self._nodes[0].pool._config.io_timeout
        self._wake = threading.Event()
        self._first_round = threading.Event()
        self._monitor = self._start_monitor()
        _live.add(self)

    def _open_node(self, node: _Node, required: bool) -> None:
        """Open a node's pool and its ``pre_create_num`` connections. A node
        that does not answer leaves the cluster degraded, not unusable: its
        pool warms up in the background once the server answers (unless
        ``require_all_nodes``). Wrong credentials or database raise."""
        pool = node.pool
        pool._start()
        try:
            pool._prefill()
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            if required or _driver.is_fatal_connect_error(exc):
                raise
            node.last_error = str(exc)
            logger.warning("cluster %r: %s does not answer (%s); starting without it", self.name, node.address, exc)
            pool._ensure_maintenance()  # warms the node up in the background once it answers

    def _start_monitor(self) -> threading.Thread:
        thread = threading.Thread(target=self._monitor_loop, name=f"pymysqlpool-cluster-{self.name}", daemon=True)
        thread.start()
        return thread

    def _after_fork_in_child(self) -> None:
        """The child has no monitor thread and shares the parent's probe
        sockets: forget those unsent-to and probe anew (the node pools reset
        themselves). The parent's routing stands until the first probe."""
        if self._closed:
            return
        for node in self._nodes:
            if node.probe_raw is not None:
                _driver.abandon(node.probe_raw)
                node.probe_raw = None
            node.busy = False
            node.urgent = True
        self._changed = threading.Condition(threading.Lock())
        self._causal_lock = threading.Lock()
        self._wake = threading.Event()
        self._monitor = self._start_monitor()

    # -- properties like ConnectionPool's -------------------------------------

    @property
    def maxsize(self) -> int:
        """The most connections open at once, per node."""
        return self._nodes[0].pool.maxsize

    @property
    def size(self) -> int:
        return self._nodes[0].pool.size

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def available_num(self) -> int:
        """Idle connections ready to lend now, over every node."""
        return sum(n.pool.available_num for n in self._nodes)

    @property
    def total_num(self) -> int:
        """Connections open now, over every node."""
        return sum(n.pool.total_num for n in self._nodes)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def topology(self) -> str:
        """``replication``, ``galera`` or ``unknown`` (nothing answered yet)."""
        return self._routing.topology

    def __repr__(self) -> str:
        nodes = ",".join(n.address for n in self._nodes)
        return f"<ClusterPool {self.name!r} {self.topology} [{nodes}]{' closed' if self._closed else ''}>"

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
        if not read_only:
            pools = self._writers
        elif causal or (causal is None and self._causal):
            return self._borrow(True, True, timeout, _monotonic())
        else:
            pools = self._readers
        started = _monotonic()
        failure: Optional[BaseException] = None
        if timeout is None and pools:
            pool = pools[0] if len(pools) == 1 else self._pick(pools)
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

    def _pick(self, pools: Tuple[_NodePool, ...]) -> _NodePool:
        # A lost update of _turn under a race only skews the balance a little.
        self._turn = turn = self._turn + 1
        count = len(pools)
        if self._round_robin:
            # In turn, but a node whose pool is full (every connection lent) is
            # skipped while another has room: it would only make the borrow wait.
            for step in range(count):
                pool = pools[(turn + step) % count]
                if pool._open - len(pool._idle) < pool.maxsize:
                    return pool
            return pools[turn % count]
        # Least borrowed, ties broken by a rotating start so idle nodes share the reads.
        best = pools[turn % count]
        least = best._open - len(best._idle)
        for step in range(1, count):
            pool = pools[(turn + step) % count]
            borrowed = pool._open - len(pool._idle)
            if borrowed < least:
                best, least = pool, borrowed
        return best

    def _borrow(
        self,
        read_only: bool,
        causal: bool,
        timeout: Optional[float],
        started: float,
        last_error: Optional[BaseException] = None,
    ) -> PooledConnection:
        """Every borrow but the common case: waits for the role to appear,
        steps over nodes that fail, and makes causal reads wait. Ends within
        ``timeout`` (from ``started``) plus one node pool's connect_timeout:
        once a node failed, no node is asked after the deadline."""
        if self._closed:
            raise PoolClosed(f"cluster {self.name!r} is closed")
        wait = self._timeout if timeout is None else _seconds("timeout", timeout)
        deadline = started + wait
        failed: set[_NodePool] = set()
        waited = False
        primary_only = False  # a causal read whose replica could not catch up in time
        while True:
            if self._closed:
                raise PoolClosed(f"cluster {self.name!r} is closed")
            routing = self._routing
            version = self._version
            if not read_only and routing.split_brain:
                raise SplitBrainError(f"cluster {self.name!r}: {self._describe_problem(routing)}")
            pools = self._writers if not read_only or primary_only else self._readers
            if causal and read_only and self._causal_unknown:
                pools = self._writers  # a write we could not place: only the primary is sure to have it
            candidates = tuple(p for p in pools if p not in failed)
            remaining = deadline - _monotonic()
            if candidates and (remaining > 0 or last_error is None):
                pool = candidates[0] if len(candidates) == 1 else self._pick(candidates)
                try:
                    conn = pool.get_conn(max(remaining, 0.0))
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                    if _driver.is_fatal_connect_error(exc):
                        raise  # wrong password, unknown database: no other node will do better
                    self._node_failed(pool._node, exc)
                    failed.add(pool)
                    last_error = exc
                    continue
                except PoolTimeout as exc:
                    failed.add(pool)
                    last_error = exc
                    continue
                if causal and read_only:
                    outcome = self._make_causal(pool, conn, deadline)
                    if outcome is None:  # not caught up in time: the primary has every write
                        failed.add(pool)
                        primary_only = True
                        last_error = PoolTimeout(f"{pool._node.address} did not catch up with the writes in time")
                        continue
                    if pool not in self._readers or primary_only:
                        self._stats["causal_fallbacks"] += 1
                if waited and not read_only:
                    self._stats["write_waits"] += 1
                return conn
            fatal = self._config_error()
            if fatal is not None:
                raise fatal
            if remaining <= 0:
                role = "reader (replica within max_lag or primary)" if read_only else "writer (primary)"
                raise PoolTimeout(
                    f"cluster {self.name!r}: no {role} within {wait:.3g} s: {self._describe_problem(routing)}"
                ) from last_error
            waited = True
            with self._changed:
                if self._version == version:
                    self._changed.wait(min(remaining, self._probe_interval))
                if self._version != version:
                    failed.clear()  # a new routing: every node gets another chance

    def _config_error(self) -> Optional[BaseException]:
        """An error of the account or database that a node's probe met (1045,
        1044, 1049, a missing monitor privilege): no wait can fix it."""
        for node in self._nodes:
            if node.config_error is not None:
                return node.config_error
        return None

    def _problem_text(self, routing: _topology.Routing) -> str:
        """The routing's problem with node addresses instead of indexes."""
        problem = routing.problem
        for node in self._nodes:
            problem = problem.replace(f"#{node.index}", node.address)
        return problem

    def _describe_problem(self, routing: _topology.Routing) -> str:
        problem = self._problem_text(routing) or "every eligible node failed"
        states = ", ".join(f"{n.address}={_topology.role_of(n.facts)}" for n in self._nodes)
        return f"{problem} [{states}]"

    def release(self, conn: PooledConnection, failed: bool = False) -> None:
        """Give a borrowed connection back to its node's pool."""
        try:
            pool = conn._pool
        except AttributeError:
            pool = None
        if pool not in self._pools:
            raise ReturnConnectionToPoolError(f"this connection was not lent by cluster {self.name!r}")
        pool.release(conn, failed)

    # -- causal reads ---------------------------------------------------------

    def _on_return(self, node: _Node, raw: Any, failed: bool) -> None:
        """What a return needs beyond the node pool's own work (rare path)."""
        if failed:
            # Inside ``with``'s __exit__ the block's exception is the one being handled.
            exc = sys.exc_info()[1]
            if exc is not None:
                self._borrower_error(node, exc)
        if getattr(raw, "wrote", True) is not False:
            self._after_write(node, raw)
        if getattr(raw, "sync_wait_on", False):
            self._end_sync_wait(raw)

    def _after_write(self, node: _Node, raw: Any) -> None:
        """A borrow wrote, and its connection could not report the position
        (no ``last_gtid`` tracking): read it, within connect_timeout."""
        tracked = getattr(raw, "wrote", None) is not None
        if tracked:
            raw.wrote = False
        facts = node.facts
        if facts is not None and facts.galera:
            return  # Galera reads wait with wsrep_sync_wait instead
        if not tracked and not self._causal:
            return  # a connection we cannot watch: pay the round trip only when causal reads are on
        try:
            row = _driver.fetch_one(raw, "SELECT @@gtid_binlog_pos", timeout=self._connect_timeout)
        except BaseException as exc:
            self._causal_unknown = True  # causal reads go to the primary until a position is known again
            if not isinstance(exc, Exception):
                _driver.force_close(raw)  # interrupted mid-answer: the session cannot be reused
                raise
            _driver.force_close(raw)  # a frozen server: the pool discards it as broken
            logger.info("cluster %r: could not read the GTID after a write on %s: %s", self.name, node.address, exc)
            return
        if not self._took_gtid(str(row[0] or "") if row else ""):
            self._causal_unknown = True

    def _took_gtid(self, text: str) -> bool:
        """Merge a GTID position (a COMMIT's ``last_gtid``, or a primary's
        ``@@gtid_binlog_pos``) into what causal reads wait for: the highest
        sequence number per domain. False if ``text`` is not a GTID list."""
        try:
            seen = _topology.parse_gtid(text)
        except ValueError:
            return False
        with self._causal_lock:
            pos = dict(self._causal_pos)
            for domain, (server, seq) in seen.items():
                if domain not in pos or seq > pos[domain][1]:
                    pos[domain] = (server, seq)
            self._causal_pos = pos
            self._causal_text = _topology.show_gtid(pos) if pos else ""
            self._causal_unknown = False
        return True

    def _make_causal(self, pool: _NodePool, conn: PooledConnection, deadline: float) -> Optional[bool]:
        """Wait until the borrowed node holds every write seen so far. None
        (connection given back) when it cannot in time. The server waits at
        most 1 s and half of what is left of the borrow (the other half is the
        primary's, to fall back to); the client at most 0.25 s longer (a
        frozen node fails with 2013 and its connection is dropped)."""
        node = pool._node
        facts = node.facts
        raw = conn._raw
        remaining = max(deadline - _monotonic(), 0.0)
        try:
            if facts is not None and facts.galera:
                _driver.fetch_one(raw, "SET SESSION wsrep_sync_wait=1", timeout=remaining + _CLIENT_SLACK)
                raw.sync_wait_on = True
                return True
            target = self._causal_text
            if not target or pool in self._writers:
                return True
            self._stats["causal_waits"] += 1
            limit = min(remaining / 2, _CAUSAL_WAIT)
            row = _driver.fetch_one(raw, "SELECT MASTER_GTID_WAIT(%s, %s)", (target, limit), limit + _CLIENT_SLACK)
            if row is not None and row[0] == 0:
                return True
        except BaseException as exc:
            interrupted = not isinstance(exc, Exception)
            if interrupted:
                _driver.force_close(raw)  # stopped mid-wait: the session cannot be reused
            else:
                logger.info("cluster %r: causal wait on %s failed: %s", self.name, node.address, exc)
            pool.release(conn, True)
            if interrupted:
                raise
            return None
        pool.release(conn)
        return None

    def _end_sync_wait(self, raw: Any) -> None:
        raw.sync_wait_on = False
        try:
            _driver.fetch_one(raw, "SET SESSION wsrep_sync_wait=0", timeout=self._connect_timeout)
        except Exception:
            _driver.force_close(raw)  # the pool discards it as broken

    # -- errors that move the traffic ----------------------------------------

    def _borrower_error(self, node: _Node, exc: BaseException) -> None:
        """An error left a ``with`` block: if it says the node is wrong or gone, probe it now.

        The node's pool closes a connection that saw a wrong-node error on
        return (``closed_wrong_node``) and one whose socket is gone
        (``closed_broken``); this only makes the routing catch up at once.
        """
        code = _driver.error_code(exc)
        if code in _driver.NODE_GONE_ERRORS:
            node.gone_errors += 1
        elif code not in _driver.WRONG_NODE_ERRORS:
            return
        logger.info("cluster %r: %s answered %s; probing the node now", self.name, node.address, code)
        self.reprobe(node.index)

    def _node_failed(self, node: _Node, exc: BaseException) -> None:
        """A borrow from ``node`` failed: probe it now, route around it meanwhile."""
        self._stats["rerouted"] += 1
        logger.info("cluster %r: borrowing from %s failed (%s); routing around it", self.name, node.address, exc)
        self.reprobe(node.index)

    def reprobe(self, index: int) -> None:
        """Probe node ``index`` now instead of at its next turn (an error said it changed)."""
        node = self._nodes[index]
        node.urgent = True
        node.pool._suspect(_monotonic())  # one bad connection: check the idle others before use
        self._wake.set()

    # -- the monitor -----------------------------------------------------------

    def _monitor_loop(self) -> None:
        """Schedule probes and publish the routing. Each probe runs on its own
        worker, so a node that hangs (SIGSTOP, a black-holed link) delays
        neither the probes of the others nor the routing they change."""
        workers = ThreadPoolExecutor(max_workers=len(self._nodes), thread_name_prefix=f"pymysqlpool-probe-{self.name}")
        try:
            while not self._closed:
                self._wake.clear()
                # Publish before the next probes start: every probe's result, a failure
                # included, is seen by the routing before that node is probed again.
                self._publish()
                now = _monotonic()
                for node in self._nodes:
                    if not node.busy and (node.urgent or now >= node.next_probe):
                        node.urgent = False
                        node.busy = True
                        workers.submit(self._probe, node)
                idle = [n.next_probe for n in self._nodes if not n.busy]
                soonest = min(idle) if idle else now + self._probe_interval
                self._wake.wait(max(soonest - _monotonic(), 0.001))
        finally:
            workers.shutdown(wait=False)

    def _probe(self, node: _Node) -> None:
        try:
            self._probe_once(node)
        finally:
            node.busy = False
            self._wake.set()

    def _probe_once(self, node: _Node) -> None:
        started = _monotonic()
        try:
            if node.probe_raw is None:
                kwargs = {
                    **self._connect_kwargs,
                    "host": node.host,
                    "port": node.port,
                    "connect_timeout": self._probe_timeout,
                    "read_timeout": self._probe_timeout,
                    "write_timeout": self._probe_timeout,
                    "autocommit": True,
                }
                # The node pool's TLS context: built once, not per probe (a down node is probed often).
                node.probe_raw = _driver.connect(kwargs, self._probe_timeout, node.pool._tls)
            facts = _topology.probe(node.probe_raw)
        except Exception as exc:
            node.config_error = self._as_config_error(node, exc)
            if node.probe_raw is not None:
                _driver.force_close(node.probe_raw)
                node.probe_raw = None
            if node.facts is not None or node.failures == 0:
                logger.warning("cluster %r: node %s does not answer: %s", self.name, node.address, exc)
                # Borrowers must not keep dialing a dead node until their timeout:
                # its pool now gives up on the first failed connect.
                node.pool._life.ever_connected = False
                node.pool._suspect(_monotonic())  # its idle connections are pinged before use
            node.facts = None
            node.failures += 1
            node.probed_at = started
            node.last_error = str(exc)
            backoff = min(self._probe_interval * 2 ** (node.failures - 1), _BACKOFF_CAP)
            node.next_probe = _monotonic() + backoff
            return
        node.facts = facts
        node.config_error = None
        node.failures = 0
        node.last_error = facts.last_error
        node.probed_at = started
        node.next_probe = started + self._probe_interval

    def _as_config_error(self, node: _Node, exc: BaseException) -> Optional[BaseException]:
        """A probe error that only a change of the account or the database
        can fix, as the error borrowers get at once (node and server message)."""
        code = _driver.error_code(exc)
        if code == _NO_MONITOR_PRIVILEGE:
            user = self._connect_kwargs.get("user") or "<user>"
            hint = (
                f"the account needs the SLAVE MONITOR privilege (MariaDB 10.5+, alias REPLICA MONITOR; SUPER"
                f" before 10.5) to read replication status: GRANT SLAVE MONITOR ON *.* TO '{user}'@'<host>'"
            )
        elif code in _CONFIG_ERRORS:
            hint = "fix the user, password or database of the cluster"
        else:
            return None
        message = exc.args[1] if len(exc.args) > 1 else str(exc)
        error = pymysql.err.OperationalError(code, f"cluster {self.name!r}: node {node.address}: {message}; {hint}")
        error.__cause__ = exc
        return error

    def _publish(self) -> None:
        if any(n.probed_at is None and n.failures == 0 for n in self._nodes):
            return  # the first round is not complete: "nothing answers" would be a false alarm
        self._first_round.set()
        current = self._routing.writers[0] if len(self._routing.writers) == 1 else None
        history = self._history
        facts = history.update([n.facts for n in self._nodes])
        routing = _topology.route(
            facts,
            max_lag=self._max_lag,
            galera_writer=self._galera_writer,
            read_fallback_to_primary=self._fallback,
            current_writer=current,
            suspects=history.blocked(),
        )
        if routing.topology == _topology.REPLICATION and len(routing.writers) == 1:
            history.writer = routing.writers[0]
        for node in self._nodes:
            first = history.duplicates.get(node.index)
            if first != node.duplicate_of:
                node.duplicate_of = first
                if first is not None:
                    logger.warning(
                        "cluster %r: %s is the same server as %s (same @@hostname, @@port, @@datadir, @@server_id):"
                        " left out of the routing",
                        self.name,
                        node.address,
                        self._nodes[first].address,
                    )
        if routing == self._routing:
            return
        old = self._routing
        writers = tuple(self._nodes[i].pool for i in routing.writers)
        readers = tuple(self._nodes[i].pool for i in routing.readers)
        with self._changed:
            self._routing = routing
            self._writers = writers
            self._readers = readers
            self._version += 1
            self._changed.notify_all()
        if routing.writers != old.writers or routing.problem != old.problem:
            names = ", ".join(self._nodes[i].address for i in routing.writers) or "none"
            log = logger.warning if routing.problem else logger.info
            log("cluster %r: %s, writer(s): %s %s", self.name, routing.topology, names, routing.problem)

    # -- closing and stats -----------------------------------------------------

    def close(self) -> None:
        """Stop the monitor and close every node's pool. Safe to call twice:
        whatever a first call could not close, the second closes."""
        self._closed = True
        self._wake.set()
        with self._changed:
            self._changed.notify_all()
        try:
            if threading.current_thread() is not self._monitor:
                self._monitor.join(self._probe_timeout * 3 + 5)
        finally:
            errors: List[BaseException] = []
            for node in self._nodes:
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

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def node_pools(self) -> List[ConnectionPool]:
        """Each node's ``ConnectionPool``, in the order the nodes were given
        (named ``<cluster name>/<host>:<port>``; for metrics per node)."""
        return [node.pool for node in self._nodes]

    def wait_probed(self, timeout: float = 10.0) -> bool:
        """Wait until every node was probed once (answered or not); True if so."""
        return self._first_round.wait(timeout)

    def wait_ready(self, timeout: float = 10.0, read_only: bool = False) -> bool:
        """Wait until a writer (or a reader) is known; True if one is."""
        deadline = _monotonic() + timeout
        with self._changed:
            while not (self._readers if read_only else self._writers):
                remaining = deadline - _monotonic()
                if remaining <= 0 or self._closed:
                    return False
                self._changed.wait(remaining)
        return True

    def get_stats(self) -> Dict[str, Any]:
        """Summed pool counters, the topology, and per node its role, state, lag and counters."""
        routing = self._routing
        total: Dict[str, Any] = {}
        nodes: Dict[str, Any] = {}
        for node in self._nodes:
            stats = node.pool.get_stats()
            for key, value in stats.items():
                total[key] = total.get(key, 0) + value
            facts = node.facts
            first = node.duplicate_of
            nodes[node.address] = {
                "role": _topology.role_of(facts) if first is None else "duplicate",
                "writer": node.index in routing.writers,
                "reader": node.index in routing.readers,
                "read_only": None if facts is None else facts.read_only,
                "lag": None if facts is None else facts.lag,
                "replicating": None if facts is None else facts.replicating,
                "gtid": None if facts is None else facts.gtid,
                "wsrep_state": None if facts is None or not facts.galera else facts.wsrep_state,
                "answer_ms": None if facts is None else round(facts.answer_ms, 3),
                "last_error": node.last_error if first is None else f"the same server as {self._nodes[first].address}",
                "probe_failures": node.failures,
                "wrong_node_errors": node.wrong_node_errors,
                "gone_errors": node.gone_errors,
                **stats,
            }
        total.update(self._stats)
        total["topology"] = routing.topology
        total["problem"] = self._problem_text(routing)
        total["nodes"] = nodes
        return total


_live: weakref.WeakSet[ClusterPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cluster in list(_live):
        cluster._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _hosts(hosts: Sequence[Union[Host, str]]) -> List[Host]:
    out: List[Host] = []
    for item in hosts:
        if isinstance(item, str):
            name, _, number = item.rpartition(":") if ":" in item else (item, "", "3306")
            out.append((name, int(number)))
        else:
            host, port = item
            if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
                raise TypeError(f"hosts= takes (host, port) pairs or 'host:port' strings, got {item!r}")
            out.append((host, port))
    return out


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)
