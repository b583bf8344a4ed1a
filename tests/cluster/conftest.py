"""Fixtures for the cluster drills: real replication and Galera topologies on 127.0.0.1.

Each topology is started once per module and shared by its drills; a drill that
changes the topology for good (failover, switchover) builds its own. Every
drill adds its figures to a table printed at the end of the run (support/run_tables.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pymysqlpool import ClusterPool
from support import run_tables
from support.mariadb_cluster import GaleraCluster, ReplicationCluster
from support.shells import cluster_type

# Probe often so the drills see changes quickly; connects fail fast on a dead node.
POOL_DEFAULTS: dict[str, Any] = {"maxsize": 10, "probe_interval": 0.2, "connect_timeout": 2, "timeout": 10}


@pytest.fixture(scope="module")
def replication() -> Iterator[ReplicationCluster]:
    with ReplicationCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def galera() -> Iterator[GaleraCluster]:
    with GaleraCluster() as cluster:
        yield cluster


@pytest.fixture
def restore(replication: ReplicationCluster) -> Iterator[ReplicationCluster]:
    """Give the next drill the shared topology as it was: every server up, replicating, caught up."""
    yield replication
    for server in replication.servers:
        if not server.is_running():
            server.resume()
            server.start()
        else:
            server.resume()  # a drill that froze it (SIGSTOP) and failed before SIGCONT
    for replica in replication.replicas:
        replica.admin_query("SET GLOBAL read_only=1")
        replica.admin_query("START SLAVE")
    replication.wait_caught_up()


@pytest.fixture
def cluster_cls(shell: str) -> Any:
    """``ClusterPool``, or ``AsyncClusterPool`` behind its blocking API: a
    test that takes this fixture runs against both shells (tests/conftest.py)."""
    return cluster_type(shell)


@pytest.fixture
def make_cluster_pool(cluster_cls: Any) -> Iterator[Callable[..., ClusterPool]]:
    """Factory: ``make_cluster_pool(url, **kwargs)`` -> a cluster pool of the
    test's shell, closed after the test."""
    pools: list[ClusterPool] = []

    def make(url: str, **kwargs: Any) -> ClusterPool:
        pool = cluster_cls(url, **{**POOL_DEFAULTS, **kwargs})
        pools.append(pool)
        assert pool.wait_ready(20, read_only=True), pool.get_stats()["problem"]
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def drill_report() -> Callable[..., None]:
    """``drill_report(drill, **figures)`` adds a row to the summary printed at the end."""

    def report(drill: str, **figures: Any) -> None:
        run_tables.add(run_tables.DRILLS, {"drill": drill, **figures})

    return report
