"""What each server of a cluster is, and where borrows go: asked of the servers, decided without I/O.

:func:`probe` asks one server about itself (two round trips). :func:`route`
turns the findings for every node into a :class:`Routing`: who takes writes,
who serves reads, and why writes have nowhere to go. ``route`` does no I/O and
keeps no state, so the rules are tested without a server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import pymysql.cursors

__all__ = ["GALERA", "REPLICATION", "NodeFacts", "Routing", "probe", "role_of", "route"]

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


def probe(raw: Any) -> NodeFacts:
    """Ask a server what it is. ``raw`` is a PyMySQL connection with short timeouts."""
    started = time.monotonic()
    with raw.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute("SELECT @@read_only, @@server_id, @@gtid_binlog_pos, @@wsrep_on")
        read_only, server_id, gtid, wsrep_on = cur.fetchone()
    galera = bool(int(wsrep_on or 0))
    if galera:
        with raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(
                "SHOW GLOBAL STATUS WHERE Variable_name IN"
                " ('wsrep_ready','wsrep_local_state','wsrep_cluster_status','wsrep_cluster_size')"
            )
            status = {str(k): str(v) for k, v in cur.fetchall()}
        return NodeFacts(
            read_only=bool(int(read_only)),
            server_id=int(server_id),
            gtid=str(gtid or ""),
            galera=True,
            wsrep_ready=status.get("wsrep_ready") == "ON",
            wsrep_state=int(status.get("wsrep_local_state") or 0),
            wsrep_cluster_status=status.get("wsrep_cluster_status", ""),
            wsrep_cluster_size=int(status.get("wsrep_cluster_size") or 0),
            answer_ms=(time.monotonic() - started) * 1000.0,
        )
    with raw.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW ALL SLAVES STATUS")
        rows = list(cur.fetchall())
    lags = [r.get("Seconds_Behind_Master") for r in rows]
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
        answer_ms=(time.monotonic() - started) * 1000.0,
    )


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
) -> Routing:
    """Decide the routing from every node's latest findings (None: not answering)."""
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
    if not primaries:
        # Nothing newer than what the replicas hold exists anywhere: they serve reads.
        return Routing(REPLICATION, (), fresh or tuple(replicas), "no primary (no node with read_only=0)")
    readers = fresh or (primaries if read_fallback_to_primary else ())
    return Routing(REPLICATION, primaries, readers)
