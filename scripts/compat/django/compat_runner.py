"""Django's test runner, writing every test's outcome to COMPAT_RESULTS (JSON),
from the main process (the parallel workers' results are replayed there)."""

import json
import os
import unittest

from django.test.runner import DiscoverRunner

_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "failed": 2}


class _Recording(unittest.TextTestResult):
    def _mark(self, test, outcome):
        outcomes = self.__dict__.setdefault("outcomes", {})
        key = test.id()
        if _RANK[outcome] >= _RANK[outcomes.get(key, "passed")]:
            outcomes[key] = outcome

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._mark(test, "failed")


def _recording(method, outcome):
    def record(self, test, *args):
        getattr(unittest.TextTestResult, method)(self, test, *args)
        self._mark(test, outcome)

    return record


for _method, _outcome in (
    ("addSuccess", "passed"),
    ("addError", "failed"),
    ("addFailure", "failed"),
    ("addSkip", "skipped"),
    ("addExpectedFailure", "xfailed"),
    ("addUnexpectedSuccess", "failed"),
):
    setattr(_Recording, _method, _recording(_method, _outcome))


class RecordingRunner(DiscoverRunner):
    def get_resultclass(self):
        return _Recording

    def suite_result(self, suite, result, **kwargs):
        with open(os.environ["COMPAT_RESULTS"], "w") as out:
            json.dump(getattr(result, "outcomes", {}), out, sort_keys=True)
        return super().suite_result(suite, result, **kwargs)
