"""The tables printed at the end of a run: what users saw under each fault
(tests/faults) and what clients saw in each cluster drill (tests/cluster).

Rows are kept here, not in the tiers' conftests, so that tests/conftest.py can
print them and, when pytest-xdist runs the tests in workers, carry each
worker's rows to the process that prints the summary."""

from __future__ import annotations

from typing import Any

FAULTS = "fault injection: what users saw"
DRILLS = "cluster drills: what clients saw"

#: section -> rows, in the order the tests added them
ROWS: dict[str, list[dict[str, Any]]] = {FAULTS: [], DRILLS: []}


def add(section: str, row: dict[str, Any]) -> None:
    ROWS[section].append(row)


def merge(rows: dict[str, list[dict[str, Any]]]) -> None:
    """Add a worker's rows (``ROWS`` as the worker had it)."""
    for section, more in rows.items():
        ROWS[section].extend(more)


def write(terminalreporter: Any) -> None:
    faults, drills = ROWS[FAULTS], ROWS[DRILLS]
    if faults:
        width = max(len(row["fault"]) for row in faults)
        terminalreporter.section(FAULTS)
        terminalreporter.write_line(f"{'fault':<{width}} | user-visible errors | recovery s | note")
        for row in faults:
            recovery = "-" if row["recovery_s"] is None else f"{row['recovery_s']:.3f}"
            terminalreporter.write_line(
                f"{row['fault']:<{width}} | {row['errors']:>19} | {recovery:>10} | {row['note']}"
            )
    if drills:
        terminalreporter.section(DRILLS)
        for row in drills:
            figures = ", ".join(_figure(k, v) for k, v in row.items() if k != "drill")
            terminalreporter.write_line(f"{row['drill']}: {figures}")


def _figure(name: str, value: Any) -> str:
    return f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}"
