"""Recovery: after every node is back, how long reads go on being refused."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from errpolicy_memcache import NodeStatus

from ._history import Fault, Kind, Op, Status, Timeline

_FAULTS = (Fault.KILL, Fault.PAUSE, Fault.FLUSH)


@dataclass(frozen=True, slots=True)
class Recovery:
    """A quiet window: every node up from ``back`` until ``until`` (the next fault, or
    the end of the run). ``last_refusal`` is when the last read the store refused in the
    window ended (None: none was); ``refused`` counts them. A read counts if it began at
    or after ``back`` and ended before ``until``: one still running when the next fault
    began may have been refused because of it (a node killed under it, or a hang that
    timed it out), which says nothing about recovery.

    A refused read that :func:`waited` on a node that was up is counted apart
    (``timed_out``, ending at ``last_timeout``): the store asked every node it could,
    and one that was running did not answer within the timeout (or its breaker opened
    on such timeouts), which on a loaded machine says how busy the machine was, not
    how fast the store recovers.
    """

    back: float
    until: float
    last_refusal: float | None
    refused: int
    last_timeout: float | None = None
    timed_out: int = 0

    @property
    def seconds(self) -> float:
        """Time from every node being back to the end of the last read the store refused."""
        return 0.0 if self.last_refusal is None else self.last_refusal - self.back

    @property
    def waited(self) -> float:
        """Time from every node being back to the end of the last read refused because a
        running node timed out (0.0: none was)."""
        return 0.0 if self.last_timeout is None else self.last_timeout - self.back


Held = Mapping[tuple[str, str], Sequence[tuple[float, float]]]


def waited(
    read: Op,
    timeline: Timeline,
    slow: Set[tuple[str, str]] = frozenset(),
    held: Held | None = None,
) -> bool:
    """True if the refused ``read`` was refused only because a running node did not
    answer in time: every node that failed either timed out while it was up throughout
    the read, or was skipped by a breaker that opened on such a timeout (``slow``: the
    ``(process, node)`` pairs whose reads saw a running node time out earlier in the
    window), or that a probe kept open (``held``: for each ``(process, node)``, the
    spans from the start of a probe that timed out although the node was back before
    it ended, until that process's next probe of it was answered). A node skipped for
    any other reason, or failing otherwise, makes it the store's refusal; so does a
    refusal with no node failing."""
    failed = [reply for reply in read.replies if NodeStatus(reply.status).failed]
    return bool(failed) and all(
        (
            reply.status == NodeStatus.TIMEOUT
            and timeline.up_throughout(reply.node, read.start, read.end)
        )
        or (
            reply.status == NodeStatus.SKIPPED
            and (
                (read.process, reply.node) in slow
                or _held(held, read.process, reply.node, read.start)
            )
        )
        for reply in failed
    )


def _held(held: Held | None, process: str, node: str, at: float) -> bool:
    """True if a probe that a running node did not answer kept ``node``'s breaker in
    ``process`` open at ``at``."""
    if not held:
        return False
    return any(start <= at <= end for start, end in held.get((process, node), ()))


def _split(
    reads: Sequence[Op], timeline: Timeline, held: Held | None = None
) -> tuple[list[Op], list[Op]]:
    """The refused ``reads`` of one window (sorted by start): those the store refused,
    and those that :func:`waited` on a running node's timeout."""
    timeouts = sorted(
        (op.end, op.process, reply.node)
        for op in reads
        for reply in op.replies
        if reply.status == NodeStatus.TIMEOUT
        and timeline.up_throughout(reply.node, op.start, op.end)
    )
    slow: set[tuple[str, str]] = set()
    seen = 0
    refused: list[Op] = []
    timed_out: list[Op] = []
    for op in reads:
        while seen < len(timeouts) and timeouts[seen][0] <= op.start:
            slow.add(timeouts[seen][1:])
            seen += 1
        if op.status is Status.FAIL:
            (timed_out if waited(op, timeline, slow, held) else refused).append(op)
    return refused, timed_out


def recoveries(
    ops: Iterable[Op], timeline: Timeline, nodes: Sequence[str], held: Held | None = None
) -> list[Recovery]:
    """One :class:`Recovery` per moment at which the last unreachable node came back;
    ``held``: the spans in which a probe a running node did not answer kept a breaker
    open (see :func:`waited`)."""
    events = sorted(timeline.events, key=lambda e: e.end)
    reads = sorted((op for op in ops if op.kind is Kind.READ), key=lambda op: op.start)
    windows: list[Recovery] = []
    for event in events:
        if event.fault not in (Fault.START, Fault.RESUME):
            continue
        back = event.end
        moment = back + 1e-6  # just after the node's own down span
        if not all(timeline.up_throughout(node, moment, moment) for node in nodes):
            continue
        until = min(
            (e.start for e in events if e.fault in _FAULTS and e.start > back),
            default=float("inf"),
        )
        if until == float("inf"):
            until = max((op.end for op in reads), default=back)
        inside = [op for op in reads if back <= op.start and op.end < until]
        refused, timed_out = _split(inside, timeline, held)
        windows.append(
            Recovery(
                back,
                until,
                max((op.end for op in refused), default=None),
                len(refused),
                max((op.end for op in timed_out), default=None),
                len(timed_out),
            )
        )
    return windows


def slowest(windows: Sequence[Recovery]) -> Recovery | None:
    """The window with the longest recovery."""
    return max(windows, key=lambda w: w.seconds, default=None)


def median(windows: Sequence[Recovery]) -> float | None:
    """The median recovery over the windows (None: there was none)."""
    if not windows:
        return None
    times = sorted(w.seconds for w in windows)
    middle = len(times) // 2
    return times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2
