"""A cluster's node pools dial like a plain pool: the pool's TLS contexts and
a keep-alive below the session's wait_timeout, plus connections that report
their writes (for causal reads)."""

from __future__ import annotations

from typing import Any

import pytest

from pymysqlpool import ClusterPool
from pymysqlpool._driver import WriteTrackingConnection

pytestmark = pytest.mark.server


def test_node_pools_keep_the_plain_pool_connect_rules(server_kwargs: dict[str, Any]) -> None:
    host, port = server_kwargs["host"], server_kwargs["port"]
    others = {k: v for k, v in server_kwargs.items() if k not in ("host", "port")}
    others["init_command"] = "SET SESSION wait_timeout = 8"
    with ClusterPool(hosts=[(host, port)], pool_name="node-rules", pre_create_num=1, **others) as cluster:
        with cluster.connection() as conn:
            raw = conn.raw
            assert isinstance(raw, WriteTrackingConnection)
        (node_pool,) = cluster.node_pools()
        assert raw._pool_tls is node_pool._tls  # one TLS context per pool, not one per connect
        keepalives = {slot.keepalive for slot in node_pool._slots}
        assert keepalives == {4.0}  # half the session's wait_timeout, below the 60 s default
