"""benchmarks: the instructions scenario's targets, its table and how its
section enters docs/benchmarks.md (no server, no valgrind: counts given)."""

from __future__ import annotations

from benchmarks import instructions as i
from benchmarks import report

PASSING = {
    "floor": 7_680,
    "thread": 15_000,  # 1.95x the floor
    "raw_query": 150_000,
    "query": 160_000,  # 1.07x
    "async": 17_900,
    "aiomysql_pool": 88_000,
    "asyncmy_pool": None,  # not installed
    "raw_aquery": 250_000,
    "aquery": 260_000,  # 1.04x
    "plain_server": 16_000,
    "cluster_write": 19_000,  # +3,000
    "cluster_read": 20_999,  # +4,999
    "acluster_write": 20_000,
    "acluster_read": 22_000,
}


def _rows(counts: dict[str, int | None]) -> dict[str, list[str]]:
    table = i.table(counts, 1000, 5000, i.checks(counts))
    assert table.headers == ["path", "instructions per cycle", "target", "measured", "result"]
    return {row[0]: row[1:] for row in table.rows}


def test_every_target_is_computed_from_the_counts() -> None:
    rows = _rows(PASSING)
    label = {name: path.label for name, path in i.BY_NAME.items()}
    assert rows[label["thread"]] == ["15,000", "≤ 2.00x the floor", "1.95x", "PASS"]
    assert rows[label["query"]][2:] == ["1.07x", "PASS"]
    assert rows[label["aquery"]][2:] == ["1.04x", "PASS"]
    assert rows[label["async"]][2:] == ["17,900", "PASS"]
    assert rows[label["cluster_write"]][2:] == ["+3,000", "PASS"]
    assert rows[label["cluster_read"]][2:] == ["+4,999", "PASS"]
    assert rows[label["acluster_read"]][2:] == ["+4,100", "PASS"]
    assert rows[label["floor"]] == ["7,680", "", "", ""]  # a floor or a peer: no target of its own
    assert rows[label["asyncmy_pool"]][0] == "n/a"

    worse = {**PASSING, "thread": 15_361, "query": 165_001, "async": 18_001, "cluster_write": 19_001}
    rows = _rows(worse)
    assert rows[label["thread"]][2:] == ["2.00x", "MISS"]  # 2.0001x: past the target, rounded in the cell
    assert rows[label["query"]][2:] == ["1.10x", "MISS"]
    assert rows[label["async"]][2:] == ["18,001", "MISS"]
    assert rows[label["cluster_write"]][2:] == ["+3,001", "MISS"]
    assert rows[label["cluster_read"]][3] == "PASS"

    missing = {**PASSING, "raw_aquery": None}
    assert _rows(missing)[label["aquery"]][2:] == ["n/a", "n/a"]


def _section(marker: str) -> str:
    counts = {**PASSING, "thread": 16_000 if marker == "old" else 15_000}
    checks = i.checks(counts)
    return report.instructions_section(i.table(counts, 1, 2, checks), checks, f"heading {marker}")


def test_an_instructions_run_replaces_only_its_own_section() -> None:
    async_part = report.async_section([], [], "async heading")
    doc = "# Benchmarks\n\n### 1. Overhead\n\nrows\n\n" + async_part + "\n\n" + _section("old") + "\n\n### Targets\n"
    new = report.splice_instructions(doc, _section("new"))
    assert "heading new" in new and "heading old" not in new
    assert "**Instruction Targets: 7 PASS, 1 MISS" in _section("old")
    assert "**Instruction Targets: 8 PASS, 0 MISS" in new
    assert new.replace(_section("new"), "") == doc.replace(_section("old"), "")
    assert report.splice_async(new, async_part) == new  # the other part is left as it was
