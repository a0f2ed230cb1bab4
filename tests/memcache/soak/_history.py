"""The soak's history: every operation a worker issued and what the store told it, and
every fault the nemesis injected, on one monotonic clock."""

from __future__ import annotations

import enum
import gc
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class Kind(enum.Enum):
    """What a worker asked for (a regenerate is recorded as a destroy of the old id and
    a save under the new one)."""

    READ = "read"
    SAVE = "save"
    DESTROY = "destroy"


class Status(enum.Enum):
    """What the store said, as in Jepsen: ``ok``, ``fail`` (a clean, documented refusal:
    nothing happened for a read) or ``unknown`` (a write that raised: it may have landed,
    now or later). ``error`` is an exception the documentation does not promise."""

    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Reply:
    """What one node answered during an operation (a read's get, or its repair), and
    when, in seconds from the operation's start: ``status`` is a ``NodeStatus`` value."""

    node: str
    command: str
    status: str
    elapsed: float

    def describe(self) -> str:
        """``node command=status (ms)``."""
        return f"{self.node} {self.command}={self.status} {self.elapsed * 1000:.0f}ms"


@dataclass(frozen=True, slots=True)
class Op:
    """One operation on one session id.

    ``value`` is the value written (saves) or read (reads; None for a new, empty
    session). ``nodes`` are the nodes that acknowledged a write (empty when unknown).
    ``served_by`` is the node whose copy a read served. ``detail`` is the outcome kind
    of a refusal or the exception of an error. ``replies`` are what each node answered
    during a read (kept for reads only: they explain a refusal or a failover).
    """

    process: str
    worker: int
    sid: str
    kind: Kind
    status: Status
    start: float
    end: float
    value: int | None = None
    nodes: frozenset[str] = frozenset()
    served_by: str | None = None
    detail: str = ""
    replies: tuple[Reply, ...] = ()

    def describe(self, t0: float = 0.0) -> str:
        """One line for a reproduction: when, who, what, and what the store said."""
        what = f"{self.kind.value}"
        if self.kind is Kind.SAVE or (self.kind is Kind.READ and self.value is not None):
            what += f" v={self.value}"
        elif self.kind is Kind.READ and self.status is Status.OK:
            what += " -> new session"
        extra = ""
        if self.nodes:
            extra += f" {'repaired onto' if self.kind is Kind.READ else 'acked by'} "
            extra += str(sorted(self.nodes))
        if self.served_by:
            extra += f" served by {self.served_by}"
        if self.detail:
            extra += f" ({self.detail})"
        if self.replies and self.status is not Status.OK:
            extra += " [" + "; ".join(reply.describe() for reply in self.replies) + "]"
        return (
            f"[{self.start - t0:8.3f}-{self.end - t0:8.3f}] {self.process}/w{self.worker} "
            f"{what}: {self.status.value}{extra}"
        )


class Fault(enum.Enum):
    """What the nemesis did to a node."""

    KILL = "kill"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    FLUSH = "flush"


_DOWN = {Fault.KILL: Fault.START, Fault.PAUSE: Fault.RESUME}


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A fault on ``node``, begun at ``start`` (before the signal or command was sent)
    and done at ``end`` (once the node was stopped, answering, or flushed)."""

    node: str
    fault: Fault
    start: float
    end: float

    def describe(self, t0: float = 0.0) -> str:
        """One line for a reproduction."""
        return (
            f"[{self.start - t0:8.3f}-{self.end - t0:8.3f}] nemesis {self.fault.value} {self.node}"
        )


@dataclass(frozen=True, slots=True)
class Timeline:
    """What the nodes went through: when each was unreachable and when it lost memory.

    ``evicting`` nodes may drop any item at any time, so they never count as keeping one.
    """

    events: tuple[NodeEvent, ...]
    evicting: frozenset[str] = frozenset()
    unreachable: dict[str, tuple[tuple[float, float], ...]] = field(init=False)

    def __post_init__(self) -> None:
        spans: dict[str, list[tuple[float, float]]] = {}
        opened: dict[str, NodeEvent] = {}
        for event in sorted(self.events, key=lambda e: e.start):
            if event.fault in _DOWN:
                opened.setdefault(event.node, event)
            elif event.fault in _DOWN.values() and event.node in opened:
                down = opened.pop(event.node)
                spans.setdefault(event.node, []).append((down.start, event.end))
        for node, down in opened.items():
            spans.setdefault(node, []).append((down.start, float("inf")))
        object.__setattr__(
            self, "unreachable", {node: tuple(found) for node, found in spans.items()}
        )

    def kept(self, node: str, start: float, end: float) -> bool:
        """True if ``node`` surely kept what it held at ``start`` until ``end``: it is
        not evicting, and was neither killed (nor restarted) nor flushed in between."""
        if node in self.evicting:
            return False
        return not any(
            event.node == node
            and event.fault in (Fault.KILL, Fault.FLUSH)
            and event.start <= end
            and event.end >= start
            for event in self.events
        )

    def up_throughout(self, node: str, start: float, end: float) -> bool:
        """True if ``node`` was running and answering (not killed, not paused) for the
        whole of ``[start, end]``."""
        return not any(
            down_start <= end and down_end >= start
            for down_start, down_end in self.unreachable.get(node, ())
        )


@dataclass(frozen=True, slots=True)
class Probe:
    """One breaker probe of ``node`` by one store (``process``): its breaker let it
    through (``claimed``), it was sent (``start``) and answered or failed (``end``);
    ``status`` is ``ok`` or the failure's kind (``refused``, ``timeout``...)."""

    process: str
    node: str
    claimed: float
    start: float
    end: float
    status: str

    def describe(self, t0: float = 0.0) -> str:
        """One line for a slow window's report."""
        return (
            f"[{self.start - t0:8.3f}-{self.end - t0:8.3f}] {self.process} probe {self.node}: "
            f"{self.status} (claimed {self.claimed - t0:.3f})"
        )


FREEZE_EVERY = 10_000  # ops recorded between two gc.freeze() calls


class Recorder:
    """Collects ops and node events from many threads.

    Every ``freeze_every`` ops it moves every object the process holds so far out of
    the garbage collector's reach (``gc.freeze()``; :func:`thaw` undoes it). The
    history grows to millions of objects in a few minutes, and each full collection
    walks all of them while every thread of the process waits: seconds late in a
    long run, which a store in a web server, whose heap does not grow like that,
    never sees. Frozen objects are still freed by reference counting.
    """

    def __init__(self, freeze_every: int = FREEZE_EVERY) -> None:
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._events: list[NodeEvent] = []
        self._probes: list[Probe] = []
        self._freeze_every = freeze_every

    def op(self, op: Op) -> None:
        """Record one operation."""
        with self._lock:
            self._ops.append(op)
            if len(self._ops) % self._freeze_every == 0:
                gc.freeze()

    def event(self, event: NodeEvent) -> None:
        """Record one fault."""
        with self._lock:
            self._events.append(event)

    def probe(self, probe: Probe) -> None:
        """Record one breaker probe."""
        with self._lock:
            self._probes.append(probe)

    def ops(self) -> list[Op]:
        """A copy of the operations so far."""
        with self._lock:
            return list(self._ops)

    def events(self) -> list[NodeEvent]:
        """A copy of the node events so far."""
        with self._lock:
            return list(self._events)

    def probes(self) -> list[Probe]:
        """A copy of the probes so far."""
        with self._lock:
            return list(self._probes)


def thaw() -> None:
    """Give the objects a :class:`Recorder` froze back to the garbage collector."""
    gc.unfreeze()


def by_session(ops: Iterable[Op]) -> dict[str, list[Op]]:
    """The ops of each session id, in the order they were issued."""
    grouped: dict[str, list[Op]] = {}
    for op in ops:
        grouped.setdefault(op.sid, []).append(op)
    for found in grouped.values():
        found.sort(key=lambda op: op.start)
    return grouped


def describe_all(items: Sequence[Op | NodeEvent | Probe], t0: float) -> list[str]:
    """Ops, events and probes merged by start time, one line each."""
    return [item.describe(t0) for item in sorted(items, key=lambda item: item.start)]
