"""The proof: peer suites end test by test the same without and with errpolicy.

Runs the CI subset of ``python -m tests.fidelity`` (a few minutes; the first run
also downloads the sdists and builds the venvs). It runs under ``CI=true`` or
``ERRPOLICY_FIDELITY=1``, and is skipped otherwise so a local ``make test`` stays
quick; ``make fidelity`` runs every suite on every Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
WANTED = os.environ.get("CI", "").lower() == "true" or bool(os.environ.get("ERRPOLICY_FIDELITY"))


@pytest.mark.fidelity
@pytest.mark.timeout(1800)
@pytest.mark.skipif(not WANTED, reason="minutes long: set ERRPOLICY_FIDELITY=1 (CI=true runs it)")
def test_peer_suites_end_the_same_with_errpolicy_installed() -> None:
    """pytest's, structlog's and CPython's suites: same outcome per test, modulo allowed.toml."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.fidelity", "--ci"],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        timeout=1750,
        check=False,
    )
    assert 0 == result.returncode, result.stdout[-5000:] + result.stderr[-25000:]
