"""A soak's history saved to disk and read back is the same history, judged the same."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from .soak import Fault, Kind, NodeEvent, Op, Reply, Status
from .soak._history import Probe
from .soak._load import Sample, Sampler, busiest
from .soak._probes import Found, found_back, unanswered
from .soak._run import judge, load_history, save_history


def test_a_saved_history_reads_back_equal_and_judged_the_same(tmp_path: Path) -> None:
    """Ops (with replies), faults, probes, nodes and the checker's verdicts survive the round
    trip."""
    ops = (
        Op("A", 0, "s1", Kind.SAVE, Status.OK, 1.0, 1.01, 10, frozenset({"n1", "n2"})),
        Op(
            "B",
            0,
            "s1",
            Kind.READ,
            Status.FAIL,
            2.0,
            2.5,
            detail="partial_miss",
            replies=(Reply("n1", "get", "timeout", 0.5), Reply("n2", "get", "skipped", 0.0)),
        ),
        Op("A", 0, "s1", Kind.READ, Status.OK, 3.0, 3.01, None, served_by=None),
    )
    events = (NodeEvent("n2", Fault.PAUSE, 1.5, 1.51), NodeEvent("n2", Fault.RESUME, 1.9, 1.91))
    samples = (Sample(2.0, 0.3, 9.5),)
    probes = (
        Probe("A", "n2", 1.6, 1.61, 2.11, "timeout"),
        Probe("B", "n2", 1.95, 1.95, 1.96, "ok"),
    )
    nodes = ("n1", "n2", "n3")
    result = judge(
        "B", 5.0, ops, events, nodes, frozenset({"n3"}), True, 0.5, samples, probes=probes
    )
    path = tmp_path / "B.jsonl.gz"
    save_history(result, path, seed=7)
    again = load_history(path)
    assert (ops, events, probes, ("n1", "n2", "n3"), frozenset({"n3"}), 0.5) == (
        again.ops,
        again.events,
        again.probes,
        again.nodes,
        again.evicting,
        again.t0,
    )
    assert [f.verdict for f in result.report.findings] == [f.verdict for f in again.report.findings]
    assert ["lost"] == [f.verdict.value for f in again.report.findings]


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    """A history written by a different format version raises a clear ValueError."""
    path = tmp_path / "old.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write('{"format": 0}\n')
    with pytest.raises(ValueError, match="not a soak history of format 1"):
        load_history(path)


def test_the_busiest_sample_of_a_window_is_the_latest_wake_up_in_it() -> None:
    """Of samples at 1, 2 and 3 s, the window [1.5, 3] picks the one that woke latest."""
    samples = [Sample(1.0, 0.9, 1.0), Sample(2.0, 0.4, 2.0), Sample(3.0, 0.1, 3.0)]
    assert (Sample(2.0, 0.4, 2.0), None) == (
        busiest(samples, 1.5, 3.0),
        busiest(samples, 4.0, 5.0),
    )


def test_the_sampler_records_wake_ups_until_stopped() -> None:
    """A sampler run for a few ticks gives samples in time order, none early."""
    sampler = Sampler(tick=0.01).start()
    time.sleep(0.1)
    samples, _ = sampler.stop()
    assert samples
    assert all(sample.lag >= 0 for sample in samples)
    assert [s.at for s in samples] == sorted(s.at for s in samples)


def test_a_node_is_found_back_by_each_process_that_probed_it_while_away() -> None:
    """The time from a node's return to each probing process's first answered probe;
    a process whose next probe came only after the node went down again (C) is left
    out."""
    events = (
        NodeEvent("n1", Fault.KILL, 1.0, 1.01),
        NodeEvent("n1", Fault.START, 5.0, 5.02),
        NodeEvent("n1", Fault.KILL, 8.0, 8.01),
    )
    probes = (
        Probe("A", "n1", 4.5, 4.5, 4.51, "refused"),
        Probe("A", "n1", 4.9, 4.9, 4.91, "refused"),
        Probe("A", "n1", 5.3, 5.3, 5.32, "ok"),
        Probe("B", "n1", 4.95, 4.95, 4.96, "refused"),
        Probe("B", "n1", 5.01, 5.05, 5.06, "ok"),
        Probe("C", "n1", 9.0, 9.0, 9.01, "ok"),
        Probe("D", "n1", 5.1, 5.1, 5.11, "ok"),  # opened just before the return
    )
    found = [(f.process, f.node, f.back, round(f.seconds, 3)) for f in found_back(events, probes)]
    assert [("A", "n1", 5.02, 0.3), ("D", "n1", 5.02, 0.09), ("B", "n1", 5.02, 0.04)] == found


def test_a_node_answering_before_its_return_is_recorded_is_found_at_once() -> None:
    """A probe answered while the restart was still being recorded counts as 0 s; a
    node that went down again before any probe is left out."""
    events = (
        NodeEvent("n1", Fault.START, 5.0, 5.02),
        NodeEvent("n2", Fault.RESUME, 5.0, 5.01),
        NodeEvent("n2", Fault.PAUSE, 6.0, 6.01),
    )
    probes = (
        Probe("A", "n1", 4.9, 4.9, 4.91, "refused"),
        Probe("A", "n1", 5.01, 5.01, 5.015, "ok"),
        Probe("A", "n2", 4.5, 4.5, 4.99, "timeout"),
        Probe("A", "n2", 7.0, 7.0, 7.01, "ok"),
    )
    assert [Found("A", "n1", 5.02, 0.0)] == found_back(events, probes)


def test_a_probe_that_timed_out_after_its_node_came_back_is_unanswered() -> None:
    """A probe in flight across the node's resume that still timed out is listed; one
    that timed out before the resume, or was answered, is not."""
    events = (NodeEvent("n1", Fault.PAUSE, 1.0, 1.01), NodeEvent("n1", Fault.RESUME, 3.0, 3.01))
    probes = (
        Probe("A", "n1", 2.0, 2.0, 2.5, "timeout"),
        Probe("A", "n1", 2.6, 2.6, 3.1, "timeout"),
        Probe("B", "n1", 2.7, 2.7, 3.02, "ok"),
        Probe("A", "n2", 2.6, 2.6, 3.1, "timeout"),
    )
    assert [probes[1]] == unanswered(events, probes)
