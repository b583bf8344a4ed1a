"""The cluster's rules without a server: roles, routing, URL parsing, arguments."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from pymysqlpool import ClusterPool
from pymysqlpool._topology import (
    DOWN,
    NOT_SYNCED,
    PRIMARY,
    READ_ONLY,
    REPLICA,
    SYNCED,
    NodeFacts,
    role_of,
    route,
)
from pymysqlpool.cluster import parse_cluster_url


def primary(**kw: Any) -> NodeFacts:
    return NodeFacts(read_only=False, server_id=1, gtid="0-1-5", galera=False, **kw)


def replica(lag: Optional[float] = 0.0, running: bool = True, read_only: bool = True) -> NodeFacts:
    return NodeFacts(
        read_only=read_only,
        server_id=2,
        gtid="0-1-5",
        galera=False,
        sources=1,
        replicating=running,
        sql_running=running,
        lag=lag if running else None,
    )


def galera(state: int = 4, ready: bool = True, status: str = "Primary") -> NodeFacts:
    return NodeFacts(
        read_only=False,
        server_id=1,
        gtid="",
        galera=True,
        wsrep_ready=ready,
        wsrep_state=state,
        wsrep_cluster_status=status,
        wsrep_cluster_size=3,
    )


def test_roles_come_from_the_answers() -> None:
    assert role_of(None) == DOWN
    assert role_of(primary()) == PRIMARY
    assert role_of(replica()) == REPLICA
    assert role_of(replica(running=False)) == REPLICA
    # promoted but not yet told to forget its source: writable, threads stopped
    assert role_of(replica(running=False, read_only=False)) == PRIMARY
    assert role_of(NodeFacts(read_only=True, server_id=1, gtid="", galera=False)) == READ_ONLY
    assert role_of(galera()) == SYNCED
    assert role_of(galera(state=2)) == NOT_SYNCED
    assert role_of(galera(ready=False)) == NOT_SYNCED
    # lost quorum: answers, read_only=0, but non-Primary component
    assert role_of(galera(status="non-Primary")) == NOT_SYNCED


def test_writes_to_the_primary_reads_to_fresh_replicas_whatever_the_order() -> None:
    routing = route([replica(), primary(), replica(lag=7.0)], max_lag=5)
    assert routing.topology == "replication"
    assert routing.writers == (1,)
    assert routing.readers == (0,)
    assert routing.problem == ""


def test_reads_fall_back_to_the_primary_only_when_allowed() -> None:
    stale = [primary(), replica(lag=9.0), replica(running=False)]
    assert route(stale, max_lag=5).readers == (0,)
    assert route(stale, max_lag=5, read_fallback_to_primary=False).readers == ()


def test_without_a_primary_replicas_that_lost_it_still_serve_reads() -> None:
    routing = route([None, replica(lag=None), replica(running=False)], max_lag=1)
    assert routing.writers == ()
    assert routing.readers == (1, 2)
    assert "no primary" in routing.problem


def test_split_brain_refuses_writes() -> None:
    routing = route([primary(), primary(), replica()], max_lag=5)
    assert routing.split_brain
    assert routing.writers == ()
    assert "split brain" in routing.problem
    assert routing.readers == (2,)


def test_nothing_answers() -> None:
    routing = route([None, None], max_lag=5)
    assert routing.writers == routing.readers == ()
    assert routing.problem == "no node answers"


def test_galera_single_writer_is_sticky_and_deterministic() -> None:
    nodes = [galera(), galera(), galera()]
    assert route(nodes, max_lag=1).writers == (0,)
    assert route(nodes, max_lag=1, current_writer=2).writers == (2,)
    # the writer lost sync: the first synced node takes over
    nodes[2] = galera(state=2)
    assert route(nodes, max_lag=1, current_writer=2).writers == (0,)
    assert route(nodes, max_lag=1).readers == (0, 1)
    assert route(nodes, max_lag=1, galera_writer="spread").writers == (0, 1)


def test_galera_without_quorum_has_no_reader_nor_writer() -> None:
    routing = route([galera(status="non-Primary"), None, None], max_lag=1)
    assert routing.topology == "galera"
    assert routing.writers == routing.readers == ()
    assert "no synced Galera node" in routing.problem


def test_parse_cluster_url() -> None:
    kwargs, hosts = parse_cluster_url("mysql://app:s%40cret@10.0.0.1:3311,db2,[::1]:3313/shop")
    assert kwargs == {"user": "app", "password": "s@cret", "database": "shop"}
    assert hosts == [("10.0.0.1", 3311), ("db2", 3306), ("::1", 3313)]


@pytest.mark.parametrize(
    "url",
    ["http://u@h/db", "mysql://u@h:notaport/db", "mysql://u@h:0/db", "mysql://u@,h2/db"],
)
def test_bad_cluster_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_cluster_url(url)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ValueError),
        ({"hosts": [("h", 1), ("h", 1)]}, ValueError),
        ({"hosts": [("h", 1)], "host": "x"}, TypeError),
        ({"hosts": [("h", 1)], "probe_interval": 5}, ValueError),
        ({"hosts": [("h", 1)], "probe_interval": 0}, ValueError),
        ({"hosts": [("h", 1)], "max_lag": -1}, ValueError),
        ({"hosts": [("h", 1)], "galera_writer": "all"}, ValueError),
        ({"hosts": [("h", 1)], "balance": "random"}, ValueError),
        ({"hosts": [("h", 1)], "causal": "yes"}, TypeError),
        ({"hosts": [("h", "1")]}, TypeError),
        ({"hosts": [("h", 1)], "maxsize": 0}, ValueError),
    ],
)
def test_bad_arguments_fail_before_any_thread_starts(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ClusterPool(**kwargs)


def test_cluster_url_detection_and_check_warnings() -> None:
    from pymysqlpool.cli.cluster_check import assess_cluster, is_cluster_url

    assert is_cluster_url("mysql://u:p,w@h1:1,h2:2/db")
    assert not is_cluster_url("mysql://u:p,w@h1:1/db")
    assert not is_cluster_url(None)

    def node(role: str, **kw: Any) -> dict[str, Any]:
        base = {"role": role, "replicating": True, "lag": 0.0, "last_error": "", "wsrep_state": None}
        return {**base, **kw}

    stats = {
        "topology": "replication",
        "problem": "",
        "nodes": {
            "a:1": node("primary", lag=None),
            "b:2": node("replica", replicating=False, lag=None, last_error="error connecting"),
            "c:3": node("replica", lag=9.0),
            "d:4": node("down", last_error="refused"),
            "e:5": node("read_only"),
        },
    }
    warnings = assess_cluster(stats, max_lag=5)
    assert warnings == [
        "b:2: replication is stopped (out of read rotation): error connecting",
        "c:3: lag 9 s is beyond max_lag 5 s (out of read rotation)",
        "d:4 does not answer: refused",
        "e:5: read_only=1 but replicates from nobody (a demoted primary?)",
    ]
    assert assess_cluster({**stats, "nodes": {}, "problem": "no primary"}, 5) == ["no primary"]
