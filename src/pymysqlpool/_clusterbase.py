"""What both cluster shells share: the constructor, the node pools and what they show.

``ClusterPool`` (threads) and ``AsyncClusterPool`` (asyncio) are this class
plus their I/O: how they open, probe, wait, borrow and return. The rules are
``_steering``'s; here is what asks them the same way for both shells (a
failed borrow, a node that did not answer at opening, a reprobe, the
cluster's own statements as plans). It touches its node pools through their
public seams and the shells' node pool subclasses' ``_node``; it never waits
on a socket (the plans' statements are run by the shells; a broken connection
is dropped with the shell's ``_force_close``, without a word to the server).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Generator, Generic, List, Optional, Sequence, Tuple, Union

import pymysql

from . import _driver
from ._steering import Attempt, ClusterSettings, NodeState, P, Steering, check_borrow
from ._validators import seconds

__all__ = ["NodeEvents", "Statement", "SteeredCluster", "Steps"]

logger = logging.getLogger("pymysqlpool")

_monotonic = time.monotonic

Host = Tuple[str, int]
_CONNECT_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError)

# The cluster's own statements as steps: a plan yields (connection, (sql,
# args, client-side timeout)); its shell runs the statement (blocking or
# awaited) and sends back the first row, or throws the statement's error
# (an interrupt too) into the plan. What to send and what an answer means is
# decided here once; the shells only do the I/O.
Statement = Tuple[str, Any, Optional[float]]
Steps = Generator[Tuple[Any, Statement], Any, Any]


class NodeEvents:
    """Pool events of one node: a connection closed for a wrong-node error
    (1290 read-only, 1047 not in the primary component) means the node's
    role changed, whoever borrowed it and however it was given back."""

    def __init__(self, cluster: Any, node: NodeState) -> None:
        self._cluster = cluster
        self._node = node

    def on_close(self, raw: Any, reason: str) -> None:
        if reason == "closed_wrong_node":
            self._node.wrong_node_errors += 1
            self._cluster.reprobe(self._node.index)


class SteeredCluster(Generic[P]):
    """What both cluster shells share: the constructor (every argument
    checked, the node pools built closed: nothing connects here), the
    steering's seams and what they show alike. A shell sets the class
    attributes below and starts its own machinery in :meth:`_begin`."""

    _node_pool_class: Any  # called as (node, cluster, gtid_hook, **pool keywords)
    _new_lock: Any  # the causal merge's lock: threading.Lock, or NoLock on one event loop
    _wake: Any  # the monitor's wake-up (an Event), None until the shell made it
    _force_close: Any  # the driver's: drop a connection without a word to the server

    name: str
    _steering: Steering[P]
    _settings: ClusterSettings
    _timeout: float
    _connect_timeout: float
    _pools: frozenset[P]

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
            type(self).__name__,
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
        self._wake = None
        self._steer(settings)
        self._begin()

    def _begin(self) -> None:
        """The shell's start: open the nodes and the monitor, or wait for a loop."""
        raise NotImplementedError

    def _steer(self, settings: ClusterSettings) -> None:
        """Take ``settings``; one node pool per node, built with ``open=False`` so that every node's keywords are
        checked before any node connects."""
        self._settings = settings
        self.name = settings.name
        self._steering = Steering(settings, self._new_lock())
        for node in self._steering.nodes:
            pool = self._node_pool_class(
                node,
                self,
                self._steering.took_gtid,
                pool_name=f"{settings.name}/{node.address}",
                host=node.host,
                port=node.port,
                **{**settings.pool_kwargs, "open": False},
            )
            pool.add_events(NodeEvents(self, node))
            node.pool = pool
        self._pools = frozenset(n.pool for n in self._steering.nodes)
        first = self._steering.nodes[0].pool
        self._timeout = first.timeout
        self._connect_timeout = first.connect_timeout

    # -- what a borrow, an opening or an error asks of the steering -------------

    def reprobe(self, index: int) -> None:
        """Probe node ``index`` now instead of at its next turn (an error said it changed)."""
        node = self._steering.reprobe(index)
        node.pool.suspect_idle()  # one bad connection: check the idle others before use
        wake = self._wake
        if wake is not None:
            wake.set()

    def _wait_limit(self, timeout: Any) -> Optional[float]:
        """The timeout of wait_ready() / wait_probed(), checked as get_conn()'s
        (a NaN would never run out); None for inf: a thread's wait takes no inf."""
        limit = seconds("timeout", timeout, self._steering.name)
        return None if limit == float("inf") else limit

    def _routed(self, read_only: Any, causal: Any) -> Optional[Tuple[P, ...]]:
        """A borrow's flags checked (``check_borrow``) and routed: the node
        pools to ask (readers or writers), or None for a causal read (the
        steering's ``Attempt`` does it). get_conn's own path is a write with
        the default flags; everything else comes here."""
        if (read_only is not False and read_only is not True) or (
            causal is not None and causal is not True and causal is not False
        ):
            check_borrow(read_only, causal)  # raises
        if not read_only:
            return self._steering.writers
        if causal or (causal is None and self._settings.causal):
            return None
        return self._steering.readers

    def _first_failed(self, pool: Any, exc: BaseException) -> None:
        """The common case's borrow failed: a wrong account or database is
        raised as is; a node that did not answer is probed now and routed around."""
        if isinstance(exc, _CONNECT_ERRORS):
            if _driver.is_fatal_connect_error(exc):
                raise exc  # wrong password, unknown database: no other node will do better
            node = pool._node
            self._steering.node_failed(node, exc)
            self.reprobe(node.index)

    def _attempt_failed(self, attempt: Attempt[P], pool: Any, exc: BaseException) -> None:
        """A node pool raised during a borrow's ``Attempt``: a fatal connect
        error is raised as is; another one gets its node probed now."""
        if isinstance(exc, _CONNECT_ERRORS):
            if _driver.is_fatal_connect_error(exc):
                raise exc  # wrong password, unknown database: no other node will do better
            self.reprobe(pool._node.index)
        attempt.pool_failed(pool, pool._node, exc)

    def _did_not_answer(self, node: NodeState, exc: BaseException) -> None:
        """Opening: a node that does not answer leaves the cluster degraded,
        not unusable (its pool warms up in the background once the server
        answers), unless ``require_all_nodes``; wrong credentials or database raise."""
        if self._settings.require_all_nodes or _driver.is_fatal_connect_error(exc):
            raise exc
        node.last_error = str(exc)
        logger.warning("cluster %r: %s does not answer (%s); starting without it", self.name, node.address, exc)

    # -- the cluster's own statements, as steps the shells run --------------------

    def _return_steps(self, node: NodeState, raw: Any, failed: bool, exc: Optional[BaseException]) -> Steps:
        """What a return needs beyond the node pool's own work (rare path):
        a borrower's error that says the node is wrong or gone reprobes it
        (``exc``: the error the borrower's block raised); a write whose
        position is unknown is read; a Galera read's sync wait is undone."""
        if failed and exc is not None and self._steering.borrower_error(node, exc):
            self.reprobe(node.index)
        if getattr(raw, "wrote", True) is not False:
            yield from self._after_write_steps(node, raw)
        if getattr(raw, "sync_wait_on", False):
            raw.sync_wait_on = False
            try:
                yield raw, ("SET SESSION wsrep_sync_wait=0", None, self._connect_timeout)
            except Exception:
                self._force_close(raw)  # the pool discards it as broken

    def _after_write_steps(self, node: NodeState, raw: Any) -> Steps:
        """A borrow wrote, and its connection could not report the position
        (no ``last_gtid`` tracking): read it, within connect_timeout."""
        tracked = getattr(raw, "wrote", None) is not None
        if tracked:
            raw.wrote = False
        steering = self._steering
        if not steering.reads_gtid_after_write(node, tracked):
            return
        try:
            row = yield raw, ("SELECT @@gtid_binlog_pos", None, self._connect_timeout)
        except BaseException as exc:
            steering.causal_unknown = True  # causal reads go to the primary until a position is known again
            self._force_close(raw)  # frozen or interrupted mid-answer: the pool discards it as broken
            if not isinstance(exc, Exception):
                raise
            logger.info("cluster %r: could not read the GTID after a write on %s: %s", self.name, node.address, exc)
            return
        if not steering.took_gtid(str(row[0] or "") if row else ""):
            steering.causal_unknown = True

    def _causal_steps(self, pool: Any, raw: Any, deadline: float) -> Steps:
        """Make a borrowed connection see every write seen so far: True once
        it does, False if its node could not catch up in time. A statement's
        error propagates (the shell gives the connection back as failed)."""
        remaining = max(deadline - _monotonic(), 0.0)
        kind, args, limit = self._steering.causal_plan(pool, pool._node, remaining)
        if kind == "sync_wait":
            yield raw, ("SET SESSION wsrep_sync_wait=1", None, limit)
            raw.sync_wait_on = True  # undone by the return
            return True
        if kind == "none":
            return True
        row = yield raw, ("SELECT MASTER_GTID_WAIT(%s, %s)", args, limit)
        return row is not None and row[0] == 0

    @property
    def maxsize(self) -> int:
        """The most connections open at once, per node."""
        return int(self._pool0.maxsize)

    @property
    def size(self) -> int:
        return int(self._pool0.size)

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def available_num(self) -> int:
        """Idle connections ready to lend now, over every node."""
        return sum(n.pool.available_num for n in self._steering.nodes)

    @property
    def total_num(self) -> int:
        """Connections open now, over every node."""
        return sum(n.pool.total_num for n in self._steering.nodes)

    @property
    def closed(self) -> bool:
        return self._steering.closed

    @property
    def topology(self) -> str:
        """``replication``, ``galera`` or ``unknown`` (nothing answered yet)."""
        return self._steering.routing.topology

    def __repr__(self) -> str:
        nodes = ",".join(n.address for n in self._steering.nodes)
        return f"<{type(self).__name__} {self.name!r} {self.topology} [{nodes}]{' closed' if self.closed else ''}>"

    def node_pools(self) -> List[P]:
        """Each node's pool (a ``ConnectionPool``, or an ``AsyncConnectionPool``
        for ``AsyncClusterPool``), in the order the nodes were given, named
        ``<cluster name>/<host>:<port>``: for metrics and checks per node."""
        return [node.pool for node in self._steering.nodes]

    def get_stats(self) -> Dict[str, Any]:
        """Summed pool counters, the topology, and per node its role, state, lag and counters."""
        return self._steering.stats_of([node.pool.get_stats() for node in self._steering.nodes])

    # The steering's state under the names tests and tools read.
    @property
    def _pool0(self) -> Any:
        return self._steering.nodes[0].pool

    @property
    def _nodes(self) -> List[NodeState]:
        return self._steering.nodes

    @property
    def _writers(self) -> Tuple[P, ...]:
        return self._steering.writers

    @property
    def _readers(self) -> Tuple[P, ...]:
        return self._steering.readers

    @property
    def _causal_text(self) -> str:
        return self._steering.causal_text

    @property
    def _closed(self) -> bool:
        return self._steering.closed
