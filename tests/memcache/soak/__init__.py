"""A fault-injection soak of the memcache session store against real memcached, and the
checker of its history (docs/memcache/soak.md).

``python -m tests.memcache.soak --scenario B --seconds 180`` runs it by hand;
tests/memcache/test_soak.py runs a short one in CI.
"""

from __future__ import annotations

from ._checker import GRACE, VIOLATIONS, Finding, Report, Verdict, check
from ._history import Fault, Kind, NodeEvent, Op, Recorder, Reply, Status, Timeline
from ._run import Result, run, table
from ._scenarios import SCENARIOS, Scenario

__all__ = [
    "GRACE",
    "SCENARIOS",
    "VIOLATIONS",
    "Fault",
    "Finding",
    "Kind",
    "NodeEvent",
    "Op",
    "Recorder",
    "Reply",
    "Report",
    "Result",
    "Scenario",
    "Status",
    "Timeline",
    "Verdict",
    "check",
    "run",
    "table",
]
