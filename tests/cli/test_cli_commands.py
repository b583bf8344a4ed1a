"""Help, version, the real process, and the bench command's hand-off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymysqlpool import __version__
from pymysqlpool.__main__ import main
from pymysqlpool.cli import bench

COMMANDS = ("check", "demo", "bench")


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "exit status" in out and "130" in out


@pytest.mark.parametrize("command", ["check", "demo"])
def test_command_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: pymysqlpool {command}" in out
    assert "--url" in out and "--maxsize" in out and "exit status" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"pymysqlpool {__version__} (PyMySQL ")


def test_real_process_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pymysqlpool", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage: pymysqlpool" in done.stdout and "check" in done.stdout


def test_real_process_connection_failure(closed_port: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pymysqlpool", "check", "--port", str(closed_port), "--connect-timeout", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"pymysqlpool check: error: cannot connect to root@127.0.0.1:{closed_port}/test")


# -- bench -------------------------------------------------------------------

FAKE_RUN = '''\
"""Stand-in for pymysqlpool's benchmarks/run.py."""
import sys


def main(argv):
    if "--bad" in argv:
        sys.exit(2)
    print("FAKE BENCH", list(argv))
    return 7
'''


@pytest.fixture
def isolated_benchmarks_modules() -> Iterator[None]:
    """Let a test import its own ``benchmarks`` package, then restore sys.modules."""
    saved = {name: mod for name, mod in sys.modules.items() if name == "benchmarks" or name.startswith("benchmarks.")}
    for name in saved:
        del sys.modules[name]
    try:
        yield
    finally:
        for name in [n for n in sys.modules if n == "benchmarks" or n.startswith("benchmarks.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def _fake_checkout(root: Path, body: str = FAKE_RUN) -> Path:
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "__init__.py").write_text("")
    (root / "benchmarks" / "run.py").write_text(body)
    return root / "benchmarks" / "run.py"


def test_find_benchmark_prefers_cwd(tmp_path: Path) -> None:
    cwd, source = tmp_path / "cwd", tmp_path / "src"
    cwd.mkdir()
    source.mkdir()
    in_source = _fake_checkout(source)
    assert bench.find_benchmark(cwd, source) == in_source.resolve()
    in_cwd = _fake_checkout(cwd)
    assert bench.find_benchmark(cwd, source) == in_cwd.resolve()


def test_find_benchmark_ignores_other_projects(tmp_path: Path) -> None:
    _fake_checkout(tmp_path, "def main(argv):\n    return 0\n")
    assert bench.find_benchmark(tmp_path, tmp_path / "nowhere") is None


def test_bench_passes_arguments_through(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    isolated_benchmarks_modules: None,
) -> None:
    path = _fake_checkout(tmp_path)
    monkeypatch.setattr(bench, "find_benchmark", lambda: path)
    assert main(["bench", "--quick", "--scenario", "overhead", "--host", "h"]) == 7
    assert "FAKE BENCH ['--quick', '--scenario', 'overhead', '--host', 'h']" in capsys.readouterr().out


def test_bench_usage_error_of_the_benchmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_benchmarks_modules: None
) -> None:
    path = _fake_checkout(tmp_path)
    monkeypatch.setattr(bench, "find_benchmark", lambda: path)
    assert main(["bench", "--bad"]) == 2


def test_bench_without_the_repository(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench, "find_benchmark", lambda: None)
    assert main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymysqlpool bench: error:") and "source repository" in err


def test_bench_help_without_the_repository(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench, "find_benchmark", lambda: None)
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: pymysqlpool bench" in out and "source repository" in out
