"""Settings, result records and small statistics shared by the benchmark modules."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# progress(message, done, total): `done` of `total` scenarios are finished.
Progress = Callable[[str, int, int], None]


def no_progress(message: str, done: int, total: int) -> None:
    """Default progress hook: stay silent."""


@dataclass(frozen=True)
class Server:
    """Where the MariaDB/MySQL server is and how the admin connection logs in."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = "test"

    def kwargs(self, user: str | None = None, password: str | None = None) -> dict[str, Any]:
        """PyMySQL keyword arguments; pools may log in as another user."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user if user is None else user,
            "password": self.password if password is None else password,
            "database": self.database,
            "autocommit": True,
        }


@dataclass(frozen=True)
class Settings:
    """How much work each scenario does (``--quick`` shrinks all of it)."""

    rounds: int = 7
    overhead_cycles: int = 5000
    query_cycles: int = 500
    # The query target is a 5 % margin on ~50 µs: more, shorter, paired rounds.
    query_rounds: int = 15
    # Short windows: more of them slip between other clients' queries.
    trip_cycles: int = 50
    trip_repeats: int = 5
    contention: tuple[tuple[int, int], ...] = ((32, 8), (256, 32))
    duration_s: float = 3.0
    contention_runs: int = 2  # per pool; the machine is noisy, one run is not enough
    max_cycles_per_thread: int = 1_000_000
    fake_cycles: int = 20000
    fake_sizes: tuple[int, ...] = (10, 100, 1000)
    # Scenarios 1-3 borrow one connection at a time; a few are enough.
    small_maxsize: int = 4
    warmup_cycles: int = 200

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            rounds=5,
            overhead_cycles=1000,
            query_cycles=200,
            query_rounds=9,
            trip_cycles=30,
            trip_repeats=3,
            duration_s=1.0,
            contention_runs=1,
            fake_cycles=5000,
            warmup_cycles=50,
        )


@dataclass
class Table:
    """One scenario's result, rendered as a Markdown table."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """One target: ``ok`` is None when it could not be evaluated (missing input)."""

    scenario: str
    subject: str
    target: str
    ok: bool | None
    measured: str

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "MISS")


NA = "n/a"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def coefficient_of_variation(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    mean = statistics.fmean(values)
    if mean == 0:
        return math.inf
    return statistics.pstdev(values) / mean


def fmt(value: float | None, digits: int = 2) -> str:
    """Format a number for a table; None/NaN become n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


# The columns of a contention table after its first (who was measured).
CONTENTION_COLUMNS = [
    "cycles/s",
    "errors",
    "wait p50 ms",
    "wait p99 ms",
    "wait max ms",
    "fairness CV",
    "server conns",
    "cycles",
    "Target",
]
