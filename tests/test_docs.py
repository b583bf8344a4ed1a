"""Every Python code block in the README and docs/ runs against the test
server (MYSQL_HOST/MYSQL_PORT), so the documentation cannot drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.doc_blocks import CONNECTS, HOST, ROOT, blocks, localize

BLOCKS = [pytest.param(code, id=f"{path.name}:{line}") for path, line, code in blocks()]


def test_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 5, "the docs lost their examples"


def test_every_connecting_block_names_its_server() -> None:
    """A block that connects without a host literal could not be pointed at MYSQL_HOST."""
    unnamed = [f"{p.name}:{line}" for p, line, code in blocks() if CONNECTS.search(code) and not HOST.search(code)]
    assert not unnamed, f"blocks connecting to an implicit server: {unnamed}"


def test_localize_points_blocks_at_the_test_server() -> None:
    code = "ConnectionPool(host='127.0.0.1', user='root')\nconfig = {'host': 'localhost', 'user': 'root'}\n"
    assert localize(code, {"host": "db.test", "port": 13306}) == (
        "ConnectionPool(host='db.test', port=13306, user='root')\n"
        "config = {'host': 'db.test', 'port': 13306, 'user': 'root'}\n"
    )


@pytest.mark.server
@pytest.mark.parametrize("code", BLOCKS)
def test_doc_block_runs(code: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", localize(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"block failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"


def test_stats_reference_lists_every_key() -> None:
    from pymysqlpool.stats import COUNTERS, GAUGES

    text = (ROOT / "docs" / "stats.md").read_text()
    missing = [key for key in [*GAUGES, *COUNTERS] if f"`{key}`" not in text]
    assert not missing, f"docs/stats.md does not describe {missing}"
