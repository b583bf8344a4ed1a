"""The benchmark logs its pools in as an account of its own per run, and drops it
however the run ends; its connect scenario produces its tables and target."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from server_helpers import mysql_kwargs, query, raw_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `benchmarks`

from benchmarks import connect, run
from benchmarks.common import Server, Settings
from benchmarks.scenarios import ConnCounter, Context

pytestmark = pytest.mark.server


def _accounts(name: str) -> int:
    admin = raw_connect()
    try:
        return int(query(admin, "SELECT COUNT(*) FROM mysql.user WHERE User = %s", (name,))[0][0])
    finally:
        admin.close()


def _cli_args() -> list[str]:
    kw = mysql_kwargs()
    return [
        *("--host", kw["host"], "--port", str(kw["port"]), "--user", kw["user"]),
        *("--password", kw["password"], "--database", kw["database"]),
        *("--quick", "--no-out", "--quiet", "--scenario", "memory"),
    ]


def test_each_run_has_its_own_account() -> None:
    names = {run.bench_account()[0] for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(run.BENCH_USER_PREFIX) and len(n) <= 32 for n in names)


@pytest.mark.parametrize("ending", ["normal", "interrupted"])
def test_the_account_exists_during_the_run_and_is_dropped_after(
    ending: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[str] = []
    real_account = run.bench_account

    def account() -> tuple[str, str]:
        made.append(real_account()[0])
        return made[-1], "a-password"

    seen_during: list[int] = []
    real_memory = run.scenarios.run_memory

    def memory(ctx: Any) -> Any:
        seen_during.append(_accounts(made[-1]))
        assert ctx.conn_counter.user == made[-1]
        if ending == "interrupted":
            raise KeyboardInterrupt
        return real_memory(ctx)

    monkeypatch.setattr(run, "bench_account", account)
    monkeypatch.setattr(run.scenarios, "run_memory", memory)
    if ending == "interrupted":
        with pytest.raises(KeyboardInterrupt):
            run.main(_cli_args())
    else:
        assert run.main(_cli_args()) == 0
    assert seen_during == [1]
    assert _accounts(made[0]) == 0


def test_connect_scenario_reports_connect_cost_and_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connect, "WARMUP_SIZE", 4)
    kw = mysql_kwargs()
    server = Server(kw["host"], kw["port"], kw["user"], kw["password"], kw["database"])
    ctx = Context(server, server.kwargs(), Settings.quick(), [], ConnCounter(None), lambda message: None)
    result = connect.run_connect(ctx)
    assert result.failed == {}
    assert set(result.connect_ms) == {connect.RAW_DEFAULT, connect.RAW_PLAIN, connect.OURS_DIAL, connect.OURS_NEW_POOL}
    assert all(len(v) == result.connects for v in result.connect_ms.values())
    assert len(result.warmup_ms) == 4  # raw twice, ours concurrent and one at a time (no peers given)
    checks = connect.connect_checks(result)
    assert [c.subject for c in checks] == [connect.OURS_DIAL] and checks[0].ok is not None
    connect_table, warmup_table = connect.connect_tables(result, checks)
    assert [row[0] for row in connect_table.rows] == list(result.connect_ms)
    assert all(row[1] != "n/a" for row in warmup_table.rows)
