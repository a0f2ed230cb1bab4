"""The unittest runner records one outcome per test id, the worst one seen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).with_name("_unittest_runner.py")

MODULE = """
import unittest

class T(unittest.TestCase):
    def test_passes(self):
        pass

    def test_fails(self):
        self.assertEqual(1, 2)

    def test_errors(self):
        raise RuntimeError("boom")

    @unittest.skip("not here")
    def test_skipped(self):
        pass

    def test_one_subtest_fails(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(1, i)

    @unittest.expectedFailure
    def test_unexpected_success(self):
        pass
"""


def _run(tmp_path: Path, *modules: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "out.json"
    return subprocess.run(
        [sys.executable, str(RUNNER), str(out), *modules],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_each_outcome_is_recorded_under_the_test_id(tmp_path: Path) -> None:
    """Pass, fail, error, skip, a failing subtest and an unexpected success."""
    (tmp_path / "sample_mod.py").write_text(MODULE, encoding="utf-8")
    result = _run(tmp_path, "sample_mod")
    expected = {
        "sample_mod.T.test_passes": "passed",
        "sample_mod.T.test_fails": "failed",
        "sample_mod.T.test_errors": "error",
        "sample_mod.T.test_skipped": "skipped",
        "sample_mod.T.test_one_subtest_fails": "failed",
        "sample_mod.T.test_unexpected_success": "failed",
    }
    assert 0 == result.returncode, result.stderr
    assert expected == json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))


def test_a_missing_module_writes_no_outcomes(tmp_path: Path) -> None:
    """A module that cannot be imported stops the run instead of counting as one test."""
    result = _run(tmp_path, "no_such_module_here")
    assert 3 == result.returncode
    assert "cannot import no_such_module_here" in result.stderr
    assert not (tmp_path / "out.json").exists()
