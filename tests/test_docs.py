"""Every Python code block in the README and docs/ runs against the real
server, so the documentation cannot drift from the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list:
    found = []
    for path in DOCS:
        for number, match in enumerate(BLOCK.finditer(path.read_text()), 1):
            line = path.read_text()[: match.start()].count("\n") + 1
            found.append(pytest.param(match.group(1), id=f"{path.name}:{line}#{number}"))
    return found


BLOCKS = _blocks()


def test_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 5, "the docs lost their examples"


@pytest.mark.server
@pytest.mark.parametrize("code", BLOCKS)
def test_doc_block_runs(code: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code],
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
