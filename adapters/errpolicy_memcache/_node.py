"""One memcached node (address and breaker: no connection), a node's reply, the
recording of replies on the breakers, and the prober's schedule."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._breaker import CircuitBreaker
from ._transport import Answer
from ._wire import Command, NodeFailure

__all__ = ["MAX_IN_FLIGHT", "Claim", "Node", "Prober", "Probes", "Reply", "exchanged", "settle"]

# Failures that say the node itself is unhealthy; an error reply does not, except
# SERVER_ERROR: a proxy's answer when its backend is down (docs/memcache/proxies.md).
_BREAKER_KINDS = frozenset({"refused", "timeout", "closed", "server_error"})


class Node:
    """A memcached server as the store's core knows it: where it is and its breaker.
    Its connections are its driver's (the sync store's transports, the async store's
    pools, keyed by the node)."""

    __slots__ = ("address", "breaker", "host", "port")

    def __init__(self, host: str, port: int, breaker: CircuitBreaker) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.breaker = breaker

    def __repr__(self) -> str:
        return f"<Node {self.address} {self.breaker.state.value}>"


@dataclass(slots=True)
class Reply:
    """A node's replies to its commands (in order), or the failure that ended them."""

    node: Node
    commands: Sequence[Command]
    values: list[Any]
    failure: NodeFailure | None
    elapsed: float


def settle(
    plan: Sequence[tuple[Node, Sequence[Command]]], answered: Sequence[Answer], start: float
) -> list[Reply]:
    """The :class:`Reply` of each node of ``plan`` from its transport's answer (as
    ``exchange`` gives it), recorded on its breaker; ``start`` is when the plan was
    sent, on the clock of the answers' ends (the driver's ``ticks``)."""
    replies: list[Reply] = []
    for (node, commands), (values, failure, done) in zip(plan, answered, strict=True):
        if failure is None:
            node.breaker.success()
        elif failure.kind in _BREAKER_KINDS:
            node.breaker.failure(failure.kind == "refused")
        else:
            node.breaker.errored()
        replies.append(Reply(node, commands, values, failure, done - start))
    return replies


def exchanged(
    plan: Sequence[tuple[Node, Sequence[Command]]], answered: Sequence[Answer], start: float
) -> list[Reply]:
    """As :func:`settle`, without recording anything on the breakers (the prober's
    round: it records its probes' answers itself)."""
    return [
        Reply(node, commands, values, failure, done - start)
        for (node, commands), (values, failure, done) in zip(plan, answered, strict=True)
    ]


#: Probes of one node in flight at once at most: a slow one, and a fresh one beside it.
MAX_IN_FLIGHT = 2


@dataclass(frozen=True, slots=True)
class Claim:
    """A probe the prober claimed: its node, and how many times the node's breaker had
    closed then (:meth:`CircuitBreaker.claim_probe`)."""

    node: Node
    closings: int


class Probes:
    """The probe schedule both stores' probers keep, with no I/O and no clock of its own
    (the breakers hold the times): which probes are due, when the next one is, and what
    a probe's answer means for its node's breaker. The sync :class:`Prober` sends each
    probe in a thread, the asyncio store's recovery in a task; both claim here, record
    each answer here, and say here when a probe ended.

    A node's next probe is due a backoff after its last one began (its breaker's
    :meth:`~CircuitBreaker.claim_probe`), answered or not, with at most
    ``MAX_IN_FLIGHT`` of a node in flight. Thread-safe: probes end in their own threads
    (or on other event loops) while the schedule claims."""

    __slots__ = ("_lock", "_nodes", "in_flight")

    def __init__(self, nodes: Sequence[Node]) -> None:
        self._nodes = nodes
        self._lock = threading.Lock()
        self.in_flight: dict[Node, int] = {}  # probes in flight per node (guarded by _lock)

    def claim(self) -> list[Claim]:
        """The probes due now, claimed and counted in flight: the caller sends each,
        :meth:`record` its answer and calls :meth:`ended` (also if it never sent it). A
        node with ``MAX_IN_FLIGHT`` probes in flight is not due again until one ends."""
        due: list[Claim] = []
        with self._lock:
            in_flight = self.in_flight
            for node in self._nodes:
                flying = in_flight.get(node, 0)
                if flying < MAX_IN_FLIGHT and (closings := node.breaker.claim_probe()) is not None:
                    in_flight[node] = flying + 1
                    due.append(Claim(node, closings))
        return due

    def waits(self) -> list[float]:
        """Seconds until each open node that may have another probe in flight is due (0:
        now)."""
        with self._lock:
            full = {node for node, flying in self.in_flight.items() if flying >= MAX_IN_FLIGHT}
        return [
            wait
            for node in self._nodes
            if node not in full and (wait := node.breaker.probe_in()) is not None
        ]

    def open(self) -> bool:
        """True while a node's breaker is not closed (there is something to probe)."""
        return any(node.breaker.probe_in() is not None for node in self._nodes)

    @staticmethod
    def record(claim: Claim, failure: NodeFailure | None) -> bool:
        """Record the answer of the probe ``claim`` (``failure``, None if the node
        answered) on its node's breaker; True if the node answered. The first answer
        closes the breaker; a failure of a probe claimed before it last closed counts
        for nothing (:meth:`CircuitBreaker.failure`)."""
        breaker = claim.node.breaker
        if failure is None:
            breaker.success()
            return True
        if failure.kind in _BREAKER_KINDS:
            breaker.failure(failure.kind == "refused", claim.closings)
        else:
            breaker.errored()
        return False

    def ended(self, claim: Claim) -> None:
        """The probe ``claim`` is no longer in flight (answered, failed or cancelled)."""
        node = claim.node
        with self._lock:
            flying = self.in_flight.pop(node) - 1
            if flying:
                self.in_flight[node] = flying


class Prober:
    """Probes the nodes whose breaker is open, off the request path.

    A request never waits for a probe: it skips an open node at no cost, and the prober
    asks the node a harmless ``gets`` as soon as its breaker's backoff ends. A daemon
    thread keeps the schedule: it starts when a breaker opens (:meth:`wake`) and ends
    when every breaker is closed, or at :meth:`close`. Each probe runs in a thread of its
    own, so a hung node's probe (which waits out its timeout) never delays finding
    another node back: after an outage of every node, each is seen back within its own
    backoff.

    A node's next probe is due a backoff after its last one began, answered or not, and
    at most two are in flight (a third waits until one ends). A probe answered slowly
    (sent while the node was down or hung, or to a memcached starved of CPU) thus holds
    the breaker open at most a backoff more, not its read timeout: the second probe, on
    another connection, is answered at once if the node is back. The first answer closes
    the breaker; a failure of a probe claimed before that is not counted (see
    :meth:`CircuitBreaker.failure`), and a late success changes nothing. Only when both
    probes in flight wait on answers that come late does the next wait for one of them.

    The schedule and the recording of answers are :class:`Probes`' (the asyncio store's
    recovery keeps the same). ``run`` sends a plan and gives its replies without
    recording them on the breakers: the prober records each probe's answer itself.
    ``after_probe`` runs after each probe that reached a node (the store hands over
    there what waits for it, and clears the locks whose ``add`` timed out; a second run
    finds nothing more to do).
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        probe: Command,
        after_probe: Callable[[], None],
        run: Callable[[Sequence[tuple[Node, Sequence[Command]]]], list[Reply]],
    ) -> None:
        self._probe = probe
        self._after_probe = after_probe
        self._execute = run
        self._probes = Probes(nodes)  # what is due and what answers mean: no I/O
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stop: threading.Event | None = None  # the running thread's

    def wake(self) -> None:
        """A breaker opened: start the thread unless it runs."""
        with self._lock:
            self._wakeup.set()
            if self._stop is None:
                self._stop = threading.Event()
                thread = threading.Thread(
                    target=self._run,
                    args=(self._stop,),
                    name="errpolicy_memcache-prober",
                    daemon=True,
                )
                thread.start()

    def close(self) -> None:
        """Stop the thread (a probe in flight ends within its timeout); a later
        :meth:`wake` starts a new one."""
        with self._lock:
            stop, self._stop = self._stop, None
        if stop is not None:
            stop.set()
            self._wakeup.set()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wakeup.clear()
            if not self._probes.open():
                with self._lock:  # a breaker opening now calls wake() after this
                    if not self._probes.open():
                        if self._stop is stop:
                            self._stop = None
                        return
                continue
            for claim in self.claim():
                threading.Thread(
                    target=self.probe,
                    args=(claim,),
                    name="errpolicy_memcache-probe",
                    daemon=True,
                ).start()
            waits = self.waits()
            # Nothing to wait for: every open node has its probes in flight, and the
            # end of one wakes this thread.
            self._wakeup.wait(min(waits) if waits else None)

    def claim(self) -> list[Claim]:
        """The probes due now (:meth:`Probes.claim`): the caller runs :meth:`probe` on
        each."""
        return self._probes.claim()

    def waits(self) -> list[float]:
        """Seconds until each open node that may have another probe in flight is due (0:
        now)."""
        return self._probes.waits()

    def probe(self, claim: Claim) -> bool:
        """Run the probe ``claim`` (from :meth:`claim`) and record its answer on the
        node's breaker; True if the node answered."""
        probes = self._probes
        try:
            (reply,) = self._execute([(claim.node, (self._probe,))])
            answered = probes.record(claim, reply.failure)
        finally:
            probes.ended(claim)
            self._wakeup.set()
        if answered:
            self._after_probe()
        return answered

    def probe_due(self) -> bool:
        """Probe every node whose probe is due, one after another, and return when all
        answered or failed; False if none was due (the tests' deterministic driver)."""
        due = self.claim()
        for claim in due:
            self.probe(claim)
        return bool(due)
