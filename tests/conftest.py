"""Fixtures shared by the test modules outside the tiers' own folders."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from support import run_tables
from support.leaks import LeakWarnings, leak_guard
from support.server_env import mysql_kwargs
from support.shells import SHELLS


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job (``./dev test &``) with SIGINT ignored;
    # the interrupt tests send a real SIGINT and need Python's own handler.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # An id holding an object's address differs between xdist workers, and
    # the run stops ("Different tests were collected"): refused in any run.
    moving = [item.nodeid for item in items if " at 0x" in item.nodeid]
    if moving:
        raise pytest.UsageError(f"test ids with an object's address (give the parametrize stable ids): {moving[:5]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # A fuzz test may log text holding a lone surrogate (an argv byte that is
    # not UTF-8, as the CLI fuzz sends): an xdist worker cannot send such a
    # report to the controller and the whole run stops. Escaped, the same.
    outcome = yield
    report = outcome.get_result()
    report.sections = [
        (title, text.encode("utf-8", "backslashreplace").decode("utf-8")) for title, text in report.sections
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Behaviour tests take the ``shell`` fixture (through ``make_pool``) and run
    # once for each shell; a test of a thread-only feature says so with
    # ``@pytest.mark.threads_only("why")``.
    if "shell" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("threads_only")
        metafunc.parametrize("shell", ["thread"] if only else list(SHELLS))


def pytest_sessionfinish(session: pytest.Session) -> None:
    # A pytest-xdist worker: its rows of the end-of-run tables go to the controller.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["run_tables"] = run_tables.ROWS


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    run_tables.merge(getattr(node, "workeroutput", {}).get("run_tables", {}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    run_tables.write(terminalreporter)


# Under pytest-xdist (./dev test runs ``-n 3 --dist loadfile``) each test file runs
# whole on one worker, so a module's topology or private server starts once, and the
# files that start a 3-node Galera cluster run one after the other on the same
# worker: two such clusters at once on a 2-core machine miss their 2 s suspect
# timeouts (seen: a drill's writes never resumed after a node was killed).
SAME_WORKER = {
    "tests/cluster/test_galera_drills.py": "galera",
    "tests/cluster/test_attack_clusters.py": "galera",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    missing = [path for path in SAME_WORKER if not (config.rootpath / path).is_file()]
    if missing:  # a file renamed: its tests would no longer keep to one worker
        raise pytest.UsageError(f"tests/conftest.py SAME_WORKER names files that do not exist: {missing}")

    class FilesWithGaleraTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SAME_WORKER.get(path, path)

    return FilesWithGaleraTogether(config, log)


@pytest.fixture(autouse=True)
def _leak_guard() -> Iterator[LeakWarnings]:
    """Fails a test that caused a ConnectionLeakWarning it did not expect (support/leaks.py)."""
    with leak_guard() as guard:
        yield guard


@pytest.fixture
def leak_warnings(_leak_guard: LeakWarnings) -> LeakWarnings:
    """For a test that drops connections on purpose: the leak warnings it
    caused, to assert on; they do not fail it."""
    _leak_guard.expected = True
    return _leak_guard


@pytest.fixture(scope="session")
def live_server() -> dict:
    """The test server's settings (MYSQL_HOST, MYSQL_PORT, ...; 127.0.0.1:3306
    by default); fails the test if it is not reachable."""
    server = mysql_kwargs()
    try:
        pymysql.connect(connect_timeout=3, **server).close()
    except pymysql.MySQLError as exc:
        pytest.fail(f"no MySQL server at {server['host']}:{server['port']} (./dev test starts one): {exc}")
    return server


@pytest.fixture(scope="session")
def server_kwargs(live_server: dict) -> dict[str, Any]:
    """The same settings, under the name the server and integration tiers use."""
    return live_server


@pytest.fixture
def admin(live_server: dict) -> Iterator[pymysql.connections.Connection]:
    """A raw connection with autocommit, for set-up and for looking at the server."""
    conn = pymysql.connect(**{**live_server, "autocommit": True, "connect_timeout": 10})
    try:
        yield conn
    finally:
        conn.close()
