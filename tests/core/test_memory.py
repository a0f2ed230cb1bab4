"""A flood of events keeps a guard's memory bounded."""

from __future__ import annotations

import logging

import errpolicy
import pytest
from errpolicy import Action, Policy, Severity

log = logging.getLogger("t.flood")
log.setLevel(logging.DEBUG)
log.propagate = False


@pytest.mark.slow
# CPU-bound (about 40 s alone); the suite's 120 s limit is there to catch hangs, not a
# machine busy with other work.
@pytest.mark.timeout(900)
def test_a_million_records_keep_the_first_and_latest() -> None:
    """1,000,000 records: max_events kept (first half, latest half), the rest counted."""
    errpolicy.configure(max_events=100, sink=errpolicy.NullSink())
    n = 1_000_000
    with errpolicy.guard("flood", policy=Policy(raise_on="NONE", record="ALL")) as report:
        for i in range(n):
            log.debug("r%d", i)
    messages = [e.message for e in report.events]
    assert [f"r{i}" for i in range(50)] + [f"r{i}" for i in range(n - 50, n)] == messages
    assert n - 100 == report.dropped
    assert {(Action.RECORD, Severity.DEBUG): n} == dict(report.counts)


def test_raised_events_survive_a_flood() -> None:
    """An error in the middle of a flood is still raised though it fell out of the buffer."""
    errpolicy.configure(max_events=10, sink=errpolicy.NullSink())
    with pytest.raises(errpolicy.PolicyViolation) as info, errpolicy.guard("flood") as report:
        for i in range(1000):
            log.debug("r%d", i)
        log.error("the one that matters")
        for i in range(1000):
            log.debug("s%d", i)
    assert ["the one that matters"] == [e.event.message for e in info.value.exceptions]  # type: ignore[attr-defined]
    assert "the one that matters" not in [e.message for e in report.events]
    assert 2001 == report.total


def test_notes_say_how_many_were_not_kept() -> None:
    """When the block raises after a flood, the notes count what was not kept."""
    errpolicy.configure(max_events=4, sink=errpolicy.NullSink())
    with pytest.raises(RuntimeError) as info, errpolicy.guard("flood"):
        for i in range(10):
            log.debug("r%d", i)
        raise RuntimeError("crash")
    notes = info.value.__notes__
    assert 5 == len(notes)
    assert "6 more events not kept" in notes[-1]
