"""The cluster's rules without I/O: arguments, probe schedule, routing, borrow steps, causal positions.

Both cluster shells (``ClusterPool`` on threads, ``AsyncClusterPool`` on
asyncio) hold one :class:`Steering`: they feed it probe results and borrow
outcomes and carry out what it decides (which node pool to ask, how long a
causal wait may last, when to give up and with which error). Only the shells
touch sockets, threads, tasks and locks; every rule (split-brain memory,
GTID comparison, fallback to the primary, deadlines, back-off) is here once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Generic, List, Mapping, Optional, Sequence, Set, Tuple, TypeVar, Union

import pymysql

from . import _driver, _topology, _urls
from ._config import pool_label
from ._core import PoolCore
from ._validators import flag as check_flag
from ._validators import seconds
from .errors import PoolClosed, PoolTimeout, SplitBrainError

__all__ = ["Attempt", "ClusterSettings", "NodeState", "Steering", "parse_cluster_url"]

logger = logging.getLogger("pymysqlpool")

Host = Tuple[str, int]
P = TypeVar("P")  # a node pool (ConnectionPool or AsyncConnectionPool subclass)

BACKOFF_CAP = 2.0  # longest pause between probes of a node that does not answer
CAUSAL_WAIT = 1.0  # longest MASTER_GTID_WAIT before a causal read goes to the primary
CLIENT_SLACK = 0.25  # a server-side wait's answer may take this much longer to arrive
_PROBE_TIMEOUT_MAX = 60.0  # a probe that may wait longer than this would hide a dead node for minutes
# Errors no other node and no retry can fix: the account or the database is wrong.
_CONFIG_ERRORS = frozenset({1045, 1044, 1049, 1698, 1251})
_NO_MONITOR_PRIVILEGE = 1227  # SHOW ALL SLAVES STATUS without SLAVE MONITOR / SUPER
_URL_KEYS = _urls.CONNECT_QUERY_KEYS | _urls.POOL_QUERY_KEYS


def parse_cluster_url(url: str) -> Tuple[Dict[str, Any], List[Host]]:
    """``mysql://user:pw@h1:p1,h2:p2/db?charset=...`` -> (keywords, [(host, port), ...]).

    The rules of every URL of this package (``_urls``); query parameters are
    connection and pool keywords, others are refused."""
    parsed = _urls.parse(url, query_keys=_URL_KEYS, what="cluster URL")
    return parsed.connect_kwargs(), parsed.hosts


def check_borrow(read_only: Any, causal: Any) -> None:
    """A borrow's flags: read_only True or False, causal None, True or False."""
    check_flag("read_only", read_only)
    if causal is not None:
        check_flag("causal", causal)


@dataclass(frozen=True)
class ClusterSettings:
    """A cluster's arguments, every one checked (before any connection is opened)."""

    nodes: Tuple[Host, ...]
    name: str
    pool_kwargs: Dict[str, Any]  # every node pool's keywords (no host/port, no name)
    connect_kwargs: Dict[str, Any]  # the probes' connect keywords (no host/port)
    max_lag: float
    causal: bool
    probe_interval: float
    probe_timeout: float
    read_fallback_to_primary: bool
    galera_writer: str
    round_robin: bool
    require_all_nodes: bool

    @classmethod
    def build(
        cls,
        what: str,
        url: Optional[str],
        hosts: Optional[Sequence[Union[Host, str]]],
        max_lag: float,
        causal: bool,
        probe_interval: float,
        probe_timeout: float,
        read_fallback_to_primary: bool,
        galera_writer: str,
        balance: str,
        require_all_nodes: bool,
        pool_kwargs: Dict[str, Any],
        connect_parameters: Any,
    ) -> ClusterSettings:
        url_kwargs: Dict[str, Any] = {}
        url_hosts: List[Host] = []
        if url is not None:
            url_kwargs, url_hosts = parse_cluster_url(url)
        if hosts is not None and url_hosts:
            raise TypeError("give the nodes once: in the URL or as hosts=, not both")
        nodes = _urls.parse_hosts(hosts) if hosts is not None else url_hosts
        if not nodes:
            raise ValueError(f"{what} needs at least one node (a URL or hosts=)")
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"{what} got the same node twice")
        for key in ("host", "port", "unix_socket"):
            if key in pool_kwargs:
                raise TypeError(f"{what}() takes no {key}=: the nodes come from the URL or hosts=")
        try:
            interval = seconds("probe_interval", probe_interval)
        except ValueError:  # a negative or not finite number: one message, the rule's
            interval = 0.0
        if not 0 < interval <= 1.0:
            raise ValueError(f"probe_interval must be > 0 and <= 1 second, got {probe_interval!r}")
        try:
            probe_limit = seconds("probe_timeout", probe_timeout)
        except ValueError:  # as probe_interval's: one message, the rule's
            probe_limit = 0.0
        if not 0 < probe_limit <= _PROBE_TIMEOUT_MAX:
            raise ValueError(f"probe_timeout must be > 0 and <= {_PROBE_TIMEOUT_MAX:g} seconds, got {probe_timeout!r}")
        if galera_writer not in ("single", "spread"):
            raise ValueError(f"galera_writer must be 'single' or 'spread', got {galera_writer!r}")
        if balance not in ("least_borrowed", "round_robin"):
            raise ValueError(f"balance must be 'least_borrowed' or 'round_robin', got {balance!r}")
        for flag, value in (
            ("causal", causal),
            ("read_fallback_to_primary", read_fallback_to_primary),
            ("require_all_nodes", require_all_nodes),
        ):
            check_flag(flag, value)
        kwargs = {**url_kwargs, **pool_kwargs}
        named = kwargs.pop("name", None), kwargs.pop("pool_name", None)
        name = (pool_label(*named, {}) if named != (None, None) else "") or "cluster"  # a str, in the nodes' pool names
        return cls(
            nodes=tuple(nodes),
            name=name,
            pool_kwargs=kwargs,
            connect_kwargs={k: v for k, v in kwargs.items() if k in connect_parameters},
            max_lag=seconds("max_lag", max_lag),
            causal=causal,
            probe_interval=interval,
            probe_timeout=probe_limit,
            read_fallback_to_primary=read_fallback_to_primary,
            galera_writer=galera_writer,
            round_robin=balance == "round_robin",
            require_all_nodes=require_all_nodes,
        )

    def probe_kwargs(self, host: str, port: int) -> Dict[str, Any]:
        """Connect keywords of a node's probe connection: short timeouts, autocommit."""
        limit = self.probe_timeout
        return {
            **self.connect_kwargs,
            "host": host,
            "port": port,
            "connect_timeout": limit,
            "read_timeout": limit,
            "write_timeout": limit,
            "autocommit": True,
        }


class NodeState:
    """One server: what its probes found and its counters. ``pool`` is the
    shell's node pool; ``probe_raw`` the shell's probe connection."""

    def __init__(self, index: int, host: str, port: int) -> None:
        self.index = index
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.pool: Any = None
        self.facts: Optional[_topology.NodeFacts] = None
        self.gtid: Optional[str] = None  # the last one it answered with: kept while it is silent
        self.failures = 0
        self.next_probe = 0.0
        self.urgent = False
        self.busy = False  # a probe is running
        self.last_error = ""
        self.probe_raw: Any = None
        self.probed_at: Optional[float] = None
        self.wrong_node_errors = 0
        self.gone_errors = 0
        self.config_error: Optional[BaseException] = None  # the probe met 1045/1044/1049/1227
        self.duplicate_of: Optional[int] = None  # the earlier node that is the same server


class Steering(Generic[P]):
    """The state and rules of one cluster. Its methods never block and never
    do I/O; the thread shell calls the causal merge under ``lock``."""

    def __init__(self, settings: ClusterSettings, lock: Any) -> None:
        self.settings = settings
        self.name = settings.name
        self.nodes = [NodeState(i, host, port) for i, (host, port) in enumerate(settings.nodes)]
        self.history = _topology.History(len(self.nodes))
        # The routing, published whole and read without a lock.
        self.routing = _topology.Routing(_topology.UNKNOWN, (), (), "not probed yet")
        self.writers: Tuple[P, ...] = ()
        self.writer: Optional[P] = None  # the only writer (None: none, or several): a write's one read
        self.readers: Tuple[P, ...] = ()
        self.version = 0
        self.closed = False
        self.probed_once = False  # every node was probed once (answered or not)
        self.turn = 0
        # Causal reads: the highest GTID per domain of every write seen.
        self.lock = lock
        self.causal_pos: Dict[int, Tuple[int, int]] = {}
        self.causal_text = ""
        self.causal_unknown = False  # a write whose position could not be read
        self.stats = {"causal_waits": 0, "causal_fallbacks": 0, "rerouted": 0, "write_waits": 0}

    # -- the probe schedule -----------------------------------------------------

    def due(self, now: float) -> List[NodeState]:
        """The nodes to probe now (marked busy): urgent ones and those whose turn came."""
        out = []
        for node in self.nodes:
            if not node.busy and (node.urgent or now >= node.next_probe):
                node.urgent = False
                node.busy = True
                out.append(node)
        return out

    def sleep_for(self, now: float) -> float:
        """How long the monitor may sleep before the next probe is due."""
        idle = [n.next_probe for n in self.nodes if not n.busy]
        soonest = min(idle) if idle else now + self.settings.probe_interval
        return max(soonest - now, 0.001)

    def probed(self, node: NodeState, facts: _topology.NodeFacts, started: float) -> None:
        node.facts = facts
        node.gtid = facts.gtid
        node.config_error = None
        node.failures = 0
        node.last_error = facts.last_error
        node.probed_at = started
        node.next_probe = started + self.settings.probe_interval

    def probe_failed(self, node: NodeState, exc: BaseException, started: float, now: float) -> bool:
        """A probe failed; True when the node was answering before (or never
        probed): the shell then makes the node's pool distrust its connections."""
        node.config_error = self.config_error_of(node, exc)
        first = node.facts is not None or node.failures == 0
        if first:
            logger.warning("cluster %r: node %s does not answer: %s", self.name, node.address, exc)
        node.facts = None
        node.failures += 1
        node.probed_at = started
        node.last_error = str(exc)
        node.next_probe = now + min(self.settings.probe_interval * 2 ** (node.failures - 1), BACKOFF_CAP)
        return first

    def reprobe(self, index: int) -> NodeState:
        count = len(self.nodes)
        if type(index) is not int or not 0 <= index < count:  # no bool, no negative index
            raise ValueError(f"reprobe() takes a node index from 0 to {count - 1}, got {index!r}")
        node = self.nodes[index]
        node.urgent = True
        return node

    def config_error_of(self, node: NodeState, exc: BaseException) -> Optional[BaseException]:
        """A probe error that only a change of the account or the database
        can fix, as the error borrowers get at once (node and server message)."""
        code = _driver.error_code(exc)
        if code == _NO_MONITOR_PRIVILEGE:
            user = self.settings.connect_kwargs.get("user") or "<user>"
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

    def config_error(self) -> Optional[BaseException]:
        for node in self.nodes:
            if node.config_error is not None:
                return node.config_error
        return None

    # -- the routing --------------------------------------------------------------

    def publish(self) -> bool:
        """Decide the routing from the latest findings; True if it changed
        (the shell then wakes whoever waits for a new routing)."""
        if any(n.probed_at is None and n.failures == 0 for n in self.nodes):
            return False  # the first round is not complete: "nothing answers" would be a false alarm
        self.probed_once = True
        current = self.routing.writers[0] if len(self.routing.writers) == 1 else None
        history = self.history
        history.acknowledged = self.causal_pos  # replaced whole on each write, never changed in place
        facts = history.update([n.facts for n in self.nodes])
        s = self.settings
        routing = _topology.route(
            facts,
            max_lag=s.max_lag,
            galera_writer=s.galera_writer,
            read_fallback_to_primary=s.read_fallback_to_primary,
            current_writer=current,
            suspects=history.blocked(),
        )
        if routing.topology == _topology.REPLICATION and len(routing.writers) == 1:
            history.writer = routing.writers[0]
        for node in self.nodes:
            first = history.duplicates.get(node.index)
            if first != node.duplicate_of:
                node.duplicate_of = first
                if first is not None:
                    logger.warning(
                        "cluster %r: %s is the same server as %s (same @@hostname, @@port, @@datadir, @@server_id):"
                        " left out of the routing",
                        self.name,
                        node.address,
                        self.nodes[first].address,
                    )
        if routing == self.routing:
            return False
        old = self.routing
        self.routing = routing
        writers = tuple(self.nodes[i].pool for i in routing.writers)
        self.writer = writers[0] if len(writers) == 1 else None
        self.writers = writers
        self.readers = tuple(self.nodes[i].pool for i in routing.readers)
        self.version += 1
        if routing.writers != old.writers or routing.problem != old.problem:
            names = ", ".join(self.nodes[i].address for i in routing.writers) or "none"
            log = logger.warning if routing.problem else logger.info
            log("cluster %r: %s, writer(s): %s %s", self.name, routing.topology, names, routing.problem)
        return True

    def pick(self, pools: Sequence[P]) -> P:
        """The node pool a borrow asks first, by the node pools' count of
        borrowed connections (the stats', read through the core's seam)."""
        # A lost update of turn under a race only skews the balance a little.
        self.turn = turn = self.turn + 1
        nodes: Any = pools
        if self.settings.round_robin:
            # In turn, but a node whose pool is full (every connection lent) is
            # skipped while another has room: it would only make the borrow wait.
            roomy = PoolCore.first_with_room(nodes, turn)
            return pools[turn % len(pools)] if roomy is None else roomy  # type: ignore[return-value]
        # Least borrowed, ties broken by a rotating start so idle nodes share the reads.
        return PoolCore.least_borrowed(nodes, turn)  # type: ignore[return-value]

    def problem_text(self, routing: _topology.Routing) -> str:
        """The routing's problem with node addresses instead of indexes."""
        problem = routing.problem
        for node in self.nodes:
            problem = problem.replace(f"#{node.index}", node.address)
        return problem

    def describe_problem(self, routing: _topology.Routing, full: bool = False) -> str:
        """``full``: the last node asked had every connection lent (nothing failed)."""
        fallback = "the last node asked had every connection lent" if full else "every eligible node failed"
        problem = self.problem_text(routing) or fallback
        states = ", ".join(f"{n.address}={_topology.role_of(n.facts)}" for n in self.nodes)
        return f"{problem} [{states}]"

    def borrower_error(self, node: NodeState, exc: BaseException) -> bool:
        """An error left a borrower's block: True if it says the node is wrong
        or gone (the shell then probes it now)."""
        code = _driver.error_code(exc)
        if code in _driver.NODE_GONE_ERRORS:
            node.gone_errors += 1
        elif code not in _driver.WRONG_NODE_ERRORS:
            return False
        logger.info("cluster %r: %s answered %s; probing the node now", self.name, node.address, code)
        return True

    def node_failed(self, node: NodeState, exc: BaseException) -> None:
        """A borrow from ``node`` failed: the shell probes it now, borrows route around it."""
        self.stats["rerouted"] += 1
        logger.info("cluster %r: borrowing from %s failed (%s); routing around it", self.name, node.address, exc)

    # -- causal positions -----------------------------------------------------------

    def took_gtid(self, text: str) -> bool:
        """Merge a GTID position (a COMMIT's ``last_gtid``, or a primary's
        ``@@gtid_binlog_pos``) into what causal reads wait for: the highest
        sequence number per domain. False if ``text`` is not a GTID list."""
        try:
            seen = _topology.parse_gtid(text)
        except ValueError:
            return False
        with self.lock:
            pos = dict(self.causal_pos)
            for domain, (server, seq) in seen.items():
                if domain not in pos or seq > pos[domain][1]:
                    pos[domain] = (server, seq)
            self.causal_pos = pos
            self.causal_text = _topology.show_gtid(pos) if pos else ""
            self.causal_unknown = False
        return True

    def reads_gtid_after_write(self, node: NodeState, tracked: bool) -> bool:
        """Whether a return after a write must read ``@@gtid_binlog_pos``:
        not on Galera (reads wait with wsrep_sync_wait), and on a connection
        that cannot report its writes only when causal reads are on."""
        facts = node.facts
        if facts is not None and facts.galera:
            return False
        return tracked or self.settings.causal

    def causal_plan(self, pool: P, node: NodeState, remaining: float) -> Tuple[str, Any, float]:
        """What makes a borrowed connection causal: ``("sync_wait", None,
        client limit)`` on Galera, ``("gtid_wait", (target, server limit),
        client limit)`` on a replica behind a write, ``("none", None, 0)``
        otherwise. The server waits at most 1 s and half of what is left of
        the borrow (the other half is the primary's, to fall back to); the
        client at most ``CLIENT_SLACK`` longer (a frozen node then fails and
        its connection is dropped)."""
        facts = node.facts
        if facts is not None and facts.galera:
            return "sync_wait", None, remaining + CLIENT_SLACK
        target = self.causal_text
        if not target or pool in self.writers:
            return "none", None, 0.0
        self.stats["causal_waits"] += 1
        limit = min(remaining / 2, CAUSAL_WAIT)
        return "gtid_wait", (target, limit), limit + CLIENT_SLACK

    # -- a borrow's steps -------------------------------------------------------------

    def attempt(
        self,
        read_only: bool,
        causal: bool,
        timeout: Optional[float],
        started: float,
        default_timeout: float,
        last_error: Optional[BaseException] = None,
    ) -> Attempt[P]:
        return Attempt(self, read_only, causal, timeout, started, default_timeout, last_error)

    def close_error(self) -> PoolClosed:
        return PoolClosed(f"cluster {self.name!r} is closed")

    # -- stats ------------------------------------------------------------------------

    def stats_of(self, node_stats: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        """Summed pool counters, the topology, and per node its role, state,
        lag and counters (``node_stats``: each node pool's get_stats())."""
        routing = self.routing
        total: Dict[str, Any] = {}
        nodes: Dict[str, Any] = {}
        for node, stats in zip(self.nodes, node_stats):
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
                "gtid": node.gtid,
                "wsrep_state": None if facts is None or not facts.galera else facts.wsrep_state,
                "answer_ms": None if facts is None else round(facts.answer_ms, 3),
                "last_error": node.last_error if first is None else f"the same server as {self.nodes[first].address}",
                "probe_failures": node.failures,
                "wrong_node_errors": node.wrong_node_errors,
                "gone_errors": node.gone_errors,
                **stats,
            }
        total.update(self.stats)
        total["topology"] = routing.topology
        total["problem"] = self.problem_text(routing)
        total["nodes"] = nodes
        return total


class Attempt(Generic[P]):
    """One borrow beyond the common case: waits for the role to appear, steps
    over nodes that fail, makes causal reads wait and fall back to the primary.
    Ends within ``timeout`` (from ``started``) plus one node pool's
    connect_timeout: once a node failed, no node is asked after the deadline.

    The shell loops: :meth:`choose` gives a node pool to ask (with the time
    left) or None (wait for a new routing up to :meth:`wait_for` seconds,
    then :meth:`waited`); it reports what the node pool did."""

    def __init__(
        self,
        steering: Steering[P],
        read_only: bool,
        causal: bool,
        timeout: Optional[float],
        started: float,
        default_timeout: float,
        last_error: Optional[BaseException],
    ) -> None:
        if steering.closed:
            raise steering.close_error()
        self.s = steering
        self.read_only = read_only
        self.causal = causal and read_only
        self.wait = default_timeout if timeout is None else seconds("timeout", timeout, steering.name)
        self.deadline = started + self.wait
        self.failed: Set[P] = set()
        self.unreachable: Set[P] = set()  # failed with a connect error (not merely full)
        self.waited = False
        self.primary_only = False  # a causal read whose replica could not catch up in time
        self.last_error = last_error
        self.version = -1
        self.remaining = self.wait

    def choose(self, now: float) -> Optional[P]:
        """The node pool to ask now (``self.remaining`` seconds left), or None:
        wait. Raises what ends the borrow."""
        s = self.s
        if s.closed:
            raise s.close_error()
        routing = s.routing
        self.version = s.version
        if not self.read_only and routing.split_brain:
            raise SplitBrainError(f"cluster {s.name!r}: {s.describe_problem(routing)}")
        pools = s.writers if not self.read_only or self.primary_only else s.readers
        if self.causal and s.causal_unknown:
            pools = s.writers  # a write we could not place: only the primary is sure to have it
        candidates = tuple(p for p in pools if p not in self.failed)
        if not candidates and self.read_only and s.settings.read_fallback_to_primary and self.unreachable >= set(pools):
            # No routed replica could be reached: none qualifies, so the primary serves the
            # read (a frozen replica stays routed until its probe ends, up to probe_timeout).
            candidates = tuple(p for p in s.writers if p not in self.failed)
        self.remaining = remaining = self.deadline - now
        if candidates and (remaining > 0 or self.last_error is None):
            self.remaining = max(remaining, 0.0)
            return candidates[0] if len(candidates) == 1 else s.pick(candidates)
        fatal = s.config_error()
        if fatal is not None:
            raise fatal
        if remaining <= 0:
            role = "reader (replica within max_lag or primary)" if self.read_only else "writer (primary)"
            raise PoolTimeout(
                f"cluster {s.name!r}: no {role} within {self.wait:.3g} s:"
                f" {s.describe_problem(routing, isinstance(self.last_error, PoolTimeout))}"
            ) from self.last_error
        return None

    def wait_for(self) -> float:
        """How long to wait for a new routing before choosing again."""
        self.waited = True
        return min(self.remaining, self.s.settings.probe_interval)

    def waited_for_routing(self) -> bool:
        """After the wait: True if the routing changed meanwhile (every node gets another chance)."""
        if self.s.version != self.version:
            self.failed.clear()
            self.unreachable.clear()
            return True
        return False

    def routing_unchanged(self) -> bool:
        return self.s.version == self.version

    def pool_failed(self, pool: P, node: NodeState, exc: BaseException) -> None:
        """The node pool raised: a connect error (fatal ones are re-raised by
        the shell) or its PoolTimeout."""
        if not isinstance(exc, PoolTimeout):
            self.s.node_failed(node, exc)
            self.unreachable.add(pool)
        self.failed.add(pool)
        self.last_error = exc

    def not_caught_up(self, pool: P, node: NodeState) -> None:
        """A causal wait did not end in time: the primary has every write."""
        self.failed.add(pool)
        self.primary_only = True
        self.last_error = PoolTimeout(f"{node.address} did not catch up with the writes in time")

    def lent(self, pool: P) -> None:
        """The borrow ends with a connection from ``pool``."""
        stats = self.s.stats
        if self.causal and (pool not in self.s.readers or self.primary_only):
            stats["causal_fallbacks"] += 1
        if self.waited and not self.read_only:
            stats["write_waits"] += 1
