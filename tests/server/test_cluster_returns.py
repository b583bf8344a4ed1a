"""A cluster's return (docs/cluster.md): the common case is found from the
connection itself (its node pool stamped it at connect), everything else is
checked in full. Both shells, each a one-node cluster on the shared server:
a second return, a stranger's connection (another cluster's, a plain
pool's, not a connection at all) and a return through the node pool
(``conn.close()``) each end as the thread pool's own returns do, with exact
books."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pymysqlpool import AsyncClusterPool, ClusterPool, ConnectionPool, ReturnConnectionToPoolError

pytestmark = pytest.mark.server

LIMIT = 60.0  # the whole async test, so a hang fails instead of blocking the tier


def _cluster_kwargs(server_kwargs: dict[str, Any], name: str) -> dict[str, Any]:
    kwargs = {k: v for k, v in server_kwargs.items() if k not in ("host", "port")}
    return {
        **kwargs,
        "hosts": [(server_kwargs["host"], server_kwargs["port"])],
        "maxsize": 2,
        "pre_create_num": 1,
        "pool_name": name,
    }


def test_thread_cluster_refuses_second_and_foreign_returns_and_takes_one_through_its_node_pool(
    server_kwargs: dict[str, Any],
) -> None:
    with (
        ClusterPool(**_cluster_kwargs(server_kwargs, "ret-a")) as cluster,
        ClusterPool(**_cluster_kwargs(server_kwargs, "ret-b")) as other,
        ConnectionPool(**server_kwargs, maxsize=1, pool_name="ret-plain") as plain,
    ):
        assert cluster.wait_ready(20) and other.wait_ready(20)
        conn = cluster.get_conn()
        cluster.release(conn)
        with pytest.raises(ReturnConnectionToPoolError):
            cluster.release(conn)  # given back already
        theirs = other.get_conn()
        with pytest.raises(ReturnConnectionToPoolError, match="not lent by cluster 'ret-a'"):
            cluster.release(theirs)
        assert other.get_stats()["borrowed"] == 1  # still theirs, still lent
        other.release(theirs)
        mine = plain.get_conn()
        with pytest.raises(ReturnConnectionToPoolError, match="not lent by cluster 'ret-a'"):
            cluster.release(mine)
        plain.release(mine)
        with pytest.raises(ReturnConnectionToPoolError, match="not lent by cluster 'ret-a'"):
            cluster.release(object())  # type: ignore[arg-type]
        via_node = cluster.get_conn(read_only=True)
        via_node.close()  # the node pool's release hands it to the cluster's
        with pytest.raises(ReturnConnectionToPoolError):
            cluster.release(via_node)
        failed = cluster.get_conn()
        cluster.release(failed, failed=True)  # the full return: rolled back, kept or discarded, never lent twice
        assert cluster.get_stats()["borrowed"] == 0 == other.get_stats()["borrowed"]
        assert plain.get_stats()["borrowed"] == 0


def test_asyncio_cluster_refuses_second_and_foreign_returns_and_takes_one_through_its_node_pool(
    server_kwargs: dict[str, Any],
) -> None:
    async def main() -> None:
        async with (
            AsyncClusterPool(**_cluster_kwargs(server_kwargs, "aret-a")) as cluster,
            AsyncClusterPool(**_cluster_kwargs(server_kwargs, "aret-b")) as other,
        ):
            assert await cluster.wait_ready(20) and await other.wait_ready(20)
            conn = await cluster.get_conn()
            await cluster.release(conn)
            with pytest.raises(ReturnConnectionToPoolError):
                await cluster.release(conn)  # given back already
            theirs = await other.get_conn()
            with pytest.raises(ReturnConnectionToPoolError, match="not lent by cluster 'aret-a'"):
                await cluster.release(theirs)
            assert other.get_stats()["borrowed"] == 1
            await other.release(theirs)
            with pytest.raises(ReturnConnectionToPoolError, match="not lent by cluster 'aret-a'"):
                await cluster.release(object())  # type: ignore[arg-type]
            via_node = await cluster.get_conn(read_only=True)
            await via_node.close()  # the node pool's release hands it to the cluster's
            with pytest.raises(ReturnConnectionToPoolError):
                await cluster.release(via_node)
            failed = await cluster.get_conn()
            await cluster.release(failed, failed=True)
            assert cluster.get_stats()["borrowed"] == 0 == other.get_stats()["borrowed"]

    asyncio.run(asyncio.wait_for(main(), LIMIT))


@pytest.mark.parametrize("failed", ["no", 1, None], ids=repr)
def test_cluster_release_refuses_a_failed_that_is_not_a_bool_before_its_statements(
    server_kwargs: dict[str, Any], failed: Any
) -> None:
    """``failed="no"`` would have run the return's statements as for a
    failure and then been refused by the node pool, the connection left
    lent. Refused first, both shells: nothing runs, the borrower keeps the
    connection and gives it back properly."""
    with ClusterPool(**_cluster_kwargs(server_kwargs, "ret-flag")) as cluster:
        assert cluster.wait_ready(20)
        conn = cluster.get_conn()
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        with pytest.raises(TypeError, match=r"^pool 'ret-flag(/[^']+)?': failed must be True or False"):
            cluster.release(conn, failed)
        assert cluster.get_stats()["borrowed"] == 1
        cluster.release(conn, False)
        assert cluster.get_stats()["borrowed"] == 0

    async def main() -> None:
        async with AsyncClusterPool(**_cluster_kwargs(server_kwargs, "ret-flag")) as cluster:
            assert await cluster.wait_ready(20)
            conn = await cluster.get_conn()
            with pytest.raises(TypeError, match=r"^pool 'ret-flag(/[^']+)?': failed must be True or False"):
                await cluster.release(conn, failed)
            assert cluster.get_stats()["borrowed"] == 1
            await cluster.release(conn, True)
            assert cluster.get_stats()["borrowed"] == 0

    pytest.importorskip("aiomysql")
    asyncio.run(asyncio.wait_for(main(), LIMIT))
