"""What each server of a cluster is, and where borrows go: asked of the servers, decided without I/O.

:func:`probe` asks one server about itself (two round trips). :func:`route`
turns the findings for every node into a :class:`Routing`: who takes writes,
who serves reads, and why writes have nowhere to go. ``route`` does no I/O and
keeps no state, so the rules are tested without a server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pymysql.cursors

__all__ = [
    "GALERA",
    "REPLICATION",
    "History",
    "NodeFacts",
    "Routing",
    "facts_from",
    "includes",
    "parse_gtid",
    "probe",
    "role_of",
    "route",
]

REPLICATION = "replication"
GALERA = "galera"
UNKNOWN = "unknown"

# Roles (NodeFacts -> role_of)
PRIMARY = "primary"
REPLICA = "replica"
READ_ONLY = "read_only"  # read_only=1 and replicating from nobody: a demoted primary, say
SYNCED = "synced"  # Galera: wsrep_ready=ON, local state 4, in the primary component
NOT_SYNCED = "not_synced"
DOWN = "down"

_GALERA_SYNCED_STATE = 4


@dataclass(frozen=True)
class NodeFacts:
    """One probe's findings about one server."""

    read_only: bool
    server_id: int
    gtid: str  # @@gtid_binlog_pos (replication) or the wsrep GTID
    galera: bool
    wsrep_ready: bool = False
    wsrep_state: int = 0
    wsrep_cluster_status: str = ""
    wsrep_cluster_size: int = 0
    sources: int = 0  # replication connections configured (SHOW ALL SLAVES STATUS rows)
    replicating: bool = False  # every configured IO and SQL thread runs
    sql_running: bool = False  # every configured SQL thread runs
    lag: Optional[float] = None  # Seconds_Behind_Master (worst source); None when unknown
    last_error: str = ""
    answer_ms: float = 0.0
    identity: str = ""  # @@hostname:@@port:@@datadir: the same server reached by two addresses


PROBE_SQL = "SELECT @@read_only, @@server_id, @@gtid_binlog_pos, @@wsrep_on, @@hostname, @@port, @@datadir"
GALERA_SQL = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN"
    " ('wsrep_ready','wsrep_local_state','wsrep_cluster_status','wsrep_cluster_size')"
)
REPLICATION_SQL = "SHOW ALL SLAVES STATUS"


def is_galera(row: Sequence[Any]) -> bool:
    """From :data:`PROBE_SQL`'s row: whether to ask :data:`GALERA_SQL` (else :data:`REPLICATION_SQL`)."""
    return bool(int(row[3] or 0))


def facts_from(
    row: Sequence[Any], status: Sequence[Sequence[Any]], replication: Sequence[Mapping[str, Any]], answer_ms: float
) -> NodeFacts:
    """A probe's findings from its answers: :data:`PROBE_SQL`'s row, then
    :data:`GALERA_SQL`'s rows (a Galera node) or :data:`REPLICATION_SQL`'s
    rows as dicts (any other)."""
    read_only, server_id, gtid, _wsrep_on, hostname, port, datadir = row
    identity = f"{hostname}:{port}:{datadir}:{server_id}"
    if is_galera(row):
        found = {str(k): str(v) for k, v in status}
        return NodeFacts(
            read_only=bool(int(read_only)),
            server_id=int(server_id),
            gtid=str(gtid or ""),
            galera=True,
            wsrep_ready=found.get("wsrep_ready") == "ON",
            wsrep_state=int(found.get("wsrep_local_state") or 0),
            wsrep_cluster_status=found.get("wsrep_cluster_status", ""),
            wsrep_cluster_size=int(found.get("wsrep_cluster_size") or 0),
            answer_ms=answer_ms,
            identity=identity,
        )
    rows = replication
    lags: List[Any] = [r.get("Seconds_Behind_Master") for r in rows]
    io_up = all(r.get("Slave_IO_Running") == "Yes" for r in rows)
    sql_up = all(r.get("Slave_SQL_Running") == "Yes" for r in rows)
    errors = [str(r.get("Last_IO_Error") or r.get("Last_SQL_Error") or "") for r in rows]
    return NodeFacts(
        read_only=bool(int(read_only)),
        server_id=int(server_id),
        gtid=str(gtid or ""),
        galera=False,
        sources=len(rows),
        replicating=bool(rows) and io_up and sql_up,
        sql_running=bool(rows) and sql_up,
        lag=None if not rows or None in lags else float(max(lags)),
        last_error="; ".join(e for e in errors if e),
        answer_ms=answer_ms,
        identity=identity,
    )


def probe(raw: Any) -> NodeFacts:
    """Ask a server what it is. ``raw`` is a PyMySQL connection with short timeouts."""
    started = time.monotonic()
    status: List[Any] = []
    rows: List[Any] = []
    with raw.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(PROBE_SQL)
        row = cur.fetchone()
    if is_galera(row):
        with raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(GALERA_SQL)
            status = list(cur.fetchall())
    else:
        with raw.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(REPLICATION_SQL)
            rows = list(cur.fetchall())
    return facts_from(row, status, rows, (time.monotonic() - started) * 1000.0)


def role_of(facts: Optional[NodeFacts]) -> str:
    """A node's role from its own answers; ``None`` (no answer) is DOWN."""
    if facts is None:
        return DOWN
    if facts.galera:
        synced = (
            facts.wsrep_ready and facts.wsrep_state == _GALERA_SYNCED_STATE and facts.wsrep_cluster_status == "Primary"
        )
        return SYNCED if synced else NOT_SYNCED
    if facts.sources:
        # A replica that was promoted but not yet told to forget its source
        # (read_only=0, threads stopped) already takes writes.
        if not facts.read_only and not facts.replicating and not facts.sql_running:
            return PRIMARY
        return REPLICA
    return READ_ONLY if facts.read_only else PRIMARY


def _fresh(facts: Optional[NodeFacts], max_lag: float) -> bool:
    """A replica whose threads run and whose lag is known and within ``max_lag``."""
    return facts is not None and facts.replicating and facts.lag is not None and facts.lag <= max_lag


@dataclass(frozen=True)
class Routing:
    """Where borrows go, as indexes into the cluster's node list."""

    topology: str
    writers: Tuple[int, ...]
    readers: Tuple[int, ...]
    problem: str = ""  # why there is no writer, for the borrower's error
    split_brain: bool = False


def route(
    facts: Sequence[Optional[NodeFacts]],
    *,
    max_lag: float,
    galera_writer: str = "single",
    read_fallback_to_primary: bool = True,
    current_writer: Optional[int] = None,
    suspects: Mapping[int, str] = {},
) -> Routing:
    """Decide the routing from every node's latest findings (None: not answering).

    ``suspects``: replication nodes that may not take writes whatever they
    answer now, with the evidence (see :class:`History`)."""
    roles = [role_of(f) for f in facts]
    galera = any(f is not None and f.galera for f in facts)
    if galera:
        synced = tuple(i for i, r in enumerate(roles) if r == SYNCED)
        if not synced:
            return Routing(GALERA, (), (), "no synced Galera node (none in the primary component and ready)")
        if galera_writer == "spread":
            writers = synced
        elif current_writer in synced:
            writers = (current_writer,)  # keep the writer while it stays synced: no certification conflicts
        else:
            writers = (synced[0],)
        return Routing(GALERA, writers, synced)
    if all(f is None for f in facts):
        return Routing(UNKNOWN, (), (), "no node answers")
    primaries = tuple(i for i, r in enumerate(roles) if r == PRIMARY)
    replicas = [i for i, r in enumerate(roles) if r == REPLICA]
    fresh = tuple(i for i in replicas if _fresh(facts[i], max_lag))
    if len(primaries) > 1:
        nodes = ", ".join(f"#{i}" for i in primaries)
        problem = f"split brain: nodes {nodes} all have read_only=0; writes are refused until all but one are demoted"
        return Routing(REPLICATION, (), fresh, problem, split_brain=True)
    if primaries and primaries[0] in suspects:
        return Routing(REPLICATION, (), fresh, f"split brain: {suspects[primaries[0]]}", split_brain=True)
    if not primaries:
        # Nothing newer than what the replicas hold exists anywhere: they serve reads.
        return Routing(REPLICATION, (), fresh or tuple(replicas), "no primary (no node with read_only=0)")
    readers = fresh or (primaries if read_fallback_to_primary else ())
    return Routing(REPLICATION, primaries, readers)


Position = Dict[int, Tuple[int, int]]  # GTID domain -> (server_id, sequence number)


def parse_gtid(text: str) -> Position:
    """``"0-1-100,1-2-5"`` -> {0: (1, 100), 1: (2, 5)}; ValueError if it is not a GTID list."""
    pos: Position = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        domain, server, seq = (int(x) for x in part.split("-"))
        pos[domain] = (server, seq)
    return pos


def includes(pos: Position, other: Position) -> bool:
    """True if ``pos`` is at or past ``other`` in every domain of ``other``:
    a higher sequence number, or the same one from the same server (the same
    transaction). Equal sequence numbers from different servers are two
    histories, not one."""
    for domain, (server, seq) in other.items():
        mine = pos.get(domain)
        if mine is None or mine[1] < seq or (mine[1] == seq and mine[0] != server):
            return False
    return True


def show_gtid(pos: Position) -> str:
    return ",".join(f"{d}-{s}-{q}" for d, (s, q) in sorted(pos.items())) or "(empty)"


class History:
    """What the routing must remember between probe rounds (no I/O).

    - The last GTID position each node answered with: a node that stops
      answering keeps its last known position (a missed probe is evidence
      of nothing, least of all that its writes are gone).
    - Suspects: replication nodes that may have diverged. A node becomes one
      when it is seen with ``read_only=0`` together with another (split
      brain), or when it comes back writable after not answering while
      another node was the writer, or when it becomes writable while the
      last writer does not answer and was last seen writable (not known
      demoted: it may hold acknowledged writes the new one lacks). A
      suspect takes no writes until either
      (a) it is seen replicating (demoted and re-attached), or (b) its own
      ``@@gtid_binlog_pos`` includes (see :func:`includes`) the last known
      position of every other node and ``acknowledged``: the writes the
      cluster saw committed (their GTIDs), which a probe may have missed.
    - Duplicates: two addresses that reach the same server (same
      ``@@hostname``, ``@@port``, ``@@datadir`` and ``@@server_id``); the
      later one is left out of the routing.
    """

    def __init__(self, count: int) -> None:
        self.positions: List[Optional[Position]] = [None] * count
        self.suspects: Dict[int, str] = {}  # node -> why (as first seen)
        self.duplicates: Dict[int, int] = {}  # node -> the earlier node it is the same server as
        self.writer: Optional[int] = None  # the last node routing trusted with writes
        self.acknowledged: Position = {}  # set by the steering before each update
        self._answered: List[bool] = [False] * count
        self._writable: List[bool] = [False] * count  # read_only=0 in the node's last answer

    def update(self, facts: Sequence[Optional[NodeFacts]]) -> List[Optional[NodeFacts]]:
        """Take a round of findings; returns them with duplicates left out (None)."""
        seen: Dict[str, int] = {}
        kept: List[Optional[NodeFacts]] = list(facts)
        for i, f in enumerate(facts):
            if f is None or not f.identity:
                continue
            first = seen.setdefault(f.identity, i)
            if first != i:
                self.duplicates[i] = first
                kept[i] = None
            else:
                self.duplicates.pop(i, None)
        if any(f is not None and f.galera for f in kept):
            self.suspects.clear()
            return kept
        roles = [role_of(f) for f in kept]
        for i, f in enumerate(kept):
            if f is not None:
                try:
                    self.positions[i] = parse_gtid(f.gtid)
                except ValueError:
                    pass
        primaries = [i for i, r in enumerate(roles) if r == PRIMARY]
        if len(primaries) > 1:
            for i in primaries:
                others = ", ".join(f"#{j}" for j in primaries if j != i)
                self.suspects.setdefault(i, f"#{i} was writable (read_only=0) at the same time as {others}")
        writer = self.writer
        for i in primaries:
            # Back writable after not answering, while another node took the writes.
            if not self._answered[i] and writer is not None and writer != i and i not in self.suspects:
                self.suspects[i] = f"#{i} came back writable while #{writer} was the primary"
            # Promoted while the writer is silent but not known demoted.
            elif writer is not None and writer != i and kept[writer] is None and self._writable[writer]:
                self.suspects.setdefault(i, f"#{i} became writable while #{writer}, the primary, did not answer")
        for i in list(self.suspects):
            f = kept[i]
            if f is not None and f.replicating:
                del self.suspects[i]  # demoted and re-attached: it follows a primary now
            elif roles[i] == PRIMARY and len(primaries) == 1 and not self._behind(i) and not self._lacks_acked(i):
                del self.suspects[i]
        self._answered = [f is not None for f in kept]
        self._writable = [r == PRIMARY if f is not None else w for f, r, w in zip(kept, roles, self._writable)]
        return kept

    def _behind(self, index: int) -> List[int]:
        """The nodes whose last known position ``index``'s does not include."""
        mine = self.positions[index]
        if mine is None:
            return [j for j, p in enumerate(self.positions) if p is not None and j != index]
        return [j for j, p in enumerate(self.positions) if j != index and p is not None and not includes(mine, p)]

    def _lacks_acked(self, index: int) -> bool:
        """``index``'s last known position lacks a write acknowledged through the cluster."""
        mine = self.positions[index]
        return bool(self.acknowledged) and (mine is None or not includes(mine, self.acknowledged))

    def evidence(self, index: int) -> str:
        """Why a suspect takes no writes, with the GTID positions compared."""
        mine = self.positions[index]
        lacking = [f"#{j}'s {show_gtid(self.positions[j] or {})}" for j in self._behind(index)]
        if self._lacks_acked(index):
            lacking.append(f"the writes acknowledged through this cluster ({show_gtid(self.acknowledged)})")
        behind = ", ".join(lacking)
        return (
            f"{self.suspects[index]}; its @@gtid_binlog_pos {show_gtid(mine or {})} does not include"
            f" {behind or 'every other node'} (last known): writes are refused until it does, or until"
            " it is demoted and replicates again"
        )

    def blocked(self) -> Dict[int, str]:
        """Suspects and why, for :func:`route`."""
        return {i: self.evidence(i) for i in self.suspects}
