"""docs/cluster.md's promises about the API, checked on the test server as a
one-node cluster (its primary): code written for a ConnectionPool runs
unchanged, the primary takes the reads too, the documented stats exist."""

from __future__ import annotations

from typing import Any

import pytest

from pymysqlpool import ClusterPool, PoolClosed
from support.waiting import wait_until

pytestmark = pytest.mark.server

# docs/cluster.md, "Stats"
CLUSTER_KEYS = {"topology", "problem", "causal_waits", "causal_fallbacks", "rerouted", "write_waits", "nodes"}
NODE_KEYS = {
    "role",
    "writer",
    "reader",
    "read_only",
    "lag",
    "replicating",
    "gtid",
    "wsrep_state",
    "answer_ms",
    "last_error",
    "probe_failures",
    "wrong_node_errors",
    "gone_errors",
}


def port_of(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@port")
        return int(cur.fetchone()[0])


def test_a_one_node_cluster_runs_connection_pool_code(server_kwargs: dict[str, Any]) -> None:
    host, port = server_kwargs["host"], server_kwargs["port"]
    others = {k: v for k, v in server_kwargs.items() if k not in ("host", "port")}
    with ClusterPool(hosts=[(host, port)], pool_name="promises", maxsize=3, pre_create_num=1, **others) as cluster:
        assert cluster.wait_probed(10)
        assert cluster.wait_ready(10) and cluster.wait_ready(10, read_only=True)
        assert cluster.topology == "replication"
        (node,) = cluster.node_pools()
        assert node.name == f"promises/{host}:{port}"
        stats = cluster.get_stats()
        assert stats.keys() >= CLUSTER_KEYS
        assert stats["nodes"][f"{host}:{port}"].keys() >= NODE_KEYS
        assert stats["nodes"][f"{host}:{port}"]["role"] == "primary"
        with cluster.connection(read_only=True) as conn:  # the primary takes the reads too
            assert port_of(conn) == port
        conn = cluster.get_connection()  # 0.5.0 API
        try:
            assert cluster.total_num == node.total_num >= 1
            assert cluster.available_num == node.available_num
        finally:
            cluster.release(conn)
        with cluster.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@read_only")
            assert cur.fetchone()[0] == 0
        probed = cluster._nodes[0].probed_at
        cluster.reprobe(0)
        assert wait_until(lambda: cluster._nodes[0].probed_at != probed, 5)
    assert cluster.closed and node.closed
    with pytest.raises(PoolClosed):
        cluster.get_conn()


def test_a_new_connection_has_written_nothing(server_kwargs: dict[str, Any]) -> None:
    """docs/cluster.md: clean borrows cost no GTID round trip, also with autocommit=False
    (the handshake's SET AUTOCOMMIT is reported as a session change)."""
    host, port = server_kwargs["host"], server_kwargs["port"]
    others = {k: v for k, v in server_kwargs.items() if k not in ("host", "port")}
    with ClusterPool(hosts=[(host, port)], autocommit=False, **others) as cluster, cluster.connection() as conn:
        assert conn.raw.wrote is False
