"""benchmarks/charts.py: which PNGs a run writes, from which numbers (no server)."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
from benchmarks import charts
from benchmarks.peers import Subject
from benchmarks.scenarios import ContentionResult, ContentionRow, TimingResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _subjects() -> list[Subject]:
    return [
        Subject("peer", "a peer", "1", lambda kwargs, size: None),
        Subject("ours", "pymysqlpool", "1", lambda kwargs, size: None, ours=True),
        Subject("gone", "missing peer", "n/a", None, missing="not installed"),
    ]


def _timing() -> TimingResult:
    return TimingResult(cycles=10, rounds=3, samples={"peer": [90.0, 100.0, 110.0], "ours": [1.0, 1.5, 2.0]})


def _contention() -> ContentionResult:
    rows = []
    for key, throughput in (("peer", 1000), ("ours", 3000)):
        row = ContentionRow(key, threads=8, maxsize=2, cycles=throughput, elapsed_s=1.0, wait_max_ms=5.0)
        row.run_cvs = [0.5 if key == "peer" else 0.05]
        rows.append(row)
    rows.append(ContentionRow("gone", threads=8, maxsize=2, error="n/a"))
    return ContentionResult(duration_s=1.0, runs=1, method="test", rows=rows)


def test_every_chart_is_written_as_png(tmp_path: Path) -> None:
    report = tmp_path / "docs" / "benchmarks.md"
    made = charts.write(report, _subjects(), _timing(), _timing(), _contention())
    names = [path for _, path in made]
    assert names == [
        "img/bench-overhead.png",
        "img/bench-query.png",
        "img/bench-contention-throughput.png",
        "img/bench-contention-max-wait.png",
        "img/bench-fairness.png",
    ]
    for name in names:
        assert (report.parent / name).read_bytes()[:8] == PNG_MAGIC


def test_only_the_measured_scenarios_are_drawn(tmp_path: Path) -> None:
    made = charts.write(tmp_path / "b.md", _subjects(), None, _timing(), None)
    assert [path for _, path in made] == ["img/bench-query.png"]
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["bench-query.png"]


def test_without_matplotlib_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert charts.write(tmp_path / "b.md", _subjects(), _timing(), _timing(), _contention()) == []
    assert not (tmp_path / "img").exists()


def test_quick_run_leaves_the_tracked_report_alone() -> None:
    """1-second numbers never replace docs/benchmarks.md and its charts unless asked."""
    from benchmarks.run import REPO_ROOT, output_path, parse_args

    tracked = REPO_ROOT / "docs" / "benchmarks.md"
    assert output_path(parse_args(["--quick"])) is None
    assert output_path(parse_args(["--quick", "--write-docs"])) == tracked
    assert output_path(parse_args(["--quick", "--out", "/tmp/b.md"])) == Path("/tmp/b.md")
    assert output_path(parse_args([])) == tracked  # a full run writes the report, as before
    assert output_path(parse_args(["--write-docs", "--no-out"])) is None


def test_every_axis_says_which_way_is_better_and_the_floor_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: dict[str, tuple[str, list[str]]] = {}

    def record(plt: Any, path: Path, title: str, xlabel: str, panels: Any, ours: Any, log: bool) -> None:
        drawn[path.name] = (xlabel, [name for _, bars in panels for name, _ in bars])

    monkeypatch.setattr(charts, "_draw", record)
    raw = Subject("raw", "raw PyMySQL (no pool)", "1", lambda kwargs, size: None, is_pool=False)
    timing = TimingResult(cycles=10, rounds=3, samples={"raw": [0.1] * 3, "peer": [90.0] * 3, "ours": [1.0] * 3})
    charts.write(tmp_path / "b.md", [raw, *_subjects()], timing, timing, _contention())
    assert len(drawn) == 5
    for xlabel, _ in drawn.values():
        assert "lower is better" in xlabel or "higher is better" in xlabel
    assert drawn["bench-overhead.png"][1][0] == charts.FLOOR_LABEL  # not "raw PyMySQL": it times the loop
    assert drawn["bench-query.png"][1][0] == "raw PyMySQL (no pool)"  # there it runs the query
