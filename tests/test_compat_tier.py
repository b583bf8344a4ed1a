"""The compatibility tier's judgement (scripts/compat/run.py), without running
the suites: the deliberate differences read from docs/integrations.md, which
failures count as the pool's, and the SQLAlchemy suite's JUnit report."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compat_run", ROOT / "scripts" / "compat" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compat_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


run = _load()


def test_the_docs_list_parses_with_a_reason_for_each() -> None:
    rows = run.documented_differences((ROOT / "docs" / "integrations.md").read_text())
    assert rows and {suite for suite, _, _ in rows} <= {"sqlalchemy", "django"}
    assert all(len(reason) > 20 for _, _, reason in rows)


def test_a_row_without_a_reason_or_backticks_is_refused() -> None:
    head = "## Deliberate differences\n\n| suite | test | why |\n| --- | --- | --- |\n"
    with pytest.raises(SystemExit, match="reason"):
        run.documented_differences(head + "| django | `a.b.C.test_x` |  |\n")
    with pytest.raises(SystemExit, match="reason"):
        run.documented_differences(head + "| django | a.b.C.test_x | because |\n")
    with pytest.raises(SystemExit, match="section"):
        run.documented_differences("# Nothing here\n")


def test_rows_end_at_the_next_heading() -> None:
    text = (
        "### Deliberate differences\n| suite | test | why |\n| --- | --- | --- |\n"
        "| django | `a.T.test_x` | a reason |\n## Later\n| django | `b.T.test_y` | another |\n"
    )
    assert run.documented_differences(text) == [("django", "a.T.test_x", "a reason")]


def test_star_is_the_only_wildcard() -> None:
    assert run.matches("T::test_a[*]", "T::test_a[x-false]")
    assert not run.matches("T::test_a[*]", "T::test_ab[x]")
    assert not run.matches("T::test_a[xy]", "T::test_a[x]")  # brackets are literal, not a class
    assert not run.matches("a.T.test", "a.T.test_more")


def test_only_failures_the_stock_stack_does_not_share_count() -> None:
    pool = {"a": "failed", "b": "failed", "c": "passed", "d": "skipped"}
    stock = {"a": "failed", "b": "passed", "c": "passed", "d": "skipped", "e": "passed", "f": "skipped"}
    # b: only through the pool; e: passed through stock, never reported by the pool's run
    assert run.pool_only_failures(pool, stock) == ["b", "e"]


def test_judge_finds_unexplained_and_stale_rows() -> None:
    rows = [("django", "x.T.test_listed", "why"), ("django", "x.T.test_gone", "why"), ("sqlalchemy", "S::t", "why")]
    unexplained, stale = run.judge("django", ["x.T.test_listed", "x.T.test_new"], rows)
    assert unexplained == ["x.T.test_new"]
    assert stale == ["x.T.test_gone"]  # the sqlalchemy row is not this suite's


def test_junit_report_names_tests_without_the_server_version(tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(
        "<testsuites><testsuite>"
        '<testcase classname="test_suite.RowCountTest_mariadb+pymysql_10_11_19_0" name="test_a"/>'
        '<testcase classname="test_suite.RowCountTest_mariadb+pymysql_10_11_19_0" name="test_b">'
        '<failure message="x"/></testcase>'
        '<testcase classname="test_suite.X_mysql+pymysql_8_0_1" name="test_c[p-1]"><skipped/></testcase>'
        '<testcase classname="test_suite.X_mysql+pymysql_8_0_1" name="test_c[p-1]"><error/></testcase>'
        '<testcase classname="test_suite.Y" name="test_d"><failure/></testcase>'
        '<testcase classname="test_suite.Y" name="test_d"/>'
        "</testsuite></testsuites>"
    )
    assert run.junit_outcomes(report) == {
        "RowCountTest::test_a": "passed",
        "RowCountTest::test_b": "failed",
        "X::test_c[p-1]": "failed",  # an error in teardown after the call counts
        "Y::test_d": "failed",  # and a later entry does not undo a failure
    }
    assert run.counts(run.junit_outcomes(report)) == "1 passed, 3 failed, 0 skipped"


def test_only_databases_of_runs_older_than_the_stale_age_are_dropped() -> None:
    now = 1_800_000_000.0
    old = run.run_prefix("test", now - run.STALE_AFTER - 1)
    recent = run.run_prefix("test", now - run.STALE_AFTER + 60)
    other_base = run.run_prefix("mine", now - run.STALE_AFTER - 1)
    names = [
        f"{old}_p_test_default",
        f"{old}_s_test_other_1",
        f"{recent}_p_test_default",
        f"{other_base}_p_test_default",
        "test",
        "test_cpzzzzzzzz0000_p",
    ]
    assert run.stale_databases(names, "test", now) == [f"{old}_p_test_default", f"{old}_s_test_other_1"]
    assert run.stale_databases(names, "mine", now) == [f"{other_base}_p_test_default"]
