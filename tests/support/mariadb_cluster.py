"""Throwaway MariaDB topologies for the cluster tests: GTID replication and Galera.

Every server is a :class:`ThrowawayMariaDB` (``--no-defaults`` first, own datadir,
tmpdir, socket and free port on 127.0.0.1). Galera also needs ``galera-4`` and
``rsync``; :func:`ensure_galera_packages` installs them with apt-get when they are
missing, as ``./dev`` does for mariadb-server.

Accounts on every node: ``root`` (empty password, used by the tests to steer
the topology) and ``app``/``secret`` (what the pool uses: an ordinary account, so
``read_only`` really refuses its writes with 1290).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pymysql

from .throwaway_mariadb import ThrowawayMariaDB, _free_port
from .waiting import wait_until

APP_USER = "app"
APP_PASSWORD = "secret"

# The pool's account: table access in `test`, and the right to read replication
# status (SHOW ALL SLAVES STATUS) for the monitor.
_ACCOUNT_SQL = (
    f"CREATE USER IF NOT EXISTS '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'",
    f"GRANT ALL ON test.* TO '{APP_USER}'@'%'",
    f"GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO '{APP_USER}'@'%'",
)

_READ_ONLY = "--read-only=ON"
_REPLICATION_ARGS = (
    "--log-bin=mariadb-bin",
    "--binlog-format=ROW",
    "--log-slave-updates=ON",
    "--gtid-strict-mode=ON",
    "--slave-net-timeout=5",  # a replica notices a dead primary in seconds, not an hour
    "--master-retry-count=100000",
)


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """``wait_until`` that treats a MySQL error as "not yet" and raises if time runs out."""

    def quietly() -> bool:
        with contextlib.suppress(pymysql.err.MySQLError):
            return bool(predicate())
        return False

    if not wait_until(quietly, timeout, interval=0.05):
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def _open(server: ThrowawayMariaDB, sql: str) -> tuple[tuple[Any, ...], ...]:
    return server.admin_query(sql)


def _open_root(server: ThrowawayMariaDB, sql: str) -> None:
    """Run ``sql`` as root without selecting a database (``test`` may not exist yet)."""
    conn = pymysql.connect(**{**server.connect_kwargs(), "database": None, "connect_timeout": 2, "autocommit": True})
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _dict_rows(server: ThrowawayMariaDB, sql: str) -> list[dict[str, Any]]:
    conn = pymysql.connect(
        **{**server.connect_kwargs(), "connect_timeout": 2, "read_timeout": 10, "autocommit": True},
        cursorclass=pymysql.cursors.DictCursor,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


class _Topology:
    """Servers started and closed together; the pool reaches them by a URL."""

    servers: list[ThrowawayMariaDB]

    def start(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hosts(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.servers]

    def url(self, database: str = "test") -> str:
        """The pool's URL: every node, the ``app`` account."""
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.servers)
        return f"mysql://{APP_USER}:{APP_PASSWORD}@{nodes}/{database}"


class ReplicationCluster(_Topology):
    """A primary and ``replicas`` GTID replicas (read_only=1), all on 127.0.0.1.

    ``semisync=True`` turns on semi-synchronous replication (AFTER_SYNC): a commit
    is acknowledged only once a replica has received it.
    """

    def __init__(self, replicas: int = 2, *, semisync: bool = False) -> None:
        self.semisync = semisync
        self.servers: list[ThrowawayMariaDB] = []
        for i in range(replicas + 1):
            args = [*_REPLICATION_ARGS, f"--server-id={i + 1}"]
            if semisync:
                # The primary turns the master side on once its replicas are connected.
                args += [
                    "--rpl-semi-sync-slave-enabled=ON",
                    "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
                    "--rpl-semi-sync-master-timeout=10000",
                ]
            if i:
                args.append(_READ_ONLY)  # survives a restart, as a replica's my.cnf would say
            self.servers.append(ThrowawayMariaDB(extra_args=args))
        self.primary = self.servers[0]

    # -- life cycle ----------------------------------------------------------

    def start(self) -> ReplicationCluster:
        try:
            with ThreadPoolExecutor(len(self.servers)) as ex:
                list(ex.map(lambda s: s.start(), self.servers))
            for server in self.servers:
                # Forget what start() itself logged (CREATE DATABASE): every
                # server must begin from the same empty GTID history.
                _open(server, "RESET MASTER")
                _open(server, "SET GLOBAL gtid_slave_pos=''")
            for stmt in _ACCOUNT_SQL:
                _open(self.primary, stmt)
            for replica in self.replicas:
                self._point(replica, self.primary)
                _open(replica, "SET GLOBAL read_only=1")
            self.wait_caught_up()
            self._semisync_master(self.primary)
        except BaseException:
            self.close()
            raise
        return self

    def _semisync_master(self, server: ThrowawayMariaDB) -> None:
        if self.semisync:
            _open(server, "SET GLOBAL rpl_semi_sync_master_enabled=ON")

    # -- views ---------------------------------------------------------------

    @property
    def replicas(self) -> list[ThrowawayMariaDB]:
        return [s for s in self.servers if s is not self.primary]

    @staticmethod
    def gtid(server: ThrowawayMariaDB) -> str:
        return str(_open(server, "SELECT @@gtid_current_pos")[0][0])

    @staticmethod
    def slave_status(server: ThrowawayMariaDB) -> list[dict[str, Any]]:
        return _dict_rows(server, "SHOW ALL SLAVES STATUS")

    def wait_caught_up(self, timeout: float = 20.0) -> None:
        """Every running replica has applied everything the primary logged."""
        pos = str(_open(self.primary, "SELECT @@gtid_binlog_pos")[0][0])
        for replica in self.replicas:
            if replica.is_running():
                row = _open(replica, f"SELECT MASTER_GTID_WAIT('{pos}', {timeout})")
                if row[0][0] != 0:
                    raise RuntimeError(f"{replica!r} did not catch up to {pos}")

    # -- steering ------------------------------------------------------------

    def _point(self, replica: ThrowawayMariaDB, source: ThrowawayMariaDB) -> None:
        _open(replica, "STOP ALL SLAVES")
        _open(
            replica,
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={source.port},"
            " MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos,"
            " MASTER_CONNECT_RETRY=1",
        )
        _open(replica, "START SLAVE")

    def stop_replication(self, replica: ThrowawayMariaDB) -> None:
        _open(replica, "STOP SLAVE")

    def start_replication(self, replica: ThrowawayMariaDB) -> None:
        _open(replica, "START SLAVE")

    def promote(self, new: ThrowawayMariaDB) -> None:
        """What an orchestrator does after the primary died: the new primary
        first pulls what another replica has and it lacks, then takes writes;
        the others follow it."""
        others = [s for s in self.replicas if s is not new and s.is_running()]
        for server in [new, *others]:
            _open(server, "STOP SLAVE IO_THREAD")
        for server in [new, *others]:
            rows = self.slave_status(server)
            received = rows[0]["Gtid_IO_Pos"] if rows else ""
            if received:
                _open(server, f"SELECT MASTER_GTID_WAIT('{received}', 20)")
        best = max([new, *others], key=lambda s: _seq(self.gtid(s)))
        if best is not new:
            # Pull the missing transactions from the most advanced replica.
            self._point(new, best)
            target = self.gtid(best)
            row = _open(new, f"SELECT MASTER_GTID_WAIT('{target}', 20)")
            if row[0][0] != 0:
                raise RuntimeError("the new primary could not catch up")
        _open(new, "STOP ALL SLAVES")
        _open(new, "RESET SLAVE ALL")
        self._semisync_master(new)
        _open(new, "SET GLOBAL read_only=0")
        if _READ_ONLY in new.extra_args:
            new.extra_args.remove(_READ_ONLY)
        old = self.primary
        old.extra_args.append(_READ_ONLY)
        self.primary = new
        for server in others:
            self._point(server, new)
        if old.is_running():
            _open(old, "SET GLOBAL read_only=1")
            self._point(old, new)

    def switchover(self, new: ThrowawayMariaDB) -> None:
        """Planned change: the old primary goes read_only first, then ``new`` is promoted."""
        old = self.primary
        _open(old, "SET GLOBAL read_only=1")
        pos = str(_open(old, "SELECT @@gtid_binlog_pos")[0][0])
        row = _open(new, f"SELECT MASTER_GTID_WAIT('{pos}', 20)")
        if row[0][0] != 0:
            raise RuntimeError("switchover: the new primary did not catch up")
        self.promote(new)


def _seq(gtid: str) -> int:
    """Sum of the sequence numbers of a GTID position (one domain here)."""
    total = 0
    for part in filter(None, gtid.split(",")):
        total += int(part.strip().split("-")[2])
    return total


# -- Galera ------------------------------------------------------------------------


def galera_provider() -> str:
    """The wsrep provider library shipped by Debian's galera-4."""
    for candidate in ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/libgalera_smm.so"):
        if os.path.exists(candidate):
            return candidate
    listing = subprocess.run(["dpkg", "-L", "galera-4"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        if line.endswith("libgalera_smm.so"):
            return line
    raise RuntimeError("galera-4 is installed but libgalera_smm.so was not found")


def ensure_galera_packages() -> None:
    """Install galera-4 and rsync with apt-get when they are missing."""
    missing = []
    if shutil.which("rsync") is None:
        missing.append("rsync")
    try:
        galera_provider()
    except RuntimeError:
        missing.append("galera-4")
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, timeout=600)


class GaleraCluster(_Topology):
    """``nodes`` Galera nodes on 127.0.0.1 with rsync state transfer.

    The evs timeouts are shortened (suspect 2 s, inactive 4 s) so a killed node
    is evicted in seconds; ``evs.install_timeout`` stays at its default (a value
    near 1 s makes the cluster flap).
    """

    def __init__(self, nodes: int = 3) -> None:
        ensure_galera_packages()
        provider = galera_provider()
        self.gcomm = [_free_port() for _ in range(nodes)]
        self.ist = [_free_port() for _ in range(nodes)]
        self.sst = [_free_port() for _ in range(nodes)]
        address = "gcomm://" + ",".join(f"127.0.0.1:{p}" for p in self.gcomm)
        self.servers: list[ThrowawayMariaDB] = []
        for i in range(nodes):
            options = ";".join(
                [
                    f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm[i]}",
                    f"ist.recv_addr=127.0.0.1:{self.ist[i]}",
                    "evs.keepalive_period=PT0.5S",  # must stay below a third of suspect_timeout
                    "evs.suspect_timeout=PT2S",
                    "evs.inactive_timeout=PT4S",
                    "gcache.size=32M",
                ]
            )
            args = [
                "--wsrep-on=ON",
                f"--wsrep-provider={provider}",
                f"--wsrep-cluster-address={address}",
                # A name of its own: a node left over from another test's cluster
                # (its gcomm peers' ports reused here) can never join this one.
                f"--wsrep-cluster-name=pymysqlpool-test-{self.gcomm[0]}",
                f"--wsrep-node-name=node{i + 1}",
                f"--wsrep-node-address=127.0.0.1:{self.gcomm[i]}",
                f"--wsrep-provider-options={options}",
                "--wsrep-sst-method=rsync",
                f"--wsrep-sst-receive-address=127.0.0.1:{self.sst[i]}",
                "--binlog-format=ROW",
                "--default-storage-engine=InnoDB",
                "--innodb-autoinc-lock-mode=2",
                f"--server-id={i + 1}",
            ]
            server = ThrowawayMariaDB(extra_args=args, startup_timeout=90.0)
            server.extra_args.append(f"--wsrep-node-incoming-address=127.0.0.1:{server.port}")
            self.servers.append(server)

    @staticmethod
    def _open_datadir(server: ThrowawayMariaDB) -> None:
        """rsync SST: the joiner's rsync daemon runs as ``nobody`` (we are root)
        and must create and write files in the datadir. What an earlier SST
        created belongs to nobody:nogroup; a later SST would fail to set the
        donor's group (root) on it, so everything goes back to root:root."""
        os.chmod(server.root, 0o755)
        for path in [server.datadir, *server.datadir.rglob("*")]:
            with contextlib.suppress(FileNotFoundError):  # a file removed meanwhile
                os.chown(path, 0, 0, follow_symlinks=False)
            if path.is_dir():
                os.chmod(path, 0o777)
            elif path.is_file():
                os.chmod(path, 0o666)

    @staticmethod
    def _recover_position(server: ThrowawayMariaDB) -> None:
        """What mysqld_safe does before starting a crashed node: ask InnoDB for
        the last committed write set, so the node asks for an incremental
        transfer (IST) of what it missed instead of a full copy (SST)."""
        server.extra_args = [a for a in server.extra_args if not a.startswith("--wsrep-start-position=")]
        offset = server.error_log.stat().st_size if server.error_log.exists() else 0
        subprocess.run(
            [*server._argv(), "--wsrep-recover"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        found = re.findall(r"Recovered position: (\S+)", server._error_log_since(offset))
        if found:
            server.extra_args.append(f"--wsrep-start-position={found[-1]}")

    def start_node(self, server: ThrowawayMariaDB) -> None:
        """Start (or restart) one node; it joins the running cluster by IST or SST."""
        if server._started_once:
            self._recover_position(server)
        # Queries on a node before it is synced fail with 1047: the `test`
        # database is made once the first node is ready (joiners get it by SST).
        server._started_once = True
        self._open_datadir(server)
        server.start()
        self._open_datadir(server)  # what the SST brought belongs to nobody: a donor must pass on root's

    def start(self) -> GaleraCluster:
        try:
            first = self.servers[0]
            first.extra_args.append("--wsrep-new-cluster")
            self.start_node(first)
            first.extra_args.remove("--wsrep-new-cluster")
            _wait(lambda: self.synced(first), 30, "the first Galera node ready")
            _open_root(first, "CREATE DATABASE IF NOT EXISTS test")
            for stmt in _ACCOUNT_SQL:
                _open(first, stmt)
            for server in self.servers[1:]:
                self.start_node(server)
            self.wait_synced()
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def wsrep(server: ThrowawayMariaDB) -> dict[str, str]:
        conn = pymysql.connect(**{**server.connect_kwargs(), "database": None, "connect_timeout": 2, "read_timeout": 3})
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
                return {str(k): str(v) for k, v in cur.fetchall()}
        finally:
            conn.close()

    def synced(self, server: ThrowawayMariaDB, size: Optional[int] = None) -> bool:
        try:
            status = self.wsrep(server)
        except pymysql.err.MySQLError:
            return False
        ok = status.get("wsrep_ready") == "ON" and status.get("wsrep_local_state") == "4"
        return ok and (size is None or status.get("wsrep_cluster_size") == str(size))

    def wait_synced(self, timeout: float = 60.0) -> None:
        running = [s for s in self.servers if s.is_running()]
        _wait(lambda: all(self.synced(s, len(running)) for s in running), timeout, "Galera nodes synced")
