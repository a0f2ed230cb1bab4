"""The history checker: every read against the acknowledged writes and destroys before it.

Each session id is used by one worker at a time, so its operations form a sequence and
the expected state before each read is known exactly, except for writes whose outcome is
``unknown`` (they may have landed, now or later): the checker allows those either way.
A read is a violation only when the history proves it (see docs/memcache/soak.md):

- **lost**: a new, empty session, although the last acknowledged write was a save, no
  destroy may have happened since, and a node that acknowledged that save kept its
  memory (not killed, restarted, flushed nor evicting) from the save until the read;
- **stale**: data older than the last acknowledged save, while a node that acknowledged
  that save kept its memory until the read;
- **resurrected**: data after an acknowledged destroy, while a node that acknowledged
  the tombstone kept its memory until the read, or the copy came from a node that had
  been up for ``grace`` seconds before the destroy, stayed up during it and kept its
  memory until the read (a destroy can reach every copy on a reachable node, and a
  copy repaired there later would have met the tombstone);
- **unexpected**: an exception other than the documented ``PolicyViolation`` /
  ``SessionUnavailable``, or a read of data the workload never wrote.

Reads that break the model but are not proved (every holder lost its memory) are
counted apart, as ``unproved``, with the allowed loss of an evicted or restarted session.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._history import Kind, NodeEvent, Op, Status, Timeline, by_session, describe_all

GRACE = 2.0  # seconds a returned node must be up before it counts as reachable


class Verdict(enum.Enum):
    """The class of a read the model does not allow."""

    LOST = "lost"
    STALE = "stale"
    RESURRECTED = "resurrected"
    UNEXPECTED = "unexpected"
    # Not violations: the model is broken but the history does not prove the store wrong.
    UNPROVED_STALE = "unproved stale"
    UNPROVED_RESURRECTED = "unproved resurrected"
    ALLOWED_LOSS = "allowed loss"


VIOLATIONS = (Verdict.LOST, Verdict.STALE, Verdict.RESURRECTED, Verdict.UNEXPECTED)


@dataclass(frozen=True, slots=True)
class Finding:
    """One read (or failed call) judged ``verdict``, with the session's history before it."""

    verdict: Verdict
    op: Op
    reason: str
    before: tuple[Op, ...] = ()

    def reproduction(self, events: Sequence[NodeEvent], t0: float) -> list[str]:
        """The session's operations up to this one, merged with the faults that overlap
        them: a minimal story of the violation."""
        ops = (*_relevant(self.before), self.op)
        start = ops[0].start
        faults = [e for e in events if e.end >= start - GRACE and e.start <= self.op.end]
        return [f"{self.verdict.value}: {self.reason}", *describe_all([*ops, *faults], t0)]


def _relevant(before: Sequence[Op]) -> Sequence[Op]:
    """The ops from a little before the write before the last acknowledged one: what the
    read is judged on, and where an older copy may come from."""
    acked = [
        i for i, op in enumerate(before) if op.kind is not Kind.READ and op.status is Status.OK
    ]
    first = len(before) - 12
    if acked:
        first = min(first, acked[-2 if len(acked) >= 2 else -1] - 3)
    kept = before[max(first, 0) :]
    # A run of refused reads says one thing: keep its first and last.
    return [
        op
        for i, op in enumerate(kept)
        if not _refused(op)
        or not (0 < i < len(kept) - 1)
        or not (_refused(kept[i - 1]) and _refused(kept[i + 1]))
    ]


def _refused(op: Op) -> bool:
    return op.kind is Kind.READ and op.status is Status.FAIL


@dataclass(frozen=True, slots=True)
class Report:
    """What the checker found in one history."""

    findings: tuple[Finding, ...]
    reads: int
    writes: int
    refused: Counter[str] = field(default_factory=Counter)
    unknown_writes: int = 0
    ghost_reads: int = 0

    def count(self, verdict: Verdict) -> int:
        """How many findings have ``verdict``."""
        return sum(1 for finding in self.findings if finding.verdict is verdict)

    def violations(self) -> dict[str, int]:
        """The four counts the soak asserts to be 0."""
        return {verdict.value: self.count(verdict) for verdict in VIOLATIONS}


@dataclass(slots=True)
class _State:
    """What a session may hold: the last acknowledged write and the unknown ones after."""

    last_ok: Op | None = None
    destroyed: Op | None = None  # the first acknowledged destroy
    unknown_after: list[Op] = field(default_factory=list)
    written: dict[int, Op] = field(default_factory=dict)


def check(ops: Iterable[Op], timeline: Timeline, *, grace: float = GRACE) -> Report:
    """Judge every read in ``ops`` against the writes before it on the same session."""
    findings: list[Finding] = []
    reads = writes = unknown = ghosts = 0
    refused: Counter[str] = Counter()
    all_ops = list(ops)
    for op in all_ops:
        if op.status is Status.ERROR:
            findings.append(Finding(Verdict.UNEXPECTED, op, op.detail))
    for session_ops in by_session(all_ops).values():
        state = _State()
        for index, op in enumerate(session_ops):
            if op.kind is Kind.READ:
                reads += 1
                if op.status is Status.FAIL:
                    refused[op.detail] += 1
                elif op.status is Status.OK:
                    verdict = _judge(op, state, timeline, grace)
                    if verdict is not None:
                        findings.append(
                            Finding(verdict[0], op, verdict[1], tuple(session_ops[:index]))
                        )
                    elif op.value is not None and _is_ghost(op.value, state):
                        ghosts += 1
                continue
            writes += 1
            _apply(op, state)
            if op.status is not Status.OK:
                unknown += 1
    return Report(tuple(findings), reads, writes, refused, unknown, ghosts)


def _apply(op: Op, state: _State) -> None:
    if op.kind is Kind.SAVE and op.value is not None:
        state.written[op.value] = op
    if op.status is Status.OK:
        state.last_ok = op
        state.unknown_after = []
        if op.kind is Kind.DESTROY and state.destroyed is None:
            state.destroyed = op
    else:
        state.unknown_after.append(op)


def _is_ghost(value: int, state: _State) -> bool:
    """True if ``value`` was written by a save the store reported as failed."""
    origin = state.written.get(value)
    return origin is not None and origin.status is not Status.OK


def _kept(write: Op, read: Op, timeline: Timeline) -> str | None:
    """A node that acknowledged ``write`` and surely kept it until ``read`` ended."""
    for node in sorted(write.nodes):
        if timeline.kept(node, write.start, read.end):
            return node
    return None


def _judge(read: Op, state: _State, timeline: Timeline, grace: float) -> tuple[Verdict, str] | None:
    """The verdict on one successful read, or None if the model allows it."""
    value = read.value
    if value is not None and value not in state.written:
        return Verdict.UNEXPECTED, f"read v={value}, which no save of this session wrote"
    destroyed = state.destroyed
    if destroyed is not None:
        if value is None:
            return None
        holder = _kept(destroyed, read, timeline)
        if holder is not None:
            return Verdict.RESURRECTED, f"tombstone still on {holder}"
        served = read.served_by
        if (
            served is not None
            and timeline.up_throughout(served, destroyed.start - grace, destroyed.end)
            and timeline.kept(served, destroyed.start, read.end)
        ):
            return Verdict.RESURRECTED, f"the copy came from {served}, reachable at the destroy"
        return Verdict.UNPROVED_RESURRECTED, "every tombstone holder lost its memory"
    maybe = {op.value for op in state.unknown_after if op.kind is Kind.SAVE}
    maybe_destroyed = any(op.kind is Kind.DESTROY for op in state.unknown_after)
    last = state.last_ok
    if last is None or last.kind is not Kind.SAVE or last.value is None:
        return None  # nothing acknowledged yet: empty or any unknown write is fine
    if value is None:
        if maybe_destroyed:
            return None
        holder = _kept(last, read, timeline)
        if holder is not None:
            return Verdict.LOST, f"v={last.value} still on {holder}"
        return Verdict.ALLOWED_LOSS, f"every holder of v={last.value} lost its memory"
    if value == last.value or value in maybe:
        return None
    holder = _kept(last, read, timeline)
    if holder is not None:
        return Verdict.STALE, f"served v={value}, but v={last.value} still on {holder}"
    return Verdict.UNPROVED_STALE, f"served v={value}; every holder of v={last.value} lost it"
