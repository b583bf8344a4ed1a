"""TlsContexts: one TLS context per pool, built by PyMySQL's own builder, rebuilt
only when the options or the files they name change. (Against a real TLS
server: tests/faults/test_fault_tls.py.)"""

from __future__ import annotations

import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pymysqlpool import ConnectionPool
from pymysqlpool._tls import TlsContexts

from .fakes import FakeServer


class Builder:
    """Stands in for PyMySQL's _create_ssl_ctx: counts calls, returns a fake context."""

    def __init__(self, delay: float = 0.0, fail: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.delay = delay
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, options: dict[str, Any]) -> Any:
        with self.lock:
            self.calls.append(options)
            failing = self.fail > 0
            self.fail -= failing
        time.sleep(self.delay)
        if failing:
            raise FileNotFoundError("no such CA file")
        return FakeContext(options)


class FakeContext:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.check_hostname = bool(options.get("check_hostname"))
        self.wrapped: list[Any] = []

    def wrap_socket(self, sock: Any, server_hostname: str) -> Any:
        self.wrapped.append((sock, server_hostname))
        return ("tls", sock)


def test_a_context_of_the_callers_own_is_used_as_it_is() -> None:
    tls, build = TlsContexts(), Builder()
    mine = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert tls.context(mine, build) is mine
    assert build.calls == [] and tls.built == 0


def test_required_options_build_once_even_from_many_threads_at_once() -> None:
    tls, build = TlsContexts(), Builder(delay=0.05)
    options = {"ca": None, "check_hostname": False, "verify_mode": False}
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(tls.context(dict(options), build))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and all(g is got[0] for g in got)
    assert len(build.calls) == 1 and tls.built == 1


def test_other_options_build_anew() -> None:
    tls, build = TlsContexts(), Builder()
    first = tls.context({"ca": None, "verify_mode": False}, build)
    assert tls.context({"ca": None, "verify_mode": False}, build) is first
    second = tls.context({"ca": None, "verify_mode": True}, build)
    assert second is not first and tls.built == 2


def test_a_changed_file_builds_anew(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("one")
    tls, build = TlsContexts(), Builder()
    options = {"ca": str(ca), "verify_mode": True}
    first = tls.context(options, build)
    assert tls.context(options, build) is first
    ca.write_text("two, longer")
    os.utime(ca, ns=(0, 1))
    assert tls.context(options, build) is not first and tls.built == 2


def test_a_failed_build_is_not_remembered() -> None:
    tls, build = TlsContexts(), Builder(fail=1)
    options = {"ca": "/nonexistent/ca.pem", "verify_mode": True}
    with pytest.raises(FileNotFoundError):
        tls.context(options, build)
    assert tls.built == 0
    assert isinstance(tls.context(options, build), FakeContext) and tls.built == 1


def test_preferred_mode_builds_only_when_a_socket_is_wrapped() -> None:
    tls, build = TlsContexts(), Builder()
    deferred = [tls.context({}, build) for _ in range(5)]  # five connects to a server without TLS
    assert build.calls == [] and tls.built == 0
    assert deferred[0].wrap_socket("sock", server_hostname="db") == ("tls", "sock")
    assert deferred[1].wrap_socket("sock2", server_hostname="db") == ("tls", "sock2")
    assert build.calls == [{}] and tls.built == 1  # built from PyMySQL's preferred options: {}
    assert deferred[2].check_hostname is False  # anything else is read from the real context


def test_after_fork_a_lock_held_by_a_parent_thread_does_not_block_the_child() -> None:
    server = FakeServer()
    pool = ConnectionPool(maxsize=1, connection_factory=server)
    try:
        pool._tls._lock.acquire()  # a parent thread building a context at the fork
        pool._after_fork_in_child()
        build = Builder()
        done = threading.Event()

        def connect() -> None:
            pool._tls.context({"ca": None, "verify_mode": False}, build)
            done.set()

        threading.Thread(target=connect, daemon=True).start()
        assert done.wait(5), "the child blocked on the parent's lock"
    finally:
        pool.close()
