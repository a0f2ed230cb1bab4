"""What a store counts while it works: outcomes per operation, results per node, latency.

Every operation pays a lock and a few dict increments here (well under a microsecond);
:meth:`StoreMetrics.snapshot` copies the counts into a frozen :class:`StoreStats`, which
``store.stats()`` returns and the Prometheus collector reads at scrape time.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat, starmap
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._outcome import NodeStatus, OutcomeKind

if TYPE_CHECKING:
    from ._breaker import BreakerState
    from ._node import Node

__all__ = ["LATENCY_BUCKETS", "Histogram", "StoreMetrics", "StoreStats"]

#: Upper bounds (seconds) of the latency histogram's buckets; the last bucket is +Inf.
#: From a healthy loopback read (50 µs) to the default operation timeout (3 s).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_B0, _B1, _B2, _B3 = LATENCY_BUCKETS[:4]
_OK = OutcomeKind.OK
_HIT = NodeStatus.HIT
_START = "session.start"
_STORED = NodeStatus.STORED
_SAVE = "session.save"
_TALLIES_MAX = 4096
#: How many seconds a :class:`Tally` holds before its counter folds them.
FOLD_AT = 256
_TallyKey = tuple[
    tuple[str, OutcomeKind], tuple[tuple[str, OutcomeKind], ...], tuple[tuple[str, NodeStatus], ...]
]


@dataclass(frozen=True, slots=True)
class Histogram:
    """Latencies of one operation: ``counts[i]`` operations took at most ``bounds[i]``
    seconds and more than ``bounds[i - 1]``; ``counts[-1]`` took longer than the last
    bound. ``total`` is the sum of the seconds, ``count`` the number of operations."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, operations at most that long)`` pairs, +Inf last (Prometheus'
        form)."""
        running = 0
        pairs = []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            pairs.append((bound, running))
        return pairs


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A store's counts since it was built (``store.stats()``).

    ``outcomes[(operation, kind)]``: logical operations by outcome kind (the decisive
    one: a read that failed over and repaired a copy counts as ``repaired``).
    ``flags[(operation, kind)]``: logical operations that carried each flag, whatever
    their decisive kind (one operation can carry several: ``failover`` and
    ``repaired``); count failovers here.
    ``node_results[(node, status)]``: each node's answers by :class:`NodeStatus`.
    ``breakers[node]``: each node's :class:`BreakerState` now.
    ``latency[operation]``: a :class:`Histogram` of the operation's time.
    """

    outcomes: Mapping[tuple[str, OutcomeKind], int]
    flags: Mapping[tuple[str, OutcomeKind], int]
    node_results: Mapping[tuple[str, NodeStatus], int]
    breakers: Mapping[str, BreakerState]
    latency: Mapping[str, Histogram]

    def count(self, operation: str | None = None, kind: OutcomeKind | None = None) -> int:
        """Operations counted, of one operation and/or one kind when given."""
        return sum(
            n
            for (op, k), n in self.outcomes.items()
            if (operation is None or op == operation) and (kind is None or k is kind)
        )

    def flagged(self, operation: str | None = None, flag: OutcomeKind | None = None) -> int:
        """Operations that carried ``flag`` (any flag when None), of one operation when
        given; an operation with two flags counts once for each."""
        return sum(
            n
            for (op, k), n in self.flags.items()
            if (operation is None or op == operation) and (flag is None or k is flag)
        )


class Tally(deque[float]):
    """The operations of one set of counter keys (:meth:`StoreMetrics.tally`): each
    appends its seconds (``deque.append``: one C call, atomic, no lock), and the
    metrics fold them into ``counts`` (one per latency bucket) and ``total`` under
    their lock, when ``FOLD_AT`` wait and at each snapshot. A failover read counts
    here on every request."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        super().__init__()
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0


def _fold(tally: Tally) -> None:
    """Move ``tally``'s seconds into its counts (the caller holds the metrics' lock:
    every second popped is counted once, whatever thread appends meanwhile). The
    seconds are popped and sorted in C, and each bucket counted by one bisection: a
    Python step per bucket, not per operation."""
    n = len(tally)
    if not n:
        return
    seconds = sorted(starmap(tally.popleft, repeat((), n)))
    counts = tally.counts
    below = 0
    for i, bound in enumerate(LATENCY_BUCKETS):  # bucket i: above bound i-1, up to bound i
        upto = bisect_right(seconds, bound, below)
        counts[i] += upto - below
        below = upto
    counts[-1] += n - below
    tally.total += sum(seconds)


class StoreMetrics:
    """The live counters of one store; every thread of the process adds to them."""

    __slots__ = (
        "_flags",
        "_hit_buckets",
        "_hit_nodes",
        "_hit_total",
        "_hits",
        "_latency",
        "_lock",
        "_nodes",
        "_outcomes",
        "_save_buckets",
        "_save_homes",
        "_save_total",
        "_tallies",
        "_totals",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[tuple[str, OutcomeKind], int] = {}
        self._flags: dict[tuple[str, OutcomeKind], int] = {}
        self._nodes: dict[tuple[str, NodeStatus], int] = {}
        self._latency: dict[str, list[int]] = {}
        self._totals: dict[str, float] = {}
        # The fast path's own counters (merged by snapshot): fewer and cheaper steps.
        self._hits = 0
        self._hit_total = 0.0
        self._hit_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._hit_nodes: dict[Node, int] = {}
        # The usual save's own counters (merged by snapshot), as the fast read's; the
        # buckets' sum is the count.
        self._save_total = 0.0
        self._save_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._save_homes: dict[frozenset[str], int] = {}
        # Tallies of operations counted by their keys made beforehand (:meth:`tally`):
        # ``[seconds, *buckets]`` per ``(outcome, flags, results)`` keys, merged by
        # snapshot; bounded (a new pattern past the limit is counted by ``counted``).
        self._tallies: dict[_TallyKey, Tally] = {}

    def record(
        self,
        operation: str,
        kind: OutcomeKind,
        results: Iterable[Sequence[Any]],
        elapsed: float,
        flags: Iterable[OutcomeKind] = (),
    ) -> None:
        """Count one operation: its kind, its flags, each ``(node, command, status,
        ...)`` result, and its time in seconds."""
        bucket = bisect_left(LATENCY_BUCKETS, elapsed)
        with self._lock:
            key = (operation, kind)
            self._outcomes[key] = self._outcomes.get(key, 0) + 1
            counted = self._flags
            for flag in flags:
                flag_key = (operation, flag)
                counted[flag_key] = counted.get(flag_key, 0) + 1
            nodes = self._nodes
            for result in results:
                node_key = (result[0], result[2])
                nodes[node_key] = nodes.get(node_key, 0) + 1
            counts = self._latency.get(operation)  # _add_latency, inline: every report
            if counts is None:
                self._add_latency(operation, bucket, elapsed)
            else:
                counts[bucket] += 1
                self._totals[operation] += elapsed

    def hit(self, home: Sequence[Node], elapsed: float) -> None:
        """Count a ``start()`` served by its home nodes at once (the store's fast path,
        which builds no outcome)."""
        bucket = bisect_left(LATENCY_BUCKETS, elapsed)
        with self._lock:
            self._hits += 1
            self._hit_total += elapsed
            self._hit_buckets[bucket] += 1
            nodes = self._hit_nodes
            for node in home:
                nodes[node] = nodes.get(node, 0) + 1

    def saved(self, homes: frozenset[str], elapsed: float) -> None:
        """Count a ``save()`` every one of its home nodes (``homes``: their addresses)
        stored at once (the store's usual save, which builds no outcome). Kept short,
        as every save pays it: one dict update for the pair (``record`` keys each
        node's result by a tuple holding an enum, whose hash is a Python call on 3.11),
        the usual latencies' bucket by comparisons (``bisect_left`` parses its
        arguments), and the lock taken without ``with`` (about half the instructions)."""
        if elapsed <= _B3:  # bisect_left's answer for the first four buckets
            bucket = 0 if elapsed <= _B0 else 1 if elapsed <= _B1 else 2 if elapsed <= _B2 else 3
        else:
            bucket = bisect_left(LATENCY_BUCKETS, elapsed)
        lock = self._lock
        lock.acquire()
        try:
            self._save_total += elapsed
            self._save_buckets[bucket] += 1
            counted = self._save_homes
            counted[homes] = counted.get(homes, 0) + 1
        finally:
            lock.release()

    def tally(
        self,
        outcome: tuple[str, OutcomeKind],
        flags: Sequence[tuple[str, OutcomeKind]],
        results: Sequence[tuple[str, NodeStatus]],
    ) -> Tally | None:
        """The :class:`Tally` that operations of these keys are counted in (as
        :meth:`counted` counts them: ``outcome`` is ``(operation, kind)``, ``flags`` one
        ``(operation, flag)`` per flag, ``results`` one ``(node, status)`` per result),
        shared by every caller with equal keys; None past :data:`_TALLIES_MAX` kinds."""
        key = (outcome, tuple(flags), tuple(results))
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None and len(self._tallies) < _TALLIES_MAX:
                tally = self._tallies[key] = Tally()
        return tally

    def fold(self, tally: Tally) -> None:
        """Move the seconds appended to ``tally`` into its counts (a caller does it when
        the tally holds :data:`FOLD_AT` of them; :meth:`snapshot` folds every tally)."""
        with self._lock:
            _fold(tally)

    def _add_latency(self, operation: str, bucket: int, elapsed: float) -> None:
        counts = self._latency.get(operation)
        if counts is None:
            counts = self._latency[operation] = [0] * (len(LATENCY_BUCKETS) + 1)
            self._totals[operation] = 0.0
        counts[bucket] += 1
        self._totals[operation] += elapsed

    def snapshot(self, nodes: Sequence[Node]) -> StoreStats:
        """The counts now, and the breaker state of each of ``nodes``."""
        with self._lock:
            outcomes = dict(self._outcomes)
            flags = dict(self._flags)
            results = dict(self._nodes)
            totals = dict(self._totals)
            latency = {op: list(counts) for op, counts in self._latency.items()}
            if self._hits:
                outcomes[_START, _OK] = outcomes.get((_START, _OK), 0) + self._hits
                for node, n in self._hit_nodes.items():
                    results[node.address, _HIT] = results.get((node.address, _HIT), 0) + n
                start = latency.setdefault(_START, [0] * (len(LATENCY_BUCKETS) + 1))
                for i, n in enumerate(self._hit_buckets):
                    start[i] += n
                totals[_START] = totals.get(_START, 0.0) + self._hit_total
            saves = sum(self._save_buckets)
            if saves:
                outcomes[_SAVE, _OK] = outcomes.get((_SAVE, _OK), 0) + saves
                for homes, n in self._save_homes.items():
                    for address in homes:
                        stored = (address, _STORED)
                        results[stored] = results.get(stored, 0) + n
                save = latency.setdefault(_SAVE, [0] * (len(LATENCY_BUCKETS) + 1))
                for i, n in enumerate(self._save_buckets):
                    save[i] += n
                totals[_SAVE] = totals.get(_SAVE, 0.0) + self._save_total
            for (outcome, flag_keys, result_keys), tally in self._tallies.items():
                _fold(tally)
                counted = tally.counts
                n = sum(counted)
                if not n:
                    continue
                outcomes[outcome] = outcomes.get(outcome, 0) + n
                for flag_key in flag_keys:
                    flags[flag_key] = flags.get(flag_key, 0) + n
                for node_key in result_keys:
                    results[node_key] = results.get(node_key, 0) + n
                op = outcome[0]
                counts = latency.setdefault(op, [0] * (len(LATENCY_BUCKETS) + 1))
                for i, c in enumerate(counted):
                    counts[i] += c
                totals[op] = totals.get(op, 0.0) + tally.total
        histograms = {
            op: Histogram(LATENCY_BUCKETS, tuple(counts), totals[op])
            for op, counts in latency.items()
        }
        return StoreStats(
            MappingProxyType(outcomes),
            MappingProxyType(flags),
            MappingProxyType(results),
            MappingProxyType({node.address: node.breaker.state for node in nodes}),
            MappingProxyType(histograms),
        )

    def counted(
        self,
        operation: str,
        outcome: tuple[str, OutcomeKind],
        flags: Sequence[tuple[str, OutcomeKind]],
        results: Sequence[tuple[str, NodeStatus]],
        elapsed: float,
    ) -> None:
        """:meth:`record` with the counters' keys made beforehand: ``outcome`` is
        ``(operation, kind)``, ``flags`` one ``(operation, flag)`` per flag, ``results``
        one ``(node, status)`` per result: a wide read's, past the bound of
        :meth:`tally` (its usual reads count in their tally)."""
        bucket = bisect_left(LATENCY_BUCKETS, elapsed)
        with self._lock:
            outcomes = self._outcomes
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            counted = self._flags
            for flag_key in flags:
                counted[flag_key] = counted.get(flag_key, 0) + 1
            nodes = self._nodes
            for node_key in results:
                nodes[node_key] = nodes.get(node_key, 0) + 1
            self._add_latency(operation, bucket, elapsed)
