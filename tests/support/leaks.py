"""ConnectionLeakWarning in the tests: expected only where a test says so.

Every test runs under a guard (tests/conftest.py) that records the leak
warnings it causes, from any thread, and fails the test at teardown if there
was one it did not expect. A test that drops connections on purpose takes the
``leak_warnings`` fixture and asserts what it saw (or wraps the drop in
``pytest.warns(ConnectionLeakWarning)``). The warnings are recorded, not
turned into errors: raised inside the pool (its maintenance round, a
reclaim), an error would change what the test observes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import pytest

from pymysqlpool import ConnectionLeakWarning


class LeakWarnings:
    """The leak warnings a test caused so far (live while it runs)."""

    def __init__(self, record: list[warnings.WarningMessage]) -> None:
        self._record = record
        self.expected = False

    @property
    def messages(self) -> list[str]:
        return [str(w.message) for w in self._record if issubclass(w.category, ConnectionLeakWarning)]

    def others(self) -> list[warnings.WarningMessage]:
        return [w for w in self._record if not issubclass(w.category, ConnectionLeakWarning)]


@contextmanager
def leak_guard() -> Iterator[LeakWarnings]:
    """Record every warning; afterwards give the others back to pytest (its
    summary, its filters) and fail on an unexpected leak warning."""
    guard: Optional[LeakWarnings] = None
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", ConnectionLeakWarning)  # each one counted, none merged
        guard = LeakWarnings(record)
        try:
            yield guard
        finally:
            others = guard.others()
            leaks = guard.messages
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if leaks and not guard.expected:
        first = leaks[0].splitlines()[0]
        pytest.fail(
            f"{len(leaks)} unexpected ConnectionLeakWarning(s), first: {first}"
            " (a test that drops connections on purpose takes the leak_warnings fixture)",
            pytrace=False,
        )
