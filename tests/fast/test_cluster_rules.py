"""Issue 19 without a server: URL and hosts= parsing, argument checks, the
split-brain memory (History), and the GTID an OK packet carries."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any, Optional

import pytest

from pymysqlpool import ClusterPool, ConnectionPool
from pymysqlpool._driver import last_gtid
from pymysqlpool._topology import History, NodeFacts, includes, parse_gtid, route
from pymysqlpool._urls import parse_hosts
from pymysqlpool.cli.settings import UsageError
from pymysqlpool.cli.settings import parse_url as cli_parse_url
from pymysqlpool.cluster import parse_cluster_url
from support.waiting import wait_until

# -- one URL parser ---------------------------------------------------------------------


def test_a_hash_in_the_password_is_the_password_not_a_fragment() -> None:
    kwargs, hosts = parse_cluster_url("mysql://app:se#cr/et?@h1:3311,h2:3312/shop")
    assert kwargs == {"user": "app", "password": "se#cr/et?", "database": "shop"}
    assert hosts == [("h1", 3311), ("h2", 3312)]
    assert cli_parse_url("mysql://app:p#w@h/d")["password"] == "p#w"
    assert parse_cluster_url("mysql://app:p@ss@h1,h2/d")[0]["password"] == "p@ss"  # up to the last @


def test_ipv6_hosts_lose_their_brackets_everywhere() -> None:
    assert parse_cluster_url("mysql://u@[::1]:3311,[fe80::1]/d")[1] == [("::1", 3311), ("fe80::1", 3306)]
    assert cli_parse_url("mysql://[::1]:3310/d")["host"] == "::1"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h:1:3311/d",  # two colons: an IPv6 address needs brackets
        "mysql://u@h:+3311/d",
        "mysql://u@h:3_311/d",
        "mysql://u@h:\uff13\uff13\uff11\uff11/d",  # fullwidth digits
        "mysql://u@h:70000/d",
        "mysql://u@h:0/d",
        "mysql://u@h: 3311/d",
        "mysql://u@[::1/d",
        "mysql://u@h/d?ssl=1",
        "mysql://u@h/d?unknown=1",
        "mysql://u@h/d#frag",
        "mysql://u@ h/d",
    ],
)
def test_every_consumer_refuses_the_same_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_cluster_url(url)
    with pytest.raises(ValueError):
        ConnectionPool.from_url(url)
    with pytest.raises(UsageError):
        cli_parse_url(url)


def test_known_query_parameters_reach_the_pools() -> None:
    kwargs, _ = parse_cluster_url("mysql://u@h1,h2/d?charset=latin1&connect_timeout=3&maxsize=7")
    assert kwargs == {"user": "u", "database": "d", "charset": "latin1", "connect_timeout": 3, "maxsize": 7}
    pool = ConnectionPool.from_url("mysql://u:p%23w@127.0.0.1:1/d?maxsize=3&charset=latin1", open=False)
    try:
        assert pool.maxsize == 3
        assert pool._config.connect_kwargs["charset"] == "latin1"
        assert pool._config.connect_kwargs["password"] == "p#w"
        assert pool._config.connect_kwargs["port"] == 1
    finally:
        pool.close()


def test_sqlalchemy_helper_uses_the_same_parser() -> None:
    pytest.importorskip("sqlalchemy")
    from pymysqlpool.sqlalchemy import pool_from_url

    with pytest.raises(ValueError, match="unknown query parameter 'ssl'"):
        pool_from_url("mysql+pymysql://u@h/d?ssl=1")
    with pytest.raises(ValueError, match="port"):
        pool_from_url("mysql://u@h:+3311/d")


# -- hosts= ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "error"),
    [
        ("db", TypeError),  # a string is not a list of nodes ("d" and "b")
        ({"h": 1}, TypeError),
        ([("", 3306)], ValueError),
        ([":3306"], ValueError),
        ([" 127.0.0.1:3306"], ValueError),
        ([("127.0.0.1 ", 3306)], ValueError),
        (["h:abc"], ValueError),
        ([("h", 70000)], ValueError),
        ([("h", True)], TypeError),
        ([("h", 1, 2)], TypeError),
    ],
)
def test_hosts_parsing_is_strict(hosts: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_hosts(hosts)
    with pytest.raises(error):
        ClusterPool(hosts=hosts)


def test_hosts_forms() -> None:
    assert parse_hosts(["h", "h:1", "[::1]:2", ("x", 3), ["y", 4]]) == [
        ("h", 3306),
        ("h", 1),
        ("::1", 2),
        ("x", 3),
        ("y", 4),
    ]


# -- arguments checked before any connection ------------------------------------------


def _listener() -> socket.socket:
    """A port that accepts TCP connections and never answers: a dial would hang."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_a_rejected_config_opens_nothing() -> None:
    listener = _listener()
    port = listener.getsockname()[1]
    try:
        with pytest.raises(ValueError):
            ClusterPool(hosts=[("127.0.0.1", port), ("127.0.0.1", 70000)], pre_create_num=2, connect_timeout=1)
        with pytest.raises((ValueError, TypeError)):
            ClusterPool(hosts=[("127.0.0.1", port), ("127.0.0.2", port)], pre_create_num=2, maxsize="x")
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody dialed
    finally:
        listener.close()


@pytest.mark.parametrize("value", [float("inf"), 1e10, 1e9, 61, 0, -1, float("nan"), "1", None])
def test_absurd_probe_timeouts_are_refused(value: Any) -> None:
    with pytest.raises(TypeError if value in ("1", None) else ValueError, match="probe_timeout"):
        ClusterPool(hosts=[("127.0.0.1", 1)], probe_timeout=value)


def test_close_closes_every_node_even_when_one_fails_and_twice_is_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = ClusterPool(hosts=[("127.0.0.1", 1), ("127.0.0.1", 2)], probe_timeout=0.2, connect_timeout=0.2)
    first, second = cluster.node_pools()
    real_close = first.close
    calls = []

    def broken_close(timeout: Optional[float] = None) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OverflowError("timeout value is too large")
        return real_close(timeout)

    monkeypatch.setattr(first, "close", broken_close)
    with pytest.raises(OverflowError):
        cluster.close()
    assert second.closed  # the second node was closed although the first raised
    assert not first.closed
    cluster.close()  # the second call closes what the first could not
    assert first.closed and cluster.closed
    cluster.close()


# -- the split-brain memory (no I/O) ----------------------------------------------------


def writable(gtid: str, server_id: int = 1) -> NodeFacts:
    return NodeFacts(read_only=False, server_id=server_id, gtid=gtid, galera=False, identity=f"s{server_id}")


def following(gtid: str, server_id: int) -> NodeFacts:
    return NodeFacts(
        read_only=True,
        server_id=server_id,
        gtid=gtid,
        galera=False,
        sources=1,
        replicating=True,
        sql_running=True,
        lag=0.0,
        identity=f"s{server_id}",
    )


def routed(history: History, facts: list[Optional[NodeFacts]]) -> Any:
    kept = history.update(facts)
    routing = route(kept, max_lag=5, suspects=history.blocked())
    if len(routing.writers) == 1:
        history.writer = routing.writers[0]
    return routing


def test_gtid_inclusion() -> None:
    assert includes(parse_gtid("0-2-150"), parse_gtid("0-1-100"))
    assert not includes(parse_gtid("0-1-100"), parse_gtid("0-2-150"))
    assert includes(parse_gtid("0-1-100"), parse_gtid("0-1-100"))
    assert not includes(parse_gtid("0-1-100"), parse_gtid("0-2-100"))  # same number, two histories
    assert not includes(parse_gtid("0-1-100"), parse_gtid("0-1-5,1-3-1"))  # a domain missing
    with pytest.raises(ValueError):
        parse_gtid("garbage")


def test_a_split_brain_is_not_forgotten_when_the_other_primary_stops_answering() -> None:
    history = History(3)
    # n0 was killed; n1 promoted and wrote; n0 restarts writable: split brain.
    assert routed(history, [None, writable("0-2-150", 2), following("0-2-150", 3)]).writers == (1,)
    routing = routed(history, [writable("0-1-100", 1), writable("0-2-150", 2), following("0-2-150", 3)])
    assert routing.split_brain and routing.writers == ()
    # n1 freezes (a missed probe): n0 is writable alone, but behind n1's last known position.
    routing = routed(history, [writable("0-1-100", 1), None, following("0-2-150", 3)])
    assert routing.split_brain and routing.writers == ()
    assert "0-1-100 does not include #1's 0-2-150" in routing.problem
    # n1 answers again and n0 is demoted and re-attached: n0 is trusted again, n1 writes.
    routing = routed(history, [following("0-2-150", 1), writable("0-2-151", 2), following("0-2-151", 3)])
    assert routing.writers == (1,) and not routing.split_brain
    assert history.suspects == {}


def test_a_writable_replica_that_still_replicates_is_no_split_brain() -> None:
    """docs/cluster.md: a replica set read_only=0 while its threads run is still
    a replica (reads, no writes); only once it stops replicating is it a
    second primary."""
    history = History(2)
    loose = dataclasses.replace(following("0-1-100", 2), read_only=False)
    routing = routed(history, [writable("0-1-100", 1), loose])
    assert routing.writers == (0,) and routing.readers == (1,) and not routing.split_brain
    stopped = dataclasses.replace(loose, replicating=False, sql_running=False)
    routing = routed(history, [writable("0-1-100", 1), stopped])
    assert routing.split_brain and routing.writers == ()


def test_a_suspect_takes_writes_again_once_it_holds_every_known_position() -> None:
    history = History(2)
    routed(history, [writable("0-1-100", 1), writable("0-2-100", 2)])  # split brain
    routing = routed(history, [writable("0-1-100", 1), None])
    assert routing.writers == ()  # 0-1-100 does not include 0-2-100 (same number, another server)
    routing = routed(history, [writable("0-1-101", 1), None])
    assert routing.writers == (0,)  # now it is past every known position


def test_back_writable_after_a_silence_while_another_was_primary_is_suspect() -> None:
    history = History(2)
    assert routed(history, [writable("0-1-100", 1), following("0-1-100", 2)]).writers == (0,)
    assert routed(history, [None, writable("0-2-120", 2)]).writers == (1,)  # failover: n1 promoted
    # n1 freezes before n0 comes back writable: n0 never met n1 writable, yet is behind it.
    routing = routed(history, [writable("0-1-100", 1), None])
    assert routing.writers == () and "came back writable while #1 was the primary" in routing.problem


def test_a_promotion_while_the_primary_is_silent_needs_its_last_known_position() -> None:
    history = History(3)
    assert routed(history, [writable("0-1-100", 1), following("0-1-99", 2), following("0-1-100", 3)]).writers == (0,)
    # n0 freezes (not demoted); n1 is promoted though n0's 0-1-100 never reached it.
    routing = routed(history, [None, writable("0-1-99", 2), following("0-1-100", 3)])
    assert routing.split_brain and routing.writers == ()
    assert "#1 became writable while #0, the primary, did not answer" in routing.problem
    assert "0-1-99 does not include #0's 0-1-100, #2's 0-1-100" in routing.problem
    # The evidence arrives (it pulled the missing transaction and wrote on): n1 takes writes.
    routing = routed(history, [None, writable("0-2-101", 2), following("0-1-100", 3)])
    assert routing.writers == (1,) and not routing.split_brain and history.suspects == {}


def test_a_failover_to_the_most_advanced_replica_is_followed_at_once() -> None:
    history = History(3)
    assert routed(history, [writable("0-1-100", 1), following("0-1-100", 2), following("0-1-98", 3)]).writers == (0,)
    routing = routed(history, [None, writable("0-1-100", 2), following("0-1-98", 3)])
    assert routing.writers == (1,) and not routing.split_brain and history.suspects == {}


def test_a_promotion_needs_the_writes_acknowledged_after_the_last_probe() -> None:
    """A probe is a sample: a write acknowledged through the cluster (its GTID
    from the OK packet) after the primary's last probe is a known position
    too. Without it the promoted replica looked complete."""
    history = History(2)
    assert routed(history, [writable("0-1-100", 1), following("0-1-100", 2)]).writers == (0,)
    history.acknowledged = parse_gtid("0-1-101")  # acknowledged; n0 froze before its next probe
    routing = routed(history, [None, writable("0-1-100", 2)])
    assert routing.split_brain and routing.writers == ()
    assert "the writes acknowledged through this cluster (0-1-101)" in routing.problem
    # It pulled the missing transaction (and wrote on): the evidence is there.
    routing = routed(history, [None, writable("0-2-102", 2)])
    assert routing.writers == (1,) and history.suspects == {}


def test_a_promotion_after_the_primary_was_seen_demoted_is_not_suspect() -> None:
    history = History(2)
    assert routed(history, [writable("0-1-100", 1), following("0-1-100", 2)]).writers == (0,)
    demoted = NodeFacts(read_only=True, server_id=1, gtid="0-1-100", galera=False, identity="s1")
    assert routed(history, [demoted, following("0-1-100", 2)]).writers == ()
    # The demoted primary then stops answering: its silence hides no write it could still take.
    routing = routed(history, [None, writable("0-1-99", 2)])
    assert routing.writers == (1,) and history.suspects == {}


def test_the_same_server_twice_is_left_out() -> None:
    history = History(3)
    same = writable("0-1-5", 1)
    routing = routed(history, [same, same, following("0-1-5", 3)])
    assert routing.writers == (0,) and not routing.split_brain
    assert history.duplicates == {1: 0}


# -- the GTID in an OK packet ------------------------------------------------------------


def _lenenc(data: bytes) -> bytes:
    return bytes([len(data)]) + data


def test_last_gtid_is_read_from_the_ok_packet() -> None:
    entry = _lenenc(b"last_gtid") + _lenenc(b"0-1-42")
    state = bytes([0]) + _lenenc(entry)
    assert last_gtid(_lenenc(b"") + _lenenc(state)) == "0-1-42"
    other = bytes([0]) + _lenenc(_lenenc(b"autocommit") + _lenenc(b"ON"))
    assert last_gtid(_lenenc(b"info") + _lenenc(other + state)) == "0-1-42"
    assert last_gtid(_lenenc(b"") + _lenenc(other)) is None
    assert last_gtid(b"\xff\x01") is None  # malformed: no position, the caller reads it
    assert last_gtid(b"") is None


def test_a_down_node_is_probed_with_doubling_back_off_capped_at_2_s(monkeypatch: pytest.MonkeyPatch) -> None:
    from pymysqlpool._steering import Steering

    # Keyed by the steering object: another test's cluster still probing in
    # this process (closed later by its own teardown) must not be counted.
    pauses: dict[int, list[float]] = {}
    real = Steering.probe_failed

    def recording(self: Any, node: Any, exc: BaseException, started: float, now: float) -> bool:
        first: bool = real(self, node, exc, started, now)
        # The pause as the monitor scheduled it, whatever the load.
        pauses.setdefault(id(self), []).append(node.next_probe - now)
        return first

    monkeypatch.setattr(Steering, "probe_failed", recording)
    with ClusterPool(hosts=[("127.0.0.1", 1)], probe_interval=0.25, probe_timeout=0.5, connect_timeout=0.5) as cluster:
        mine = pauses.setdefault(id(cluster._steering), [])
        assert wait_until(lambda: len(mine) >= 5, 10)
    assert mine[:5] == pytest.approx([0.25, 0.5, 1.0, 2.0, 2.0])


def test_a_write_whose_position_the_hook_did_not_take_is_left_to_the_return() -> None:
    from pymysqlpool._driver import WriteTrackingConnection

    entry = _lenenc(b"last_gtid") + _lenenc(b"0-1-42")
    message = _lenenc(b"") + _lenenc(bytes([0]) + _lenenc(entry))
    raw = WriteTrackingConnection.__new__(WriteTrackingConnection)
    taken: list[str] = []
    raw.gtid_hook = lambda gtid: taken.append(gtid) is None
    raw._wrote(message)
    assert taken == ["0-1-42"] and raw.wrote is False  # known at the COMMIT: nothing to read on return
    raw.gtid_hook = lambda gtid: False  # not a GTID the cluster can use
    raw._wrote(message)
    assert raw.wrote is True
    raw.wrote = False

    def interrupted(gtid: str) -> bool:
        raise KeyboardInterrupt

    raw.gtid_hook = interrupted
    with pytest.raises(KeyboardInterrupt):
        raw._wrote(message)
    assert raw.wrote is True  # the return reads the position instead of losing it
