"""Run CPython test modules with unittest and write each test's outcome as JSON.

Run by the interpreter under test (3.11 to 3.15, standard library only)::

    python _unittest_runner.py OUT.json test.test_warnings [test.test_logging ...]

A test with a failing subtest counts as failed; ``setUpClass`` and module
fixture errors are reported under unittest's own ids for them.
"""

from __future__ import annotations

import importlib
import json
import sys
import unittest

_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


class _Recorder(unittest.TextTestResult):
    """Keeps the worst outcome seen for each test id, beside unittest's output."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # passed through as given
        self.outcomes: dict[str, str] = {}

    def _note(self, test: unittest.TestCase, outcome: str) -> None:
        test_id = test.id()
        if _RANK[outcome] >= _RANK[self.outcomes.get(test_id, "passed")]:
            self.outcomes[test_id] = outcome

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._note(test, "passed")

    def addFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addFailure(test, err)  # type: ignore[arg-type]
        self._note(test, "failed")

    def addError(self, test: unittest.TestCase, err: object) -> None:
        super().addError(test, err)  # type: ignore[arg-type]
        self._note(test, "error")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._note(test, "skipped")

    def addExpectedFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addExpectedFailure(test, err)  # type: ignore[arg-type]
        self._note(test, "skipped")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._note(test, "failed")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: object) -> None:
        super().addSubTest(test, subtest, err)  # type: ignore[arg-type]
        if err is not None:
            failed = issubclass(err[0], test.failureException)  # type: ignore[index]
            self._note(test, "failed" if failed else "error")


def main(argv: list[str]) -> int:
    out, *modules = argv
    for name in modules:  # unittest would report a missing module as one failed "test"
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"cannot import {name}: {exc} (Debian: libpython3.X-testsuite)", file=sys.stderr)
            return 3
    suite = unittest.defaultTestLoader.loadTestsFromNames(modules)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=_Recorder)
    result = runner.run(suite)
    assert isinstance(result, _Recorder)
    with open(out, "w", encoding="utf-8") as file:
        json.dump(result.outcomes, file, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
