"""``pymysqlpool check --url mysql://u@h1:p1,h2:p2/db``: the topology a ClusterPool sees.

One line per node (role, read_only, lag, GTID, wsrep state, answer time) and a
WARN line for each problem: no primary, split brain, stopped replication, lag
beyond ``--max-lag``, a node that does not answer.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

from ..cluster import ClusterPool, parse_cluster_url
from .output import print_error
from .settings import UsageError

__all__ = ["assess_cluster", "is_cluster_url", "run"]

_FIRST_ROUND = 10.0  # seconds to wait for every node's first probe


def is_cluster_url(url: Optional[str]) -> bool:
    """True for a URL naming several hosts (``h1:p1,h2:p2``)."""
    if not url:
        return False
    try:
        return len(parse_cluster_url(url)[1]) > 1
    except (TypeError, ValueError):
        return False


def assess_cluster(stats: Dict[str, Any], max_lag: float) -> List[str]:
    """The warnings for a cluster's ``get_stats()`` (pure: unit-testable)."""
    warnings: List[str] = []
    nodes: Dict[str, Dict[str, Any]] = stats["nodes"]
    topology = stats["topology"]
    problem = stats["problem"]
    if problem:
        warnings.append(problem if "split brain" not in problem else f"{problem} (never write to both)")
    for address, node in nodes.items():
        role = node["role"]
        if role == "down":
            warnings.append(f"{address} does not answer: {node['last_error'] or 'no reply'}")
        elif role == "replica" and not node["replicating"]:
            error = f": {node['last_error']}" if node["last_error"] else ""
            warnings.append(f"{address}: replication is stopped (out of read rotation){error}")
        elif role == "replica" and node["lag"] is not None and node["lag"] > max_lag:
            warnings.append(f"{address}: lag {node['lag']:g} s is beyond max_lag {max_lag:g} s (out of read rotation)")
        elif role == "not_synced":
            warnings.append(
                f"{address}: Galera node not synced (wsrep_local_state {node['wsrep_state']}) or without quorum"
            )
        elif role == "read_only" and topology == "replication":
            warnings.append(f"{address}: read_only=1 but replicates from nobody (a demoted primary?)")
    return warnings


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def run(args: argparse.Namespace) -> int:
    password = ""
    try:
        pool = ClusterPool(
            args.url,
            max_lag=args.max_lag,
            probe_interval=0.2,
            probe_timeout=min(float(args.connect_timeout), 5.0),
            connect_timeout=args.connect_timeout,
            maxsize=1,
            pool_name="pymysqlpool-check",
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        password = str(parse_cluster_url(args.url)[0].get("password") or "")  # checked by ClusterPool above
        pool.wait_probed(_FIRST_ROUND)
        stats = pool.get_stats()
    finally:
        pool.close()
    warnings = assess_cluster(stats, args.max_lag)
    nodes: Dict[str, Dict[str, Any]] = stats["nodes"]
    answered = any(node["role"] != "down" for node in nodes.values())
    if args.json:
        keys = ("role", "writer", "reader", "read_only", "lag", "gtid", "wsrep_state", "answer_ms", "last_error")
        shown = {a: {k: n[k] for k in keys} for a, n in nodes.items()}
        print(
            json.dumps({"ok": answered, "topology": stats["topology"], "nodes": shown, "warnings": warnings}, indent=2)
        )
        return 0 if answered else 1
    if not answered:
        errors = "; ".join(f"{a}: {n['last_error']}" for a, n in nodes.items())
        print_error("check", f"no node answers: {errors.replace(password, '***') if password else errors}")
        return 1
    print(f"topology  {stats['topology']}")
    header = ("node", "role", "routing", "read_only", "lag s", "gtid", "wsrep", "answer ms")
    rows = [header]
    for address, node in nodes.items():
        routing = "+".join(r for r in ("writer", "reader") if node[r]) or "-"
        read_only = None if node["read_only"] is None else int(node["read_only"])
        rows.append(
            (
                address,
                node["role"],
                routing,
                _cell(read_only),
                _cell(node["lag"]),
                _cell(node["gtid"]),
                _cell(node["wsrep_state"]),
                _cell(node["answer_ms"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for warning in warnings:
        print(f"WARN {warning}")
    count = len(warnings)
    print("OK" if not count else f"OK ({count} warning{'s' if count > 1 else ''})")
    return 0
