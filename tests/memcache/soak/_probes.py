"""Each store's breaker probes, recorded beside the ops: when a node's breaker let a
probe through, when it was sent and what came back. A slow all-back window is the
time a prober took to find the nodes back; the probes show where that time went."""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from errpolicy_memcache import MemcacheSessionStore

from ._history import Fault, NodeEvent, Probe, Recorder, Timeline

Run = Callable[[Sequence[tuple[Any, Sequence[Any]]]], list[Any]]


def watch(store: MemcacheSessionStore, process: str, recorder: Recorder) -> None:
    """Record every probe ``store``'s prober makes, as ``process``.

    The prober is the store's own (a private attribute: the soak is a test of this
    package). Its claim (the breakers' ``probe()``) and its one-node round are wrapped;
    what they decide and send is unchanged.
    """
    prober = store._prober  # the soak observes the store's own prober
    claim: Callable[[], list[Any]] = prober.claim
    run: Run = prober._execute  # the round the prober sends its probe with
    # Each node's claims not yet sent, oldest first: a node may have two probes in
    # flight, and each is sent by its own thread just after its claim.
    claimed: dict[str, list[float]] = {}
    lock = threading.Lock()

    def claiming() -> list[Any]:
        due = claim()
        now = time.monotonic()
        with lock:
            for probe in due:
                claimed.setdefault(probe.node.address, []).append(now)
        return due

    def probing(plan: Sequence[tuple[Any, Sequence[Any]]]) -> list[Any]:
        start = time.monotonic()
        with lock:
            waiting = claimed.get(plan[0][0].address)
            at = waiting.pop(0) if waiting else start
        replies = run(plan)
        end = time.monotonic()
        for reply in replies:
            address = reply.node.address
            status = "ok" if reply.failure is None else reply.failure.kind
            recorder.probe(Probe(process, address, at, start, end, status))
        return replies

    prober.claim = claiming  # type: ignore[method-assign]  # an instance's own hook
    prober._execute = probing


AWAY = 1.0  # seconds before a return from which a probe shows the node being probed


@dataclass(frozen=True, slots=True)
class Found:
    """``process``'s prober found ``node`` back: the node was back (started or resumed)
    at ``back``, and the first probe it answered ended ``seconds`` later."""

    process: str
    node: str
    back: float
    seconds: float


def found_back(events: Iterable[NodeEvent], probes: Iterable[Probe]) -> list[Found]:
    """For each node's return and each process that probed the node around it (a probe
    that ended from a second before the return began until the node next went down),
    when that process's prober found it back: its first answered probe, 0 if that
    came before the return was recorded as done; slowest first. A process with no
    probe then is left out (its breaker stayed closed: nothing to find)."""
    by_node: dict[tuple[str, str], list[Probe]] = {}
    for probe in sorted(probes, key=lambda p: p.end):
        by_node.setdefault((probe.process, probe.node), []).append(probe)
    ordered = sorted(events, key=lambda e: e.start)
    found: list[Found] = []
    for index, event in enumerate(ordered):
        if event.fault not in (Fault.START, Fault.RESUME):
            continue
        down = next(
            (
                later.start
                for later in ordered[index + 1 :]
                if later.node == event.node and later.fault in (Fault.KILL, Fault.PAUSE)
            ),
            math.inf,
        )
        for (process, node), kept in by_node.items():
            if node != event.node:
                continue
            ends = [p.end for p in kept]
            near = bisect.bisect_left(ends, event.start - AWAY)
            if near == len(kept) or kept[near].end >= down:
                continue  # not probing around the return: its breaker stayed closed
            back = bisect.bisect_left(ends, event.start)
            first = next((p for p in kept[back:] if p.status == "ok"), None)
            if first is not None and first.end < down:
                seconds = max(0.0, first.end - event.end)
                found.append(Found(process, node, event.end, seconds))
    return sorted(found, key=lambda f: -f.seconds)


def unanswered(events: Iterable[NodeEvent], probes: Iterable[Probe]) -> list[Probe]:
    """The probes that timed out although their node was back (started or resumed)
    before they ended: sent while the node was down or hung, they were not answered in
    the time left once it ran again (a node starved of CPU on a busy machine, say). The
    prober sends a second probe beside such a probe a backoff after it began, so one
    holds a node's breaker open past the node's return only while the second is late
    too."""
    backs: dict[str, list[float]] = {}
    for event in events:
        if event.fault in (Fault.START, Fault.RESUME):
            backs.setdefault(event.node, []).append(event.end)
    for found in backs.values():
        found.sort()
    late: list[Probe] = []
    for probe in probes:
        if probe.status != "timeout":
            continue
        times = backs.get(probe.node, [])
        at = bisect.bisect_left(times, probe.start)
        if at < len(times) and times[at] < probe.end:
            late.append(probe)
    return sorted(late, key=lambda p: p.start)


def held_open(
    events: Iterable[NodeEvent], probes: Iterable[Probe]
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """For each ``(process, node)``, the spans in which a probe of a node that was
    running kept its breaker open: a probe that ended while its node was up (back
    before it ended, or up all along) waited on that node from its start until it was
    answered, or, if it timed out, until the same process's next probe of the node was
    answered (sent beside it a backoff after it began, or as it ended)."""
    timeline = Timeline(tuple(events))
    by_node: dict[tuple[str, str], list[Probe]] = {}
    for probe in sorted(probes, key=lambda p: p.start):
        by_node.setdefault((probe.process, probe.node), []).append(probe)
    spans: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (process, node), kept in by_node.items():
        for index, probe in enumerate(kept):
            if not timeline.up_throughout(node, probe.end, probe.end):
                continue  # the node was away when the probe ended: nothing waited on it
            end = probe.end
            if probe.status != "ok":
                after = kept[index + 1] if index + 1 < len(kept) else None
                if after is not None and after.status == "ok":
                    end = after.end
            spans.setdefault((process, node), []).append((probe.start, end))
    return spans
