"""The failover demo's ASGI variant (``make demo ARGS=--asgi``) in short mode: the
FastAPI app under uvicorn on the async store, the same six phases and checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHASES = ["all-up", "one-killed", "one-hung", "restarted", "all-down", "all-back"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(memcached_binary: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON of one short ``--asgi`` run (which must exit 0), with its plot."""
    out = tmp_path_factory.mktemp("demo-asgi")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.failover_demo",
            "--short",
            "--asgi",
            "--json",
            str(out / "demo.json"),
            "--plot",
            str(out / "demo.svg"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert "example FastAPI app" in result.stderr
    assert "<svg" in (out / "demo.svg").read_text()[:2000]
    loaded: dict[str, Any] = json.loads((out / "demo.json").read_text())
    return loaded


def test_the_asgi_demo_passes_every_check_of_the_six_phases(report: dict[str, Any]) -> None:
    """Every phase ran, in order, and every check held (no lost or stale session)."""
    assert (PHASES, True, []) == (
        [phase["name"] for phase in report["phases"]],
        report["passed"],
        report["failed_checks"],
    )


def test_the_asgi_demo_answers_only_clean_503s_when_all_nodes_are_down(
    report: dict[str, Any],
) -> None:
    """With every node down each request is the middleware's 503, never an empty session."""
    phase = next(p for p in report["phases"] if p["name"] == "all-down")
    assert (phase["requests"], 0, 0) == (phase["unavailable"], phase["lost"], phase["errors"])
