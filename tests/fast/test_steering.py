"""The rule book both cluster shells run (``_steering``), driven without a
server: probe results in, routing decisions, borrow steps and causal plans out."""

from __future__ import annotations

import time
from typing import Any, Optional

import pymysql
import pytest

from pymysqlpool import PoolClosed, PoolTimeout, SplitBrainError
from pymysqlpool._books import Books
from pymysqlpool._core import NoLock
from pymysqlpool._steering import BACKOFF_CAP, CAUSAL_WAIT, CLIENT_SLACK, ClusterSettings, Steering
from pymysqlpool._topology import NodeFacts
from pymysqlpool.stats import Counters


class FakePool:
    """What the core's balancing seam (``PoolCore.least_borrowed`` and
    ``first_with_room``) reads of a node pool: its books."""

    def __init__(self, name: str, lent: int = 0, maxsize: int = 2) -> None:
        self.name = name
        self._books = Books(maxsize, Counters(), time.monotonic)
        self._books.open = lent

    def __repr__(self) -> str:
        return self.name


def steering(count: int = 3, **kwargs: Any) -> Steering[FakePool]:
    settings = ClusterSettings.build(
        "ClusterPool",
        None,
        [("h", 3300 + i) for i in range(count)],
        kwargs.pop("max_lag", 5.0),
        kwargs.pop("causal", False),
        kwargs.pop("probe_interval", 0.5),
        1.0,
        kwargs.pop("read_fallback_to_primary", True),
        "single",
        kwargs.pop("balance", "least_borrowed"),
        False,
        kwargs,
        frozenset({"user", "password"}),
    )
    s: Steering[FakePool] = Steering(settings, NoLock())
    for node in s.nodes:
        node.pool = FakePool(node.address)
    return s


def primary(gtid: str = "0-1-10") -> NodeFacts:
    return NodeFacts(read_only=False, server_id=1, gtid=gtid, galera=False, identity="p")


def replica(server: int, gtid: str = "0-1-10", lag: Optional[float] = 0.0) -> NodeFacts:
    return NodeFacts(
        read_only=True,
        server_id=server,
        gtid=gtid,
        galera=False,
        sources=1,
        replicating=True,
        sql_running=True,
        lag=lag,
        identity=f"r{server}",
    )


def galera(server: int) -> NodeFacts:
    return NodeFacts(
        read_only=False,
        server_id=server,
        gtid="",
        galera=True,
        wsrep_ready=True,
        wsrep_state=4,
        wsrep_cluster_status="Primary",
        wsrep_cluster_size=3,
        identity=f"g{server}",
    )


def probed(s: Steering[FakePool], *facts: Optional[NodeFacts], now: float = 100.0) -> bool:
    for node, f in zip(s.nodes, facts):
        if f is None:
            s.probe_failed(node, OSError("refused"), now, now)
        else:
            s.probed(node, f, now)
    return s.publish()


def test_no_routing_before_every_node_was_probed_once() -> None:
    s = steering()
    s.probed(s.nodes[0], primary(), 1.0)
    assert s.publish() is False and s.routing.problem == "not probed yet" and not s.probed_once
    assert probed(s, primary(), replica(2), None)
    assert s.probed_once and s.writers == (s.nodes[0].pool,) and s.readers == (s.nodes[1].pool,)
    assert probed(s, primary(), replica(2), None) is False  # the same routing: nothing to announce


def test_the_probe_schedule_backs_off_to_a_cap() -> None:
    s = steering(count=1, probe_interval=0.25)
    node = s.nodes[0]
    assert s.due(0.0) == [node] and node.busy
    assert s.due(0.0) == []  # a node being probed is not probed twice
    pauses = []
    for _ in range(6):
        first = s.probe_failed(node, OSError("down"), 0.0, 10.0)
        pauses.append((first, node.next_probe - 10.0))
    assert [p for _, p in pauses] == [0.25, 0.5, 1.0, 2.0, BACKOFF_CAP, BACKOFF_CAP]
    assert [f for f, _ in pauses] == [True, False, False, False, False, False]  # told once
    node.busy = False
    s.probed(node, primary(), 20.0)
    assert node.failures == 0 and node.next_probe == 20.25
    assert s.due(20.1) == [] and s.due(20.25) == [node]


def test_config_errors_are_named_and_raised_by_borrows() -> None:
    s = steering(user="app")
    probed(s, primary(), replica(2), replica(3))
    denied = pymysql.err.OperationalError(1227, "Access denied; you need SLAVE MONITOR")
    s.probe_failed(s.nodes[1], denied, 1.0, 1.0)
    error = s.config_error()
    assert error is not None and "GRANT SLAVE MONITOR ON *.* TO 'app'@'<host>'" in str(error)
    assert "h:3301" in str(error)
    s.probed(s.nodes[1], replica(2), 2.0)
    assert s.config_error() is None
    s.probe_failed(s.nodes[2], pymysql.err.OperationalError(1045, "Access denied for user 'app'"), 3.0, 3.0)
    error = s.config_error()
    assert error is not None and error.args[0] == 1045 and "fix the user, password or database" in str(error)
    s.probe_failed(s.nodes[2], pymysql.err.OperationalError(2003, "Can't connect"), 4.0, 4.0)
    assert s.config_error() is None  # a node that does not answer: another node or a retry may do


def test_a_write_borrow_is_refused_in_a_split_brain_with_the_gtid_evidence() -> None:
    s = steering()
    probed(s, primary("0-1-10"), replica(2), replica(3))
    probed(s, primary("0-1-10"), NodeFacts(read_only=False, server_id=2, gtid="0-2-11", galera=False, identity="x"))
    attempt = s.attempt(False, False, 1.0, 0.0, 30.0)
    with pytest.raises(SplitBrainError, match="split brain"):
        attempt.choose(0.0)
    # reads go on
    assert s.attempt(True, False, 1.0, 0.0, 30.0).choose(0.0) is not None


def test_a_lagging_promotion_while_the_primary_is_silent_is_refused_and_its_gtid_kept() -> None:
    s = steering()
    probed(s, primary("0-1-10"), replica(2, "0-1-9"), replica(3, "0-1-9"))
    promoted = NodeFacts(read_only=False, server_id=2, gtid="0-1-9", galera=False, identity="r2")
    probed(s, None, promoted, replica(3, "0-1-9"))
    with pytest.raises(SplitBrainError, match="0-1-9 does not include h:3300's 0-1-10"):
        s.attempt(False, False, 1.0, 0.0, 30.0).choose(0.0)
    nodes = s.stats_of([{}, {}, {}])["nodes"]
    assert nodes["h:3300"]["role"] == "down" and nodes["h:3300"]["gtid"] == "0-1-10"  # its last known position


def test_a_failed_node_is_stepped_over_until_the_routing_changes() -> None:
    s = steering()
    probed(s, primary(), replica(2), replica(3))
    attempt = s.attempt(True, False, 5.0, 0.0, 30.0)
    first = attempt.choose(0.0)
    assert first is not None
    attempt.pool_failed(first, s.nodes[int(first.name[-1])], OSError("gone"))
    second = attempt.choose(0.1)
    assert second is not None and second is not first
    attempt.pool_failed(second, s.nodes[int(second.name[-1])], PoolTimeout("full"))
    assert attempt.choose(0.2) is None  # every reader failed: wait for a new routing
    assert attempt.wait_for() == 0.5 and attempt.routing_unchanged()
    assert attempt.waited_for_routing() is False
    probed(s, primary(), replica(2), None)
    assert attempt.waited_for_routing() is True
    assert attempt.choose(0.3) is not None  # a new routing: every node gets another chance
    assert s.stats["rerouted"] == 1  # a node pool's PoolTimeout is not a node failure


def test_a_read_goes_to_the_primary_once_no_routed_replica_can_be_reached() -> None:
    """docs/cluster.md, read_fallback_to_primary: a replica that fails to
    connect does not qualify, even while the routing (its probe still in
    flight) lists it; replicas that were only full do not send reads there."""
    s = steering()
    probed(s, primary(), replica(2), replica(3))
    attempt = s.attempt(True, False, 5.0, 0.0, 30.0)
    for now in (0.0, 0.1):
        pool = attempt.choose(now)
        assert pool is not None and pool not in s.writers
        attempt.pool_failed(pool, s.nodes[int(pool.name[-1])], OSError("gone"))
    assert attempt.choose(0.2) is s.writers[0]
    strict = steering(read_fallback_to_primary=False)
    probed(strict, primary(), replica(2), replica(3))
    attempt = strict.attempt(True, False, 5.0, 0.0, 30.0)
    for now in (0.0, 0.1):
        pool = attempt.choose(now)
        assert pool is not None
        attempt.pool_failed(pool, strict.nodes[int(pool.name[-1])], OSError("gone"))
    assert attempt.choose(0.2) is None  # no fallback wanted: wait for a new routing


def test_the_deadline_ends_a_borrow_with_the_last_error() -> None:
    s = steering()
    probed(s, primary(), replica(2), replica(3))
    attempt = s.attempt(False, False, 2.0, 0.0, 30.0)
    pool = attempt.choose(5.0)
    assert pool is not None and attempt.remaining == 0.0  # past the deadline, nothing failed yet: one try
    attempt.pool_failed(pool, s.nodes[0], OSError("refused"))
    with pytest.raises(PoolTimeout, match="no writer") as caught:
        attempt.choose(5.0)
    assert isinstance(caught.value.__cause__, OSError)
    s.closed = True
    with pytest.raises(PoolClosed):
        s.attempt(False, False, 2.0, 0.0, 30.0)


def test_a_causal_read_that_cannot_catch_up_falls_back_to_the_primary() -> None:
    s = steering()
    probed(s, primary(), replica(2), replica(3))
    assert s.took_gtid("0-1-11")
    attempt = s.attempt(True, True, 4.0, 0.0, 30.0)
    pool = attempt.choose(0.0)
    assert pool is not None and pool is not s.nodes[0].pool
    kind, args, limit = s.causal_plan(pool, s.nodes[1], 4.0)
    assert (kind, args, limit) == ("gtid_wait", ("0-1-11", CAUSAL_WAIT), CAUSAL_WAIT + CLIENT_SLACK)
    assert s.causal_plan(pool, s.nodes[1], 1.0)[2] == 0.5 + CLIENT_SLACK  # half of what is left
    attempt.not_caught_up(pool, s.nodes[1])
    fallback = attempt.choose(1.0)
    assert fallback is s.nodes[0].pool
    assert s.causal_plan(fallback, s.nodes[0], 3.0)[0] == "none"  # the primary has every write
    attempt.lent(fallback)
    assert s.stats["causal_fallbacks"] == 1 and s.stats["causal_waits"] == 2


def test_an_unplaced_write_sends_causal_reads_to_the_primary() -> None:
    s = steering()
    probed(s, primary(), replica(2), replica(3))
    s.causal_unknown = True
    assert s.attempt(True, True, 1.0, 0.0, 30.0).choose(0.0) is s.nodes[0].pool
    assert s.attempt(True, False, 1.0, 0.0, 30.0).choose(0.0) is not s.nodes[0].pool  # plain reads unaffected
    assert s.took_gtid("0-1-12") and s.causal_unknown is False


def test_causal_positions_keep_the_highest_sequence_per_domain() -> None:
    s = steering()
    assert s.took_gtid("0-1-10,1-5-3")
    assert s.took_gtid("0-2-9,2-1-1")  # lower in domain 0: kept at 10
    assert s.causal_text == "0-1-10,1-5-3,2-1-1"
    assert s.took_gtid("0-2-11") and s.causal_text == "0-2-11,1-5-3,2-1-1"
    assert not s.took_gtid("not a gtid") and s.causal_text == "0-2-11,1-5-3,2-1-1"


def test_galera_reads_wait_with_wsrep_sync_wait_and_need_no_gtid_read() -> None:
    s = steering()
    probed(s, galera(1), galera(2), galera(3))
    pool = s.nodes[1].pool
    assert s.causal_plan(pool, s.nodes[1], 2.0) == ("sync_wait", None, 2.0 + CLIENT_SLACK)
    assert s.reads_gtid_after_write(s.nodes[1], tracked=True) is False


def test_round_robin_skips_a_full_node_and_least_borrowed_prefers_the_idlest() -> None:
    s = steering(balance="round_robin")
    full, free = FakePool("full", lent=2), FakePool("free", lent=0)
    assert {s.pick((full, free)).name for _ in range(6)} == {"free"}
    s = steering()
    busy, idle = FakePool("busy", lent=1), FakePool("idle", lent=0)
    assert {s.pick((busy, idle)).name for _ in range(6)} == {"idle"}


def test_a_return_reads_the_gtid_only_when_it_must() -> None:
    s = steering()
    probed(s, primary(), replica(2), replica(3))
    assert s.reads_gtid_after_write(s.nodes[0], tracked=True) is True
    assert s.reads_gtid_after_write(s.nodes[0], tracked=False) is False  # causal off: not worth a round trip
    assert steering(causal=True).reads_gtid_after_write(s.nodes[0], tracked=False) is True


def test_a_node_back_writable_after_a_silence_while_another_wrote_takes_no_writes() -> None:
    s = steering(count=2)
    probed(s, primary("0-1-10"), replica(2))
    assert s.writers == (s.nodes[0].pool,)
    probed(s, None, NodeFacts(read_only=False, server_id=2, gtid="0-2-12", galera=False, identity="r2"))
    assert s.writers == (s.nodes[1].pool,)  # promoted while #0 was silent
    probed(s, primary("0-1-11"), None)  # #0 back writable, #1 silent: a missed probe is no evidence
    assert s.writers == () and s.routing.split_brain
    with pytest.raises(SplitBrainError, match="came back writable while h:3301 was the primary"):
        s.attempt(False, False, 1.0, 0.0, 30.0).choose(0.0)


def test_a_galera_causal_read_whose_wait_failed_counts_as_a_fallback() -> None:
    s = steering()
    probed(s, galera(1), galera(2), galera(3))
    attempt = s.attempt(True, True, 4.0, 0.0, 30.0)
    first = attempt.choose(0.0)
    assert first is not None
    attempt.not_caught_up(first, s.nodes[s.readers.index(first)])
    writer = attempt.choose(0.5)
    assert writer is s.writers[0] and writer in s.readers
    attempt.lent(writer)
    assert s.stats["causal_fallbacks"] == 1
