"""The soak's history checker on hand-made histories: it finds what it must, and nothing
the history does not prove (unknown writes are allowed either way)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from .soak import Fault, Kind, NodeEvent, Op, Reply, Status, Timeline, Verdict, check
from .soak._history import Probe
from .soak._probes import held_open
from .soak._recovery import recoveries

N1, N2, N3 = "n1", "n2", "n3"
OK, FAIL, UNKNOWN, ERROR = Status.OK, Status.FAIL, Status.UNKNOWN, Status.ERROR


def op(
    kind: Kind,
    at: float,
    status: Status = OK,
    value: int | None = None,
    nodes: Sequence[str] = (),
    served_by: str | None = None,
    detail: str = "",
    sid: str = "s1",
) -> Op:
    """One op taking 0.01 s from ``at``."""
    return Op("A", 0, sid, kind, status, at, at + 0.01, value, frozenset(nodes), served_by, detail)


def save(at: float, value: int, *nodes: str, status: Status = OK) -> Op:
    """A save of ``value`` acknowledged by ``nodes``."""
    return op(Kind.SAVE, at, status, value, nodes)


def destroy(at: float, *nodes: str, status: Status = OK) -> Op:
    """A destroy whose tombstone ``nodes`` acknowledged."""
    return op(Kind.DESTROY, at, status, None, nodes)


def read(at: float, value: int | None, served_by: str | None = None) -> Op:
    """A successful read that gave ``value`` (None: a new session)."""
    return op(Kind.READ, at, OK, value, (), served_by)


def event(node: str, fault: Fault, at: float) -> NodeEvent:
    """A fault on ``node`` taking 0.01 s from ``at``."""
    return NodeEvent(node, fault, at, at + 0.01)


def verdicts(ops: Sequence[Op], *events: NodeEvent, evicting: Sequence[str] = ()) -> list[Verdict]:
    """The checker's verdicts on ``ops``, in order."""
    report = check(ops, Timeline(tuple(events), frozenset(evicting)))
    return [finding.verdict for finding in report.findings]


def test_reading_the_last_acknowledged_save_is_fine() -> None:
    """The newest acknowledged value read back: nothing found."""
    assert [] == verdicts([save(1, 10, N1, N2), read(2, 10), save(3, 11, N1, N2), read(4, 11)])


def test_an_empty_read_while_a_holder_kept_the_data_is_lost() -> None:
    """A new session although n2 acknowledged the save and lost nothing since: lost."""
    ops = [save(1, 10, N1, N2), read(3, None)]
    assert [Verdict.LOST] == verdicts(ops, event(N1, Fault.FLUSH, 2))


def test_a_hung_holder_still_holds_the_data() -> None:
    """Both holders hung (paused) during the read: an empty session is still lost."""
    events = [event(N1, Fault.PAUSE, 2), event(N2, Fault.PAUSE, 2)]
    assert [Verdict.LOST] == verdicts([save(1, 10, N1, N2), read(3, None)], *events)


def test_an_empty_read_after_every_holder_lost_its_memory_is_allowed() -> None:
    """Both holders restarted or flushed: a logout the docs allow, not a violation."""
    events = [event(N1, Fault.KILL, 2), event(N1, Fault.START, 2.1), event(N2, Fault.FLUSH, 2.5)]
    ops = [save(1, 10, N1, N2), read(3, None)]
    assert [Verdict.ALLOWED_LOSS] == verdicts(ops, *events)


def test_a_fault_during_the_save_counts_as_lost_memory() -> None:
    """A flush that overlaps the save may come after the set: that holder is not trusted."""
    ops = [save(1, 10, N1), read(3, None)]
    assert [Verdict.ALLOWED_LOSS] == verdicts(ops, NodeEvent(N1, Fault.FLUSH, 0.9, 1.005))


def test_an_evicting_node_never_counts_as_keeping_a_copy() -> None:
    """The only holder is the evicting node: losing the session is allowed."""
    ops = [save(1, 10, N3), read(3, None)]
    assert [Verdict.ALLOWED_LOSS] == verdicts(ops, evicting=[N3])


def test_an_unknown_destroy_allows_an_empty_read() -> None:
    """A destroy that raised may have landed: an empty session is allowed."""
    ops = [save(1, 10, N1, N2), destroy(2, status=UNKNOWN), read(3, None), read(4, 10)]
    assert [] == verdicts(ops)


def test_an_unknown_save_may_or_may_not_have_landed() -> None:
    """After an acknowledged 10 and an unknown 11, reads of 10 or 11 are both fine."""
    ops = [save(1, 10, N1, N2), save(2, 11, status=UNKNOWN), read(3, 11), read(4, 10)]
    report = check(ops, Timeline(()))
    assert ([], 1, 1) == (list(report.findings), report.ghost_reads, report.unknown_writes)


def test_an_unknown_save_does_not_allow_an_empty_read() -> None:
    """An unknown save cannot remove the acknowledged copy: empty is still lost."""
    ops = [save(1, 10, N1, N2), save(2, 11, status=UNKNOWN), read(3, None)]
    assert [Verdict.LOST] == verdicts(ops)


def test_nothing_acknowledged_allows_empty_or_any_unknown_value() -> None:
    """Only unknown saves so far: an empty session or any of their values is fine."""
    ops = [save(1, 10, status=UNKNOWN), read(2, None), save(3, 11, status=UNKNOWN), read(4, 10)]
    assert [] == verdicts(ops)


def test_an_older_value_while_a_holder_kept_the_newer_one_is_stale() -> None:
    """11 acknowledged and still on n2, 10 served: stale."""
    ops = [save(1, 10, N1, N2), save(2, 11, N2, N3), read(3, 10, served_by=N1)]
    assert [Verdict.STALE] == verdicts(ops)


def test_an_older_than_acknowledged_unknown_write_is_stale() -> None:
    """An unknown save before the acknowledged one is older than it: serving it is stale."""
    ops = [save(1, 10, status=UNKNOWN), save(2, 11, N1, N2), read(3, 10)]
    assert [Verdict.STALE] == verdicts(ops)


def test_an_older_value_after_the_holders_lost_memory_is_unproved() -> None:
    """Every holder of 11 flushed: serving 10 breaks the model, but is not proved."""
    events = [event(N2, Fault.FLUSH, 2.5), event(N3, Fault.FLUSH, 2.6)]
    ops = [save(1, 10, N1, N2), save(2, 11, N2, N3), read(3, 10, served_by=N1)]
    assert [Verdict.UNPROVED_STALE] == verdicts(ops, *events)


def test_data_after_a_destroy_whose_tombstone_survives_is_resurrected() -> None:
    """A tombstone still on n2, and the data served: resurrected."""
    ops = [save(1, 10, N1, N2), destroy(2, N1, N2), read(3, 10, served_by=N3)]
    assert [Verdict.RESURRECTED] == verdicts(ops, event(N1, Fault.FLUSH, 2.5))


def test_data_from_a_node_reachable_at_the_destroy_is_resurrected() -> None:
    """Both tombstones flushed, but the copy came from n3, up throughout: resurrected."""
    events = [event(N1, Fault.FLUSH, 2.5), event(N2, Fault.FLUSH, 2.6)]
    ops = [save(1, 10, N1, N2), destroy(5, N1, N2), read(6, 10, served_by=N3)]
    assert [Verdict.RESURRECTED] == verdicts(ops, *events)


def test_data_from_a_node_hung_at_the_destroy_is_unproved() -> None:
    """The copy's node was paused during the destroy: no destroy could reach it."""
    events = [
        event(N3, Fault.PAUSE, 4),
        event(N3, Fault.RESUME, 5.5),
        event(N1, Fault.FLUSH, 6),
        event(N2, Fault.FLUSH, 6),
    ]
    ops = [save(1, 10, N1, N2), destroy(5, N1, N2), read(7, 10, served_by=N3)]
    assert [Verdict.UNPROVED_RESURRECTED] == verdicts(ops, *events)


def test_a_node_back_for_less_than_the_grace_is_not_counted_reachable() -> None:
    """n3 came back 1 s before the destroy (grace 2 s): not proved."""
    events = [
        event(N3, Fault.KILL, 1),
        event(N3, Fault.START, 4),
        event(N1, Fault.FLUSH, 6),
        event(N2, Fault.FLUSH, 6),
    ]
    ops = [save(0, 10, N1, N2), destroy(5, N1, N2), read(7, 10, served_by=N3)]
    assert [Verdict.UNPROVED_RESURRECTED] == verdicts(ops, *events)


def test_an_empty_read_after_a_destroy_is_fine() -> None:
    """Destroyed and then empty: as it should be."""
    assert [] == verdicts([save(1, 10, N1, N2), destroy(2, N1, N2), read(3, None)])


def test_an_undocumented_exception_is_unexpected() -> None:
    """A call that raised something other than PolicyViolation/SessionUnavailable."""
    ops = [save(1, 10, N1), op(Kind.READ, 2, ERROR, detail="KeyError: 'x'")]
    assert [Verdict.UNEXPECTED] == verdicts(ops)


def test_a_value_never_written_is_unexpected() -> None:
    """A read of data that no save of this session wrote."""
    assert [Verdict.UNEXPECTED] == verdicts([save(1, 10, N1), read(2, 99)])


def test_refused_reads_are_counted_by_outcome_not_judged() -> None:
    """A clean refusal (a 503) is neither lost nor stale."""
    ops = [
        save(1, 10, N1, N2),
        op(Kind.READ, 2, FAIL, detail="partial_miss"),
        op(Kind.READ, 3, FAIL, detail="partial_miss"),
    ]
    report = check(ops, Timeline(()))
    assert ([], {"partial_miss": 2}) == (list(report.findings), dict(report.refused))


def test_sessions_are_judged_apart() -> None:
    """A destroy of one session says nothing about another."""
    ops = [
        op(Kind.SAVE, 1, OK, 10, [N1], sid="a"),
        op(Kind.SAVE, 1, OK, 20, [N1], sid="b"),
        op(Kind.DESTROY, 2, OK, None, [N1], sid="a"),
        op(Kind.READ, 3, OK, 20, (), N1, sid="b"),
    ]
    assert [] == verdicts(ops)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0.0, 0.9, True), (0.5, 1.5, False), (2.5, 3.5, False), (4.1, 9.0, True)],
)
def test_a_node_is_unreachable_from_the_fault_until_it_is_back(
    start: float, end: float, expected: bool
) -> None:
    """Killed at 1, started again at 4 (both taking 0.01 s)."""
    timeline = Timeline((event(N1, Fault.KILL, 1), event(N1, Fault.START, 4)))
    assert expected == timeline.up_throughout(N1, start, end)


def test_a_node_never_brought_back_stays_unreachable() -> None:
    """Paused and never resumed: unreachable to the end."""
    timeline = Timeline((event(N1, Fault.PAUSE, 1),))
    assert (True, False) == (timeline.up_throughout(N1, 0, 0.5), timeline.up_throughout(N1, 50, 60))


def test_recovery_is_the_time_reads_stay_refused_after_every_node_is_back() -> None:
    """n1 back at 2.01; reads refused until 2.51, then served: 0.5 s."""
    timeline = Timeline((event(N1, Fault.KILL, 1), event(N1, Fault.START, 2)))
    ops = [
        op(Kind.READ, 1.5, FAIL, detail="unavailable"),
        op(Kind.READ, 2.2, FAIL, detail="unavailable"),
        op(Kind.READ, 2.5, FAIL, detail="unavailable"),
        read(2.6, None),
    ]
    (window,) = recoveries(ops, timeline, [N1, N2])
    assert (2, pytest.approx(0.5)) == (window.refused, window.seconds)


def test_a_read_still_running_when_the_next_fault_begins_is_not_recovery() -> None:
    """n1 back at 2.01 and killed again at 5: a read begun at 4.995 and refused at 5.5
    (the kill under it) belongs to the fault; recovery ended with the refusal at 2.2."""
    timeline = Timeline(
        (event(N1, Fault.KILL, 1), event(N1, Fault.START, 2), event(N1, Fault.KILL, 5))
    )
    caught = Op("A", 0, "s1", Kind.READ, FAIL, 4.995, 5.5, detail="unavailable")
    ops = [op(Kind.READ, 2.2, FAIL, detail="unavailable"), read(3.0, None), caught]
    (window, *_) = recoveries(ops, timeline, [N1, N2])
    assert (1, pytest.approx(0.2)) == (window.refused, window.seconds)


def test_a_copy_repaired_onto_a_flushed_node_after_the_destroy_is_unproved() -> None:
    """n3 was reachable at the destroy but flushed since: its copy came later, by repair."""
    events = [
        event(N1, Fault.FLUSH, 6),
        event(N2, Fault.FLUSH, 6),
        event(N3, Fault.FLUSH, 6.5),
    ]
    ops = [save(1, 10, N1, N2), destroy(5, N1, N2), read(7, 10, served_by=N3)]
    assert [Verdict.UNPROVED_RESURRECTED] == verdicts(ops, *events)


def test_a_reproduction_shows_the_acknowledged_save_the_faults_and_one_refusal_per_run() -> None:
    """The story of a lost read: its save, the fault, the first and last refusal, the read."""
    refusals = [op(Kind.READ, 3 + i / 10, FAIL, detail="possibly_stale") for i in range(20)]
    ops = [save(1, 10, N1, N2), *refusals, read(6, None)]
    events = [event(N1, Fault.KILL, 2), event(N2, Fault.PAUSE, 5)]
    report = check(ops, Timeline(tuple(events)))
    (finding,) = report.findings
    lines = finding.reproduction(events, 0.0)
    assert [
        "lost: v=10 still on n2",
        "[   1.000-   1.010] A/w0 save v=10: ok acked by ['n1', 'n2']",
        "[   2.000-   2.010] nemesis kill n1",
        "[   3.000-   3.010] A/w0 read: fail (possibly_stale)",
        "[   4.900-   4.910] A/w0 read: fail (possibly_stale)",
        "[   5.000-   5.010] nemesis pause n2",
        "[   6.000-   6.010] A/w0 read -> new session: ok",
    ] == lines


def refused(at: float, *replies: tuple[str, str], took: float = 0.01, process: str = "A") -> Op:
    """A read refused as partial_miss after the nodes' ``(node, status)`` replies."""
    said = tuple(Reply(node, "get", status, took) for node, status in replies)
    return Op(process, 0, "s1", Kind.READ, FAIL, at, at + took, None, frozenset(), None, "x", said)


def test_a_read_refused_because_a_running_node_timed_out_is_counted_apart() -> None:
    """n1 back at 2.01; a read begun at 2.5 waits 0.5 s on n2 (up all along) and is
    refused: the machine was slow, not the store; its recovery stays 0.09 s."""
    timeline = Timeline((event(N1, Fault.KILL, 1), event(N1, Fault.START, 2)))
    ops = [
        refused(2.09, (N1, "skipped"), (N2, "hit")),
        refused(2.5, (N1, "miss"), (N2, "timeout"), took=0.5),
        read(3.5, None),
    ]
    (window,) = recoveries(ops, timeline, [N1, N2])
    expected = (1, pytest.approx(0.09), 1, pytest.approx(0.99))
    assert expected == (window.refused, window.seconds, window.timed_out, window.waited)


def test_a_read_refused_with_a_node_skipped_is_the_store_even_if_another_timed_out() -> None:
    """A breaker still open on n1 after all-back: the store refused, whatever n2 did."""
    timeline = Timeline((event(N1, Fault.KILL, 1), event(N1, Fault.START, 2)))
    ops = [refused(2.5, (N1, "skipped"), (N2, "timeout"), took=0.5), read(3.5, None)]
    (window,) = recoveries(ops, timeline, [N1, N2])
    assert (1, pytest.approx(0.99), 0) == (window.refused, window.seconds, window.timed_out)


def test_a_read_refused_with_no_node_failing_is_the_store() -> None:
    """Every node answered and the read was still refused: the store's own decision."""
    timeline = Timeline((event(N1, Fault.KILL, 1), event(N1, Fault.START, 2)))
    ops = [refused(2.3, (N1, "miss"), (N2, "hit")), read(3.5, None)]
    (window,) = recoveries(ops, timeline, [N1, N2])
    assert (1, 0) == (window.refused, window.timed_out)


def test_a_breaker_opened_by_timeouts_on_a_running_node_is_the_machine_not_the_store() -> None:
    """After all-back, process A's reads time out on n2 (running): A's later skips of n2
    count as waiting on a timeout; process B skipping n2 (no timeout seen) is the store."""
    timeline = Timeline((event(N1, Fault.KILL, 1), event(N1, Fault.START, 2)))
    ops = [
        refused(2.1, (N1, "miss"), (N2, "timeout"), took=0.5),
        refused(2.7, (N1, "miss"), (N2, "skipped")),
        refused(2.8, (N1, "miss"), (N2, "skipped"), process="B"),
        read(3.5, None),
    ]
    (window,) = recoveries(ops, timeline, [N1, N2])
    expected = (1, pytest.approx(0.8), 2, pytest.approx(0.7))
    assert expected == (window.refused, window.seconds, window.timed_out, window.waited)


def test_a_breaker_a_returned_node_left_its_probe_unanswered_is_the_machine() -> None:
    """n1 resumes at 2.01 while A's probe of it (sent at 1.8) waits; the probe times out
    at 2.3 all the same (the node did not answer in the time left) and the next, sent
    at once, is answered at 2.35: A's reads skipping n1 until then waited on the node;
    B's skip of n1 after its probe was answered is the store's."""
    events = (event(N1, Fault.PAUSE, 1), event(N1, Fault.RESUME, 2))
    probes = (
        Probe("A", N1, 1.8, 1.8, 2.3, "timeout"),
        Probe("A", N1, 2.3, 2.3, 2.35, "ok"),
        Probe("B", N1, 1.9, 1.9, 2.02, "ok"),
    )
    ops = [
        refused(2.1, (N1, "skipped"), (N2, "hit")),
        refused(2.32, (N1, "skipped"), (N2, "hit")),
        refused(2.04, (N1, "skipped"), (N2, "hit"), process="B"),
        read(3.5, None),
    ]
    timeline = Timeline(events)
    (window,) = recoveries(ops, timeline, [N1, N2], held_open(events, probes))
    expected = (1, pytest.approx(0.04), 2, pytest.approx(0.32))
    assert expected == (window.refused, window.seconds, window.timed_out, window.waited)


def test_a_breaker_held_open_by_a_probe_a_running_node_answered_late_is_the_machine() -> None:
    """n1 back at 2.01; A's first probe after it, sent at 2.1, is answered only at 2.4
    (the node was slow): A's reads skipping n1 meanwhile waited on it; the read
    skipping n1 before that probe was sent is the store's (its backoff)."""
    events = (event(N1, Fault.KILL, 1), event(N1, Fault.START, 2))
    probes = (Probe("A", N1, 1.9, 1.9, 1.91, "refused"), Probe("A", N1, 2.1, 2.1, 2.4, "ok"))
    ops = [
        refused(2.05, (N1, "skipped"), (N2, "hit")),
        refused(2.2, (N1, "skipped"), (N2, "hit")),
        refused(2.35, (N1, "skipped"), (N2, "hit")),
        read(3.5, None),
    ]
    (window,) = recoveries(ops, Timeline(events), [N1, N2], held_open(events, probes))
    expected = (1, pytest.approx(0.05), 2, pytest.approx(0.35))
    assert expected == (window.refused, window.seconds, window.timed_out, window.waited)
