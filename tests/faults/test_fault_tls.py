"""TLS for real: a private server with a certificate this module makes with openssl.

The pool builds one TLS context per pool instead of PyMySQL's one per connect;
these tests check that PyMySQL's TLS rules survive that: verified TLS is used,
"preferred" mode (no TLS option) uses TLS when the server offers it and plain
TCP when it does not, and verification refuses a server without TLS or with a
certificate from another CA.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from support.throwaway_mariadb import ThrowawayMariaDB
from support.tls_contexts import count_tls_contexts

pytestmark = [
    pytest.mark.faults,
    pytest.mark.threads_only("PyMySQL's ssl_* arguments and TLS cache; the asyncio pool takes ssl=<SSLContext>"),
]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-subj", f"/CN=pymysqlpool test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, a server certificate it signed for 127.0.0.1, and other-ca.pem (unrelated)."""
    directory = tmp_path_factory.mktemp("tls")
    _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=directory)  # fmt: skip
    (directory / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-days", "2", "-out", "server.pem", "-extfile", "ext.cnf", cwd=directory)  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def tls_server(certs: Path) -> Iterator[ThrowawayMariaDB]:
    server = ThrowawayMariaDB(
        extra_args=[
            f"--ssl-ca={certs / 'ca.pem'}",
            f"--ssl-cert={certs / 'server.pem'}",
            f"--ssl-key={certs / 'server-key.pem'}",
        ]
    )
    try:
        server.start()
        assert server.admin_query("SELECT @@have_ssl") == (("YES",),), server.log_tail()
        yield server
    finally:
        server.close()


@pytest.fixture
def contexts_built(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    return count_tls_contexts(monkeypatch)


def _cipher(conn: Any) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return str(cur.fetchone()[1])


def _ciphers_of_all(pool: Any, n: int) -> list[str]:
    """Borrow n connections at once (so n distinct sessions) and read each one's cipher."""
    conns = [pool.get_conn() for _ in range(n)]
    try:
        return [_cipher(c) for c in conns]
    finally:
        for c in conns:
            c.close()


def test_verified_tls_is_used_and_the_context_built_once(
    tls_server: ThrowawayMariaDB, certs: Path, make_pool: Callable[..., Any], contexts_built: Callable[[], int]
) -> None:
    pool = make_pool(
        maxsize=6,
        pre_create_num=3,
        ssl_ca=str(certs / "ca.pem"),
        ssl_verify_cert=True,
        ssl_verify_identity=True,  # the certificate names 127.0.0.1
        **tls_server.connect_kwargs(),
    )
    ciphers = _ciphers_of_all(pool, 6)  # 3 warm, 3 dialed by borrowers
    assert all(ciphers), ciphers
    assert pool.get_stats()["connections_made"] == 6
    assert contexts_built() == 1
    # The same six connects straight through PyMySQL build six contexts.
    for _ in range(6):
        pymysql.connect(ssl_ca=str(certs / "ca.pem"), ssl_verify_cert=True, **tls_server.connect_kwargs()).close()
    assert contexts_built() == 7


def test_a_renewed_ca_file_is_read_again(
    tls_server: ThrowawayMariaDB,
    certs: Path,
    tmp_path: Path,
    make_pool: Callable[..., Any],
    contexts_built: Callable[[], int],
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes((certs / "ca.pem").read_bytes())
    pool = make_pool(maxsize=4, ssl_ca=str(ca), ssl_verify_cert=True, **tls_server.connect_kwargs())
    assert all(_ciphers_of_all(pool, 2))
    assert contexts_built() == 1
    ca.write_bytes((certs / "ca.pem").read_bytes())  # a renewal: same path, new file
    os.utime(ca, ns=(0, 1))  # a different mtime even on a coarse clock
    assert all(_ciphers_of_all(pool, 4))  # two more connects
    assert contexts_built() == 2


def test_preferred_mode_uses_tls_when_the_server_offers_it(
    tls_server: ThrowawayMariaDB, make_pool: Callable[..., Any], contexts_built: Callable[[], int]
) -> None:
    pool = make_pool(maxsize=4, pre_create_num=2, **tls_server.connect_kwargs())
    ciphers = _ciphers_of_all(pool, 4)
    assert all(ciphers), ciphers
    assert contexts_built() == 1


def test_preferred_mode_is_plain_without_server_tls_and_builds_nothing(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any], contexts_built: Callable[[], int]
) -> None:
    assert throwaway_server.admin_query("SELECT @@have_ssl")[0][0] != "YES"
    before = contexts_built()  # the admin query above went through PyMySQL alone
    pool = make_pool(maxsize=3, pre_create_num=3, **throwaway_server.connect_kwargs())
    assert _ciphers_of_all(pool, 3) == ["", "", ""]
    assert contexts_built() == before


def test_verification_refuses_a_server_without_tls(
    throwaway_server: ThrowawayMariaDB, certs: Path, make_pool: Callable[..., Any]
) -> None:
    from pymysqlpool import ConnectionPool

    kwargs = {**throwaway_server.connect_kwargs(), "ssl_ca": str(certs / "ca.pem"), "ssl_verify_cert": True}
    with pytest.raises(pymysql.err.OperationalError) as info:
        ConnectionPool(maxsize=2, pre_create_num=2, **kwargs)
    assert info.value.args[0] == 2026  # CR_SSL_CONNECTION_ERROR: "SSL is required"
    pool = make_pool(maxsize=2, timeout=5, **kwargs)
    with pytest.raises(pymysql.err.OperationalError):
        pool.get_conn()
    assert pool.get_stats()["open"] == 0


def test_verification_refuses_a_certificate_from_another_ca(
    tls_server: ThrowawayMariaDB, certs: Path, make_pool: Callable[..., Any]
) -> None:
    other = str(certs / "other-ca.pem")
    # PyMySQL's rule, kept: ssl_ca alone requires TLS but verifies nothing.
    lax = make_pool(maxsize=1, ssl_ca=other, **tls_server.connect_kwargs())
    with lax.get_conn() as conn:
        assert _cipher(conn)
    pool = make_pool(maxsize=2, timeout=5, ssl_ca=other, ssl_verify_cert=True, **tls_server.connect_kwargs())
    with pytest.raises(pymysql.err.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        pool.get_conn()
    stats = pool.get_stats()
    assert (stats["open"], stats["connecting"], stats["connect_errors"]) == (0, 0, 1)


def test_a_missing_ca_file_is_reported_as_pymysql_reports_it(
    tls_server: ThrowawayMariaDB, tmp_path: Path, make_pool: Callable[..., Any]
) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(FileNotFoundError):
        pymysql.connect(ssl_ca=missing, **tls_server.connect_kwargs())
    pool = make_pool(maxsize=2, ssl_ca=missing, **tls_server.connect_kwargs())
    with pytest.raises(FileNotFoundError):
        pool.get_conn()
    assert pool.get_stats()["open"] == 0


def test_asyncio_pool_over_tls_closed_after_its_loop_ended(tls_server: ThrowawayMariaDB, certs: Path) -> None:
    """An asyncio pool's TLS sessions (a transport over the socket), its loop
    ended with one still borrowed: asyncio.run(pool.close()) from another
    loop ends every session, the TLS ones too."""
    import asyncio
    import ssl

    from _faultkit import create_user, session_ids, user_kwargs

    from pymysqlpool import AsyncConnectionPool
    from support.waiting import wait_until

    user = "u_async_tls_close"
    create_user(tls_server, user)
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    pool = AsyncConnectionPool(**user_kwargs(tls_server, user), ssl=context, maxsize=3, connect_timeout=5)
    kept = []

    async def use() -> list[str]:
        conns = [await pool.get_conn(timeout=10) for _ in range(3)]
        ciphers = []
        for conn in conns:
            async with conn.cursor() as cur:
                await cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                ciphers.append(str((await cur.fetchone())[1]))
        for conn in conns[:2]:
            await pool.release(conn)
        kept.append(conns[2])
        return ciphers

    assert all(asyncio.run(asyncio.wait_for(use(), 60)))  # every session is TLS
    assert len(session_ids(tls_server, user)) == 3
    assert asyncio.run(asyncio.wait_for(pool.close(), 30)) == 1
    assert wait_until(lambda: not session_ids(tls_server, user), timeout=10), session_ids(tls_server, user)
