"""The startup hook: inert without errpolicy, and its guard thread leaks nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.fidelity._prepare import clean_environment
from tests.fidelity._startup import MARKER, NAME, PTH_LINE

STARTUP = Path(__file__).with_name("_startup.py")


def _python(code: str, boot: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` after the .pth line, as ``site`` would run it, in a new interpreter."""
    return subprocess.run(
        [sys.executable, "-c", f"{PTH_LINE}\n{code}"],
        env=clean_environment(ERRPOLICY_FIDELITY_BOOT=str(boot), **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_without_the_mode_the_pth_line_imports_nothing(tmp_path: Path) -> None:
    """The run without errpolicy is a plain interpreter: no errpolicy, no thread, no path."""
    shutil.copy2(STARTUP, tmp_path / f"{NAME}.py")
    code = (
        "import sys, threading, json; print(json.dumps([ 'errpolicy' in sys.modules, "
        f"{NAME!r} in sys.modules, threading.active_count(), {str(tmp_path)!r} in sys.path]))"
    )
    result = _python(code, tmp_path, ERRPOLICY_FIDELITY_MODE="without")
    assert [False, False, 1, False] == json.loads(result.stdout), result.stderr


# The main thread watches for the guard thread's events everywhere a suite could see
# them (a catch_warnings log, a root handler, a logger's handler, stderr) until the
# thread has done many cycles; counts are read from the module, not timed.
_WATCH = f"""
import io, json, logging, sys, time, warnings
import errpolicy, {NAME} as startup
seen = []
class Keep(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.DEBUG)
sys.stderr = err = io.StringIO()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    while startup.COUNTS.get("cycles", 0) < 200:
        time.sleep(0.001)
    warnings.warn("the main thread's own", UserWarning)
sys.stderr = sys.__stderr__
print(json.dumps({{"installed": errpolicy.installed(), "counts": startup.COUNTS,
                  "warnings": [str(w.message) for w in caught], "records": seen,
                  "stderr": err.getvalue()}}))
"""


def test_the_guard_thread_runs_and_nothing_of_it_leaks(tmp_path: Path) -> None:
    """With the mode on, errpolicy is installed and the thread's events stay in its guards."""
    shutil.copy2(STARTUP, tmp_path / f"{NAME}.py")
    result = _python(
        _WATCH,
        tmp_path,
        ERRPOLICY_FIDELITY_MODE="with",
        ERRPOLICY_FIDELITY_INTERVAL="0",
        ERRPOLICY_FIDELITY_CHURN_DIR=str(tmp_path),
    )
    found = json.loads(result.stdout)
    assert True is found["installed"]
    assert 0 == found["counts"]["escaped"], found["counts"]
    assert ["the main thread's own"] == found["warnings"]
    assert [] == [r for r in found["records"] if MARKER in r]
    assert MARKER not in found["stderr"]
    (written,) = tmp_path.glob("churn-*.json")  # at exit, by the one process
    assert 200 <= json.loads(written.read_text())["cycles"]


def test_the_harness_environment_drops_what_steers_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """PYTHON*, PYTEST_* and ERRPOLICY_* of the caller never reach a run."""
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    monkeypatch.setenv("ERRPOLICY_PURE_PYTHON", "1")
    env = clean_environment(EXTRA="1")
    assert "PYTHONWARNINGS" not in env
    assert not [k for k in env if k.startswith(("PYTEST_", "ERRPOLICY_"))]
    assert "1" == env["EXTRA"]
