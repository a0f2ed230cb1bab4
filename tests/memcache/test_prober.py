"""The prober: when each node whose breaker is open gets probed, off the request path."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from errpolicy_memcache import BreakerState, CircuitBreaker
from errpolicy_memcache._node import Node, Prober, Reply
from errpolicy_memcache._wire import Command, NodeFailure, gets

PROBE = gets("errpolicy:session:probe")
TIMEOUT = 0.5  # the store's default read timeout
BACKOFF, MAX_BACKOFF = 0.1, 0.4  # the store's default retry_after, max_retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def node(port: int, breaker: CircuitBreaker) -> Node:
    """A node that is never connected to: the tests run its plans themselves."""
    return Node("127.0.0.1", port, breaker)


def test_a_hung_nodes_probe_does_not_hold_back_another_nodes() -> None:
    """Two open nodes, one hung: the other's probe answers and closes its breaker while
    the hung node's probe still waits."""
    hung = node(1, CircuitBreaker(1, 0.0, 0.0))
    back = node(2, CircuitBreaker(1, 0.0, 0.0))
    release, closed = threading.Event(), threading.Event()

    def run(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        replies = []
        for target, commands in plan:
            if target is hung:
                release.wait(60.0)
                target.breaker.failure()
                replies.append(Reply(target, commands, [], NodeFailure("timeout"), TIMEOUT))
            else:
                target.breaker.success()
                closed.set()
                replies.append(Reply(target, commands, [None], None, 0.001))
        return replies

    prober = Prober([hung, back], PROBE, lambda: None, run)
    hung.breaker.failure()
    back.breaker.failure()
    prober.wake()
    try:
        found_back = closed.wait(30.0)  # bounds a stuck prober: nothing timed
        states = (hung.breaker.state, back.breaker.state)
    finally:
        release.set()
        prober.close()
    assert (True, (BreakerState.HALF_OPEN, BreakerState.CLOSED)) == (found_back, states)


STEP = 0.01


def recovery_delays(kind: str, back: float) -> list[float]:
    """Five nodes down from 0 and all back at ``back``, the prober's schedule driven on
    a fake clock in ``STEP`` steps: each node's delay from ``back`` until its breaker
    closed. ``hung``: a probe waits until the node answers again or ``TIMEOUT`` ends
    it; ``dead``: a probe is refused at once."""
    clock = Clock()
    breakers = [CircuitBreaker(3, BACKOFF, MAX_BACKOFF, clock) for _ in range(5)]
    nodes = [node(port, breaker) for port, breaker in enumerate(breakers, 1)]

    def run(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        ((target, commands),) = plan
        if clock.now >= back:
            target.breaker.success()
            return [Reply(target, commands, [None], None, 0.001)]
        target.breaker.failure(refused=kind == "dead")
        return [Reply(target, commands, [], NodeFailure("refused"), 0.0)]

    prober = Prober(nodes, PROBE, lambda: None, run)
    for breaker in breakers:
        for _ in range(3):
            breaker.failure(refused=kind == "dead")
    ends: dict[Node, float] = {}  # each probe in flight: when it ends

    def answer() -> None:
        for target, end in list(ends.items()):
            if clock.now >= end or clock.now >= back:  # a hung node answers on return
                del ends[target]
                prober.probe(target)

    closed: dict[Node, float] = {}
    while len(closed) < len(nodes):
        answer()
        for target in prober.claim():
            ends[target] = clock.now if kind == "dead" else clock.now + TIMEOUT
        answer()
        for target in nodes:
            if target.breaker.state is BreakerState.CLOSED:
                closed.setdefault(target, clock.now)
        clock.now = round(clock.now + STEP, 6)
    return [closed[target] - back for target in nodes]


@pytest.mark.parametrize("kind", ["dead", "hung"])
@pytest.mark.parametrize("back", [2.0 + 0.037 * i for i in range(12)])
def test_after_an_outage_of_every_node_each_is_back_within_the_base_backoff(
    kind: str, back: float
) -> None:
    """Whenever they return, killed nodes are probed every base backoff (a refused probe
    does not double it), and a hung node always has a probe waiting on it: no node
    stays skipped longer than the base backoff after every node is back."""
    delays = recovery_delays(kind, back)
    assert [] == [delay for delay in delays if delay > BACKOFF + STEP]
