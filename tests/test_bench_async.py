"""benchmarks: the async scenario's targets and how its section enters docs/benchmarks.md (no server)."""

from __future__ import annotations

import pytest
from benchmarks import async_scenarios as a
from benchmarks import report
from benchmarks.common import Table
from benchmarks.scenarios import ContentionRow


def _subjects() -> list[a.ASubject]:
    async def never(kwargs: dict, maxsize: int) -> a.AHandle:
        raise AssertionError("not built in these tests")

    return [
        a.ASubject(a.AIOMYSQL_POOL, "aiomysql Pool", "1", never, driver="aiomysql"),
        a.ASubject(a.SQLA_ROLLBACK, "SQLAlchemy rollback", "1", never, resets=True, driver="aiomysql"),
        a.ASubject(a.OURS_AIOMYSQL, "ours", "1", never, ours=True, driver="aiomysql"),
        a.ASubject(a.OURS_ASYNCMY, "ours asyncmy", "1", None, "asyncmy not installed", ours=True, driver="asyncmy"),
    ]


def _row(key: str, cycles: int, cv: float, conns: int, errors: int = 0) -> ContentionRow:
    row = ContentionRow(key, 32, 8, cycles=cycles, errors=errors, elapsed_s=1.0, server_conns=conns, runs=1)
    row.run_cvs = [cv]
    return row


def _result(ours_us: float, ours_ratio: float, ours_row: ContentionRow, peer_us: float = 9.0) -> a.AsyncResult:
    overhead = a.ATiming(1000, 3, 4, samples={a.AIOMYSQL_POOL: [peer_us] * 3, a.OURS_AIOMYSQL: [ours_us] * 3})
    query = a.ATiming(100, 3, 1, block_ratios={a.OURS_AIOMYSQL: [ours_ratio] * 5})
    rows = [_row(a.AIOMYSQL_POOL, 9000, 0.05, 8), _row(a.SQLA_ROLLBACK, 4000, 0.02, 8), ours_row]
    rows.append(ContentionRow(a.OURS_ASYNCMY, 32, 8, error="asyncmy not installed"))
    return a.AsyncResult(_subjects(), overhead, query, rows, 1.0, 1, "test")


def _verdicts(result: a.AsyncResult, label: str = "ours") -> dict[tuple[str, str], bool | None]:
    return {(c.scenario, c.target): c.ok for c in a.checks(result) if c.subject == label}


def test_targets_pass_on_good_numbers() -> None:
    verdicts = _verdicts(_result(1.5, 1.02, _row(a.OURS_AIOMYSQL, 5000, 0.03, 8)))
    assert len(verdicts) == 7
    assert all(ok is True for ok in verdicts.values()), verdicts


@pytest.mark.parametrize(
    ("us", "ratio", "row", "missed"),
    [
        (2.5, 1.0, _row(a.OURS_AIOMYSQL, 5000, 0.03, 8), "≤ 2 µs"),
        (1.9, 1.0, _row(a.OURS_AIOMYSQL, 5000, 0.03, 8), "≥ 2.5x less than aiomysql Pool"),
        (1.0, 1.2, _row(a.OURS_AIOMYSQL, 5000, 0.03, 8), "≤ 1.05x raw aiomysql"),
        (1.0, 1.0, _row(a.OURS_AIOMYSQL, 5000, 0.03, 8, errors=1), "zero errors"),
        (1.0, 1.0, _row(a.OURS_AIOMYSQL, 3000, 0.03, 8), "throughput ≥ best resetting peer"),
        (1.0, 1.0, _row(a.OURS_AIOMYSQL, 5000, 0.2, 8), "fairness CV ≤ 0.1"),
        (1.0, 1.0, _row(a.OURS_AIOMYSQL, 5000, 0.03, 9), "server conns ≤ maxsize"),
    ],
)
def test_each_target_can_miss(us: float, ratio: float, row: ContentionRow, missed: str) -> None:
    peer = 4.0 if us == 1.9 else 9.0
    failed = [target for (_, target), ok in _verdicts(_result(us, ratio, row, peer)).items() if ok is False]
    assert failed == [missed]


def test_a_missing_subject_is_na_not_miss() -> None:
    verdicts = _verdicts(_result(1.0, 1.0, _row(a.OURS_AIOMYSQL, 5000, 0.03, 8)), "ours asyncmy")
    assert verdicts and all(ok is None for ok in verdicts.values())
    tables = a.tables(_result(1.0, 1.0, _row(a.OURS_AIOMYSQL, 5000, 0.03, 8)), [])
    assert all(any("ours asyncmy: n/a (asyncmy not installed)" in n for n in t.notes) for t in tables)
    for table in tables:  # every row as wide as the header
        assert report.render(table).count("\n") == len(table.rows) + 1


def test_a_driver_that_cannot_be_imported_turns_its_subjects_na(monkeypatch: pytest.MonkeyPatch) -> None:
    real = a._importable
    monkeypatch.setattr(a, "_importable", lambda name: "gone" if name == "asyncmy" else real(name))
    by_key = {s.key: s for s in a.discover()}
    for key in (a.RAW_ASYNCMY, a.ASYNCMY_POOL, a.OURS_ASYNCMY):
        assert by_key[key].factory is None and by_key[key].missing


def _section(marker: str) -> str:
    return report.async_section([Table(f"A1. {marker}", ["x"], [["1"]])], [], "heading")


def test_an_async_run_replaces_only_its_own_section() -> None:
    doc = "# Benchmarks\n\n### 1. Overhead\n\nrows\n\n" + _section("old") + "\n\n### Targets\n\nall\n"
    new = report.splice_async(doc, _section("new"))
    assert "A1. new" in new and "A1. old" not in new
    assert new.replace(_section("new"), "") == doc.replace(_section("old"), "")


def test_an_async_section_goes_before_the_targets_of_an_older_report() -> None:
    doc = "# Benchmarks\n\n### 1. Overhead\n\nrows\n\n### Targets\n\nall\n"
    new = report.splice_async(doc, _section("new"))
    assert new.index("### 1. Overhead") < new.index("A1. new") < new.index("### Targets")
    assert new.replace(_section("new") + "\n\n", "") == doc
    assert report.splice_async("# Benchmarks\n", _section("x")).endswith(report.ASYNC_END + "\n")
