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

    def addSuccess(self, test):
        super().addSuccess(test)
        self._mark(test, "passed")

    def addError(self, test, err):
        super().addError(test, err)
        self._mark(test, "failed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._mark(test, "failed")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._mark(test, "skipped")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._mark(test, "xfailed")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._mark(test, "failed")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._mark(test, "failed")


class RecordingRunner(DiscoverRunner):
    def get_resultclass(self):
        return _Recording

    def suite_result(self, suite, result, **kwargs):
        with open(os.environ["COMPAT_RESULTS"], "w") as out:
            json.dump(getattr(result, "outcomes", {}), out, sort_keys=True)
        return super().suite_result(suite, result, **kwargs)
