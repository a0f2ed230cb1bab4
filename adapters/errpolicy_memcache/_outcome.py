"""The outcome of one logical operation: what each node answered, and how bad it was."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ._native import speedups

__all__ = ["NodeResult", "NodeStatus", "Outcome", "OutcomeKind", "outcome_of", "severity_of"]

_NOTICE = 25  # errpolicy.NOTICE; a literal so this module imports without the core


class NodeStatus(StrEnum):
    """What one node answered to one command."""

    HIT = "hit"  # held the copy that won
    STALE = "stale"  # held an older copy
    MISS = "miss"  # said "not found"
    INVALID = "invalid"  # held a copy that failed verification or decoding
    STORED = "stored"
    NOT_STORED = "not_stored"  # add found the key, or cas found it changed
    TOUCHED = "touched"
    DELETED = "deleted"
    LOCKED = "locked"  # a lock was taken
    BUSY = "busy"  # the lock was held by another request
    REFUSED = "refused"
    TIMEOUT = "timeout"
    CLOSED = "closed"
    ERROR = "error"  # an error reply or a protocol violation
    SERVER_ERROR = "server_error"  # SERVER_ERROR: a proxy's backend is down, or memcached failed
    SKIPPED = "skipped"  # the node's circuit breaker is open: no time spent

    @property
    def failed(self) -> bool:
        """True for the statuses where the node gave no usable answer."""
        return self in _FAILED


_FAILED = frozenset(
    {
        NodeStatus.REFUSED,
        NodeStatus.TIMEOUT,
        NodeStatus.CLOSED,
        NodeStatus.ERROR,
        NodeStatus.SERVER_ERROR,
        NodeStatus.SKIPPED,
    }
)


class OutcomeKind(StrEnum):
    """How a logical operation went; :func:`severity_of` gives each its severity."""

    OK = "ok"  # every consulted replica answered and agreed
    NOT_FOUND = "not_found"  # enough replicas said "not found" (or a tombstone won)
    FAILOVER = "failover"  # served, although a node failed or was skipped
    REPAIRED = "repaired"  # stale, missing or invalid copies were rewritten
    DEGRADED = "degraded"  # a write reached fewer than `replicas` nodes
    INVALID = "invalid"  # a copy failed verification and was rejected
    PARTIAL_MISS = "partial_miss"  # "not found" from some replicas, the others unreachable
    POSSIBLY_STALE = "possibly_stale"  # only just-rejoined nodes hold copies; others unreachable
    LOCK_TIMEOUT = "lock_timeout"  # the session lock was not obtained in time
    UNAVAILABLE = "unavailable"  # no replica could answer


_SEVERITY: dict[OutcomeKind, int] = {
    OutcomeKind.OK: 0,
    OutcomeKind.NOT_FOUND: 0,
    OutcomeKind.FAILOVER: _NOTICE,
    OutcomeKind.REPAIRED: _NOTICE,
    OutcomeKind.DEGRADED: _NOTICE,
    OutcomeKind.INVALID: _NOTICE,
    OutcomeKind.PARTIAL_MISS: logging.WARNING,
    OutcomeKind.POSSIBLY_STALE: logging.WARNING,
    OutcomeKind.LOCK_TIMEOUT: logging.WARNING,
    OutcomeKind.UNAVAILABLE: logging.ERROR,
}
_RANK = {kind: index for index, kind in enumerate(OutcomeKind)}


def severity_of(kind: OutcomeKind) -> int:
    """The logging level an outcome is reported at (0: not reported)."""
    return _SEVERITY[kind]


def worst(kinds: frozenset[OutcomeKind], base: OutcomeKind) -> OutcomeKind:
    """The decisive kind: the most severe of ``kinds`` and ``base``, the later one on ties."""
    found = _WORST.get((kinds, base))
    if found is None:
        found = max({base, *kinds}, key=lambda k: (_SEVERITY[k], _RANK[k]))
        if len(_WORST) < _WORST_MAX:  # racing threads store the same answer
            _WORST[(kinds, base)] = found
    return found


# Every failover read asks this with the same few sets: remembered, and bounded.
_WORST: dict[tuple[frozenset[OutcomeKind], OutcomeKind], OutcomeKind] = {}
_WORST_MAX = 1024


@dataclass(frozen=True, slots=True)
class NodeResult:
    """One node's answer to one command, and the seconds from the operation's start."""

    node: str
    command: str
    status: NodeStatus
    elapsed: float
    detail: str = ""

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.node} {self.command}={self.status.value}{extra} {self.elapsed * 1000:.1f}ms"


# init=False: the frozen dataclass __init__ sets each field through
# object.__setattr__; this one sets the slots directly (the same values).
@dataclass(frozen=True, slots=True, init=False)
class Outcome:
    """The result of one logical operation, as attached to its log record (``extra``).

    ``kind`` is the decisive (most severe) kind, ``flags`` every kind that applied,
    ``served_by`` the node whose copy won (reads) or the first that stored (writes),
    ``nodes`` each node's result and time in order, ``key`` a short fingerprint of the
    memcached key (never the session id).
    """

    operation: str
    kind: OutcomeKind
    flags: frozenset[OutcomeKind]
    served_by: str | None
    nodes: tuple[NodeResult, ...]
    key: str
    version: int | None
    elapsed: float

    def __init__(
        self,
        operation: str,
        kind: OutcomeKind,
        flags: frozenset[OutcomeKind],
        served_by: str | None,
        nodes: tuple[NodeResult, ...],
        key: str,
        version: int | None,
        elapsed: float,
    ) -> None:
        _set_operation(self, operation)
        _set_kind(self, kind)
        _set_flags(self, flags)
        _set_served_by(self, served_by)
        _set_nodes(self, nodes)
        _set_key(self, key)
        _set_version(self, version)
        _set_elapsed(self, elapsed)

    @property
    def level(self) -> int:
        """The logging level of this outcome (0 when it is not reported)."""
        return _SEVERITY[self.kind]

    def results_for(self, node: str) -> tuple[NodeResult, ...]:
        """The results of one node, by its ``"host:port"``."""
        return tuple(r for r in self.nodes if r.node == node)

    def __str__(self) -> str:
        # The message of every notice (a failover read logs one per request): in C.
        if _c_text is not None:
            nodes = self.nodes
            return _c_text(_TEXT_FIELDS, self.operation, self.kind, self.served_by, nodes, self.key)
        return py_outcome_text(self.operation, self.kind, self.served_by, self.nodes, self.key)


def py_outcome_text(
    operation: str,
    kind: OutcomeKind,
    served_by: str | None,
    nodes: tuple[NodeResult, ...],
    key: str,
) -> str:
    """``str()`` of the :class:`Outcome` of those fields (the reference of the C
    ``outcome_text``)."""
    served = f" served_by={served_by}" if served_by else ""
    # A StrEnum formats as its value: no ``.value`` lookup per node.
    text = "; ".join([f"{r.node} {r.command}={r.status}" for r in nodes])
    return f"{operation} {kind}{served} key={key} [{text}]"


_c_text: Callable[..., str] | None = None if speedups is None else speedups.outcome_text


# The fields' slot setters: a frozen dataclass's __init__ costs a Python frame and an
# object.__setattr__ per field, and every reported operation builds a NodeResult per
# node (five times faster this way). The same values, set as its __init__ sets them.
_new = object.__new__
_slotted: Callable[..., tuple[NodeResult, ...]] | None = (
    None if speedups is None else speedups.slotted
)
_RESULT_MEMBERS = tuple(
    NodeResult.__dict__[f] for f in ("node", "command", "status", "elapsed", "detail")
)
_RESULT_SLOTS = tuple(member.__set__ for member in _RESULT_MEMBERS)
_TEXT_FIELDS = _RESULT_MEMBERS[:3]  # node, command, status: what the message shows


(
    _set_operation,
    _set_kind,
    _set_flags,
    _set_served_by,
    _set_nodes,
    _set_key,
    _set_version,
    _set_elapsed,
) = tuple(
    Outcome.__dict__[f].__set__
    for f in ("operation", "kind", "flags", "served_by", "nodes", "key", "version", "elapsed")
)


def node_results(
    results: list[tuple[str, str, NodeStatus, float, str]],
) -> tuple[NodeResult, ...]:
    """``NodeResult(*r)`` for each of ``results`` (node, command, status, seconds, detail)."""
    if _slotted is not None:
        return _slotted(NodeResult, _RESULT_MEMBERS, results)
    return py_node_results(results)


def py_node_results(
    results: list[tuple[str, str, NodeStatus, float, str]],
) -> tuple[NodeResult, ...]:
    """:func:`node_results` in Python (the reference of the C ``slotted``)."""
    node, command, status, elapsed, detail = _RESULT_SLOTS
    made = []
    for r in results:
        result = _new(NodeResult)
        node(result, r[0])
        command(result, r[1])
        status(result, r[2])
        elapsed(result, r[3])
        detail(result, r[4])
        made.append(result)
    return tuple(made)


_OUTCOME_MEMBERS = tuple(
    Outcome.__dict__[f]
    for f in ("operation", "kind", "flags", "served_by", "nodes", "key", "version", "elapsed")
)
_made: Callable[..., tuple[Outcome, ...]] | None = None if speedups is None else speedups.slotted


def outcome_of(
    operation: str,
    kind: OutcomeKind,
    flags: frozenset[OutcomeKind],
    served_by: str | None,
    results: list[tuple[str, str, NodeStatus, float, str]],
    key: str,
    version: int | None,
    elapsed: float,
) -> Outcome:
    """``Outcome(operation, kind, flags, served_by, node_results(results), key, version,
    elapsed)``, its values made in C where the speedups are built (a failover read
    reports one per request)."""
    if _made is not None:
        nodes = _made(NodeResult, _RESULT_MEMBERS, results)
        row = (operation, kind, flags, served_by, nodes, key, version, elapsed)
        return _made(Outcome, _OUTCOME_MEMBERS, (row,))[0]
    return Outcome(
        operation, kind, flags, served_by, py_node_results(results), key, version, elapsed
    )


#: ``(operation, kind, flags, served_by, key)`` of :func:`timed_outcome`.
OutcomeHead = tuple[str, OutcomeKind, frozenset[OutcomeKind], str | None, str]
#: ``(node, command, status, index)``: a row of :func:`timed_outcome`.
TimedRow = tuple[str, str, NodeStatus, int]


def py_timed_outcome(
    head: OutcomeHead,
    rows: tuple[TimedRow, ...],
    at: float,
    times: list[float],
    version: int | None,
    elapsed: float,
) -> Outcome:
    """The :class:`Outcome` of a read whose rows are known beforehand (a wide read's
    answer pattern): ``head``'s fields, a :class:`NodeResult` per row, timed ``at``
    where its index is negative, else ``times[index]`` (the reference of the C
    ``timed_outcome``)."""
    operation, kind, flags, served_by, key = head
    results = [
        (node, command, status, at if index < 0 else times[index], "")
        for node, command, status, index in rows
    ]
    return Outcome(
        operation, kind, flags, served_by, py_node_results(results), key, version, elapsed
    )


#: :func:`py_timed_outcome`, made in C where the speedups are built (one call: the
#: outage read reports one outcome per request).
timed_outcome: Callable[
    [OutcomeHead, tuple[TimedRow, ...], float, list[float], int | None, float], Outcome
] = (
    py_timed_outcome
    if speedups is None
    else functools.partial(
        speedups.timed_outcome, NodeResult, _RESULT_MEMBERS, Outcome, _OUTCOME_MEMBERS
    )
)
