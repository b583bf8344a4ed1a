"""benchmarks/instructions.py's programs run: each path's script, a few cycles,
without valgrind, against the test server (a broken snippet would otherwise
show only as a failed `./dev bench`)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from benchmarks import instructions

from support.server_env import mysql_kwargs


@pytest.mark.parametrize("name", list(instructions.BY_NAME))
def test_each_path_runs_its_cycles(name: str) -> None:
    path = instructions.BY_NAME[name]
    if path.needs:
        pytest.importorskip(path.needs)
    kwargs = {key: value for key, value in mysql_kwargs().items() if key != "init_command"}
    done = subprocess.run(
        [sys.executable, "-c", instructions.script(path), "3"],
        env=instructions.environment(kwargs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
