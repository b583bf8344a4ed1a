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


def test_an_answer_through_cursor_execute_is_watched(server_kwargs: dict[str, Any]) -> None:
    """``cursor.execute`` goes through Connection.query, which reads its
    answer without ``_read_query_result``: an answer flagged "session state
    changed" is still seen. (The shared server keeps no binary log, so no
    write changes ``last_gtid`` here; a tracked variable's change raises the
    same flag, which is what the connection reads.)"""
    from pymysqlpool._driver import connect_tracking_writes

    raw = connect_tracking_writes(dict(server_kwargs), 5.0)
    try:
        assert isinstance(raw, WriteTrackingConnection)
        with raw.cursor() as cur:
            cur.execute("SET SESSION session_track_system_variables = 'last_gtid,time_zone'")
            raw.wrote = False
            cur.execute("SELECT 1")
            assert not raw.wrote
            cur.execute("SET SESSION time_zone = '+01:00'")
        assert raw.wrote
    finally:
        raw.close()
