"""Fixtures for the cluster drills: real replication and Galera topologies on 127.0.0.1.

Each topology is started once per module and shared by its drills; a drill that
changes the topology for good (failover, switchover) builds its own. Every
drill adds its figures to a table printed at the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pymysqlpool import ClusterPool
from support.mariadb_cluster import GaleraCluster, ReplicationCluster
from support.shells import cluster_type

# Probe often so the drills see changes quickly; connects fail fast on a dead node.
POOL_DEFAULTS: dict[str, Any] = {"maxsize": 10, "probe_interval": 0.2, "connect_timeout": 2, "timeout": 10}

DRILL_RESULTS: list[dict[str, Any]] = []


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
        DRILL_RESULTS.append({"drill": drill, **figures})

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not DRILL_RESULTS:
        return
    terminalreporter.section("cluster drills: what clients saw")
    for row in DRILL_RESULTS:
        figures = ", ".join(_figure(k, v) for k, v in row.items() if k != "drill")
        terminalreporter.write_line(f"{row['drill']}: {figures}")


def _figure(name: str, value: Any) -> str:
    return f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}"
