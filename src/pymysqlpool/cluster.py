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
from urllib.parse import unquote, urlsplit

import pymysql

from . import _driver, _topology
from .connection import PooledConnection
from .errors import PoolClosed, PoolTimeout, ReturnConnectionToPoolError, SplitBrainError
from .pool import ConnectionPool

__all__ = ["ClusterPool", "parse_cluster_url"]

logger = logging.getLogger("pymysqlpool")

_monotonic = time.monotonic
_BACKOFF_CAP = 2.0  # longest pause between probes of a node that does not answer
_CAUSAL_WAIT = 1.0  # longest MASTER_GTID_WAIT before a causal read goes to the primary

Host = Tuple[str, int]


def parse_cluster_url(url: str) -> Tuple[Dict[str, Any], List[Host]]:
    """``mysql://user:pw@h1:p1,h2:p2/db`` -> (connect keywords, [(host, port), ...])."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        raise ValueError(f"cluster URL must start with mysql://, got {parts.scheme!r}://")
    netloc = parts.netloc
    userinfo, _, hostlist = netloc.rpartition("@")
    kwargs: Dict[str, Any] = {}
    if userinfo:
        user, colon, password = userinfo.partition(":")
        kwargs["user"] = unquote(user)
        if colon:
            kwargs["password"] = unquote(password)
    hosts: List[Host] = []
    for item in hostlist.split(","):
        host, colon, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"cluster URL has an empty host in {hostlist!r}")
        try:
            number = int(port) if colon else 3306
        except ValueError:
            raise ValueError(f"cluster URL has a bad port {port!r}") from None
        if not 0 < number < 65536:
            raise ValueError(f"cluster URL has a bad port {number}")
        hosts.append((unquote(host), number))
    path = parts.path.lstrip("/")
    if path:
        kwargs["database"] = unquote(path)
    return kwargs, hosts


_base_release = ConnectionPool.release
_TRACKED = _driver.WriteTrackingConnection


class _NodePool(ConnectionPool):
    """A node's pool. On return it notices, from what the borrower already
    saw, that the borrow wrote (for causal reads) or met an error."""

    _node: _Node

    def _dial(self, kwargs: Any, limit: float) -> Any:
        # Connections that report their writes (causal reads), with the
        # pool's TLS contexts and its keep-alive below the node's wait_timeout.
        return _driver.connect_tracking_writes(kwargs, limit, self._tls)

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
        **pool_kwargs: Any,
    ) -> None:
        url_kwargs: Dict[str, Any] = {}
        url_hosts: List[Host] = []
        if url is not None:
            url_kwargs, url_hosts = parse_cluster_url(url)
        if hosts is not None and url_hosts:
            raise TypeError("give the nodes once: in the URL or as hosts=, not both")
        nodes = _hosts(hosts) if hosts is not None else url_hosts
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
        self._probe_timeout = _seconds("probe_timeout", probe_timeout) or 1.0
        if galera_writer not in ("single", "spread"):
            raise ValueError(f"galera_writer must be 'single' or 'spread', got {galera_writer!r}")
        if balance not in ("least_borrowed", "round_robin"):
            raise ValueError(f"balance must be 'least_borrowed' or 'round_robin', got {balance!r}")
        for flag, value in (("causal", causal), ("read_fallback_to_primary", read_fallback_to_primary)):
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
        self._nodes: List[_Node] = []
        try:
            for index, (host, port) in enumerate(nodes):
                pool = _NodePool(pool_name=f"{base}/{host}:{port}", host=host, port=port, **kwargs)
                node = _Node(self, index, host, port, pool)
                pool._node = node
                pool.add_events(_NodeEvents(node))
                self._nodes.append(node)
        except BaseException:
            for node in self._nodes:
                node.pool.close()
            raise
        self._pools = frozenset(n.pool for n in self._nodes)
        self._timeout = self._nodes[0].pool.timeout
        # The routing, published by the monitor (replaced whole, read without a lock).
        self._routing = _topology.Routing(_topology.UNKNOWN, (), (), "not probed yet")
        self._writers: Tuple[_NodePool, ...] = ()
        self._readers: Tuple[_NodePool, ...] = ()
        self._changed = threading.Condition(threading.Lock())
        self._version = 0
        self._closed = False
        # Causal reads: the primary's GTID position after the last write seen.
        self._causal_lock = threading.Lock()
        self._causal_pos: Dict[int, Tuple[int, int]] = {}  # domain -> (server_id, seq)
        self._causal_text = ""
        self._causal_unknown = False  # a write whose position could not be read
        self._stats = {"causal_waits": 0, "causal_fallbacks": 0, "rerouted": 0, "write_waits": 0}
        self._wake = threading.Event()
        self._first_round = threading.Event()
        self._monitor = self._start_monitor()
        _live.add(self)

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
            return self._borrow(True, True, timeout)
        else:
            pools = self._readers
        if timeout is None and pools:
            pool = pools[0] if len(pools) == 1 else self._pick(pools)
            try:
                return pool.get_conn()
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                if _driver.is_fatal_connect_error(exc):
                    raise
                self._node_failed(pool._node, exc)
        return self._borrow(read_only, False, timeout)

    connection = get_conn

    def get_connection(
        self, retry_num: int = 3, retry_interval: float = 0.1, pre_ping: bool = False
    ) -> PooledConnection:
        """0.5.0 API: a writer, waiting up to ``retry_num * retry_interval`` seconds."""
        return self._borrow(False, False, min(retry_num, 10) * retry_interval)

    def _pick(self, pools: Tuple[_NodePool, ...]) -> _NodePool:
        # A lost update of _turn under a race only skews the balance a little.
        self._turn = turn = self._turn + 1
        count = len(pools)
        if self._round_robin:
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

    def _borrow(self, read_only: bool, causal: bool, timeout: Optional[float]) -> PooledConnection:
        """Every borrow but the common case: waits for the role to appear,
        steps over nodes that fail, and makes causal reads wait."""
        if self._closed:
            raise PoolClosed(f"cluster {self.name!r} is closed")
        wait = self._timeout if timeout is None else _seconds("timeout", timeout)
        deadline = _monotonic() + wait
        failed: set[_NodePool] = set()
        waited = False
        while True:
            if self._closed:
                raise PoolClosed(f"cluster {self.name!r} is closed")
            routing = self._routing
            version = self._version
            pools = self._readers if read_only else self._writers
            if not read_only and routing.split_brain:
                raise SplitBrainError(f"cluster {self.name!r}: {self._describe_problem(routing)}")
            candidates = tuple(p for p in pools if p not in failed)
            if causal and read_only and self._causal_unknown:
                candidates = self._writers  # a write we could not place: only the primary is sure to have it
            if candidates:
                pool = candidates[0] if len(candidates) == 1 else self._pick(candidates)
                remaining = max(deadline - _monotonic(), 0.0)
                try:
                    conn = pool.get_conn(remaining)
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                    if _driver.is_fatal_connect_error(exc):
                        raise  # wrong password, unknown database: no other node will do better
                    self._node_failed(pool._node, exc)
                    failed.add(pool)
                    continue
                except PoolTimeout:
                    if _monotonic() >= deadline:
                        raise
                    failed.add(pool)
                    continue
                if causal and read_only and not self._make_causal(pool, conn, deadline):
                    failed.add(pool)
                    continue
                if waited and not read_only:
                    self._stats["write_waits"] += 1
                return conn
            remaining = deadline - _monotonic()
            if remaining <= 0:
                role = "reader (replica within max_lag or primary)" if read_only else "writer (primary)"
                raise PoolTimeout(
                    f"cluster {self.name!r}: no {role} within {wait:.3g} s: {self._describe_problem(routing)}"
                )
            waited = True
            with self._changed:
                if self._version == version:
                    self._changed.wait(min(remaining, self._probe_interval))
                if self._version != version:
                    failed.clear()  # a new routing: every node gets another chance

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
        """A borrow wrote (or may have): remember the position it reached."""
        tracked = getattr(raw, "wrote", None) is not None
        if tracked:
            raw.wrote = False
        facts = node.facts
        if facts is not None and facts.galera:
            return  # Galera reads wait with wsrep_sync_wait instead
        if not tracked and not self._causal:
            return  # a connection we cannot watch: pay the round trip only when causal reads are on
        try:
            with raw.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute("SELECT @@gtid_binlog_pos")
                row = cur.fetchone()
        except BaseException as exc:
            self._causal_unknown = True  # causal reads go to the primary until a position is known again
            if not isinstance(exc, Exception):
                _driver.force_close(raw)  # interrupted mid-answer: the session cannot be reused
                raise
            logger.info("cluster %r: could not read the GTID after a write on %s: %s", self.name, node.address, exc)
            return
        self._merge_position(str(row[0] or "") if row else "")

    def _merge_position(self, text: str) -> None:
        with self._causal_lock:
            pos = dict(self._causal_pos)
            for part in filter(None, (p.strip() for p in text.split(","))):
                domain, server, seq = (int(x) for x in part.split("-"))
                if domain not in pos or seq > pos[domain][1]:
                    pos[domain] = (server, seq)
            self._causal_pos = pos
            self._causal_text = ",".join(f"{d}-{s}-{q}" for d, (s, q) in sorted(pos.items()))
            self._causal_unknown = False

    def _make_causal(self, pool: _NodePool, conn: PooledConnection, deadline: float) -> bool:
        """Wait until the borrowed node holds every write seen so far; False
        (connection given back) when it cannot in time."""
        node = pool._node
        facts = node.facts
        raw = conn._raw
        try:
            if facts is not None and facts.galera:
                with raw.cursor(pymysql.cursors.Cursor) as cur:
                    cur.execute("SET SESSION wsrep_sync_wait=1")
                raw.sync_wait_on = True
                return True
            target = self._causal_text
            if not target or pool in self._writers:
                return True
            self._stats["causal_waits"] += 1
            limit = max(min(deadline - _monotonic(), _CAUSAL_WAIT), 0.0)
            with raw.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (target, limit))
                row = cur.fetchone()
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
            return False
        self._stats["causal_fallbacks"] += 1
        pool.release(conn)
        return False

    @staticmethod
    def _end_sync_wait(raw: Any) -> None:
        raw.sync_wait_on = False
        try:
            with raw.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute("SET SESSION wsrep_sync_wait=0")
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
                now = _monotonic()
                for node in self._nodes:
                    if not node.busy and (node.urgent or now >= node.next_probe):
                        node.urgent = False
                        node.busy = True
                        workers.submit(self._probe, node)
                self._publish()
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
                node.probe_raw = _driver.connect(kwargs, self._probe_timeout)
            facts = _topology.probe(node.probe_raw)
        except Exception as exc:
            if node.probe_raw is not None:
                _driver.force_close(node.probe_raw)
                node.probe_raw = None
            if node.facts is not None or node.failures == 0:
                logger.warning("cluster %r: node %s does not answer: %s", self.name, node.address, exc)
                # Borrowers must not keep dialing a dead node until their timeout:
                # its pool now gives up on the first failed connect.
                node.pool._ever_connected = False
                node.pool._suspect(_monotonic())  # its idle connections are pinged before use
            node.facts = None
            node.failures += 1
            node.probed_at = started
            node.last_error = str(exc)
            backoff = min(self._probe_interval * 2 ** (node.failures - 1), _BACKOFF_CAP)
            node.next_probe = _monotonic() + backoff
            return
        node.facts = facts
        node.failures = 0
        node.last_error = facts.last_error
        node.probed_at = started
        node.next_probe = started + self._probe_interval

    def _publish(self) -> None:
        if any(n.probed_at is None and n.failures == 0 for n in self._nodes):
            return  # the first round is not complete: "nothing answers" would be a false alarm
        self._first_round.set()
        current = self._routing.writers[0] if len(self._routing.writers) == 1 else None
        routing = _topology.route(
            [n.facts for n in self._nodes],
            max_lag=self._max_lag,
            galera_writer=self._galera_writer,
            read_fallback_to_primary=self._fallback,
            current_writer=current,
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
        """Stop the monitor and close every node's pool. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        with self._changed:
            self._changed.notify_all()
        if threading.current_thread() is not self._monitor:
            self._monitor.join(self._probe_timeout * 3 + 5)
        for node in self._nodes:
            node.pool.close()
            if node.probe_raw is not None:
                _driver.close(node.probe_raw)
                node.probe_raw = None

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
            nodes[node.address] = {
                "role": _topology.role_of(facts),
                "writer": node.index in routing.writers,
                "reader": node.index in routing.readers,
                "read_only": None if facts is None else facts.read_only,
                "lag": None if facts is None else facts.lag,
                "replicating": None if facts is None else facts.replicating,
                "gtid": None if facts is None else facts.gtid,
                "wsrep_state": None if facts is None or not facts.galera else facts.wsrep_state,
                "answer_ms": None if facts is None else round(facts.answer_ms, 3),
                "last_error": node.last_error,
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
