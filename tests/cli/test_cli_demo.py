"""``pymysqlpool demo`` against the shared MariaDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pymysql
import pytest

from pymysqlpool.__main__ import main

from .conftest import SECRET

pytestmark = pytest.mark.server


def _table(tag: str) -> str:
    return f"pmp_cli_demo_{tag}_{os.getpid()}"


def _exists(admin: pymysql.connections.Connection, table: str) -> bool:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (table,),
        )
        return bool(cur.fetchone()[0])


def _drop(admin: pymysql.connections.Connection, table: str) -> None:
    with admin.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS `{table}`")


def test_demo_passes_and_drops_its_table(
    admin: pymysql.connections.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _table("ok")
    try:
        code = main(["demo", "--ops", "120", "--threads", "6", "--maxsize", "3", "--table", table, "--seed", "7"])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        assert "120 operations" in out
        assert "PASS  committed rows present:" in out
        assert "PASS  rolled-back rows absent: 0 of" in out
        assert "PASS  server connections from the pool never exceeded maxsize: peak" in out
        assert "PASS  the pool rolled back every transaction left open" in out
        assert "rollbacks_on_return" in out and "borrows_waited" in out
        assert "FAIL" not in out
        assert out.splitlines()[-1] == "RESULT: PASS"
        assert "ops" in err  # the plain progress lines (stderr is not a terminal here)
        assert not _exists(admin, table)
    finally:
        _drop(admin, table)


def test_demo_keep_leaves_exactly_the_committed_rows(
    admin: pymysql.connections.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _table("keep")
    try:
        code = main(["demo", "--ops", "60", "--threads", "3", "--maxsize", "2", "--table", table, "--keep", "--quiet"])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        assert err == ""
        line = next(x for x in out.splitlines() if "committed rows present:" in x)
        committed = int(line.rsplit(" of ", 1)[1])
        with admin.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), COALESCE(SUM(kind <> 'commit'), 0) FROM `{table}`")
            rows, not_committed = cur.fetchone()
        assert rows == committed and not_committed == 0
    finally:
        _drop(admin, table)


def test_demo_refuses_an_existing_table(
    admin: pymysql.connections.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _table("exists")
    with admin.cursor() as cur:
        cur.execute(f"CREATE TABLE `{table}` (x INT)")
        cur.execute(f"INSERT INTO `{table}` VALUES (1)")
    try:
        assert main(["demo", "--ops", "5", "--table", table, "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("pymysqlpool demo: error: cannot create table") and "[1050]" in err
        with admin.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            assert cur.fetchone()[0] == 1  # someone else's table is left alone
    finally:
        _drop(admin, table)


def test_demo_cannot_connect(closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--ops", "5", "--host", "127.0.0.1", "--port", str(closed_port), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "cannot connect" in err


def test_demo_with_a_password(
    secret_user: str, admin: pymysql.connections.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _table("pw")
    try:
        argv = ["demo", "--ops", "40", "--threads", "4", "--maxsize", "2", "--table", table]
        assert main([*argv, "--user", secret_user, "--password", SECRET]) == 0
        out, err = capsys.readouterr()
        assert "sekret" not in out and "sekret" not in err
        assert "(password: ***)" in out and "RESULT: PASS" in out
    finally:
        _drop(admin, table)


def test_demo_by_time(admin: pymysql.connections.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    table = _table("time")
    try:
        assert main(["demo", "--seconds", "0.5", "--threads", "4", "--maxsize", "2", "--table", table, "--quiet"]) == 0
        assert "RESULT: PASS" in capsys.readouterr().out
    finally:
        _drop(admin, table)


# -- output: header first, Ctrl-C, a reader that goes away, one meaning of "rolled back" --


def _demo_process(table: str, *args: str, stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    # The environment holds the test server's MYSQL_* (tests/cli/conftest.py), and only those.
    argv = [sys.executable, "-m", "pymysqlpool", "demo", "--table", table, "--threads", "4", "--maxsize", "2", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    killer = threading.Timer(90, proc.kill)  # the test never hangs on a stuck demo
    killer.daemon = True
    killer.start()
    return proc


def test_demo_prints_its_header_first_and_its_summary_on_ctrl_c(admin: pymysql.connections.Connection) -> None:
    table = _table("sigint")
    proc = _demo_process(table, "--seconds", "60")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        header = proc.stdout.readline()
        assert header.startswith("pymysqlpool demo: 4 threads, one pool"), header
        progress = proc.stderr.readline()  # the workload is running
        assert progress.startswith("demo ") and proc.poll() is None, progress
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, out + err
    assert "interrupted: the summary so far" in out
    assert "rolled back (raise + abandon + rollback)" in out and "rollbacks_on_return" in out
    assert "RESULT: PASS" in out  # every worker finished its operation: the rows were verified
    assert err.rstrip().endswith("pymysqlpool demo: error: interrupted") and "Traceback" not in err
    assert not _exists(admin, table)


@pytest.mark.parametrize("streams", ["stdout", "stdout and stderr"])
def test_demo_ends_quietly_when_its_reader_goes_away(admin: pymysql.connections.Connection, streams: str) -> None:
    # `pymysqlpool demo | head -1` (and `2>&1 | head -1`): read one line, close the pipe.
    table = _table("head")
    both = streams == "stdout and stderr"
    args = ("--ops", "300") if both else ("--ops", "300", "--quiet")
    proc = _demo_process(table, *args, stderr=subprocess.STDOUT if both else subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("pymysqlpool demo:")
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
        err = "" if both else proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()
    assert err == ""  # no traceback, no "Exception ignored"
    assert not _exists(admin, table)


def test_demo_means_the_same_by_rolled_back_in_progress_and_table(
    admin: pymysql.connections.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _table("rolled")
    try:
        assert main(["demo", "--ops", "150", "--threads", "4", "--maxsize", "2", "--table", table, "--seed", "3"]) == 0
        out, err = capsys.readouterr()
    finally:
        _drop(admin, table)
    counts = {}
    for line in out.splitlines():
        name, _, number = line.rpartition("  ")
        if number.strip().isdigit():
            counts[name.strip()] = int(number)
    total = counts["rolled back (raise + abandon + rollback)"]
    assert total == counts["raise"] + counts["abandon"] + counts["rollback"] > 0
    last_progress = err.strip().splitlines()[-1]
    assert f" rolled back {total} " in last_progress and " rollback " not in last_progress


# A demo whose one operation starts only after Ctrl-C: a real SIGINT to the
# process, sent from the worker itself while the main thread waits for it.
_LATE_OPERATION = """
import os, signal, sys, threading, time
from pymysqlpool.__main__ import main
from pymysqlpool.cli import demo

operation = demo.Demo._operation
sent = threading.Event()

def late(self, *args):
    threading.Thread(target=lambda: (os.kill(os.getpid(), signal.SIGINT), sent.set())).start()
    assert sent.wait(30)
    time.sleep(0.5)  # the main thread has taken the interrupt by now
    operation(self, *args)

demo.Demo._operation = late
sys.exit(main(sys.argv[1:]))
"""


def test_demo_waits_on_ctrl_c_for_the_operation_in_flight(admin: pymysql.connections.Connection) -> None:
    # Ctrl-C landing in Thread.join() makes CPython < 3.13 report a running
    # thread as stopped: a demo that trusted is_alive() then read the pool's
    # stats while a worker still held a connection (a "missed rollback", one
    # borrow more than returns). The worker's operation must be in the summary.
    table = _table("late")
    argv = [sys.executable, "-c", _LATE_OPERATION, "demo", "--table", table, "--threads", "1", "--ops", "1"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    finally:
        _drop(admin, table)
    out = done.stdout
    assert done.returncode == 130, out + done.stderr
    assert "1 operations in" in out and "interrupted: the summary so far" in out, out
    assert "PASS  every borrowed connection was given back: borrows 1, returns 1" in out, out
    assert "not verified" not in out and out.splitlines()[-1] == "RESULT: PASS", out
