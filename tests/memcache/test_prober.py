"""The prober: when each node whose breaker is open gets probed, off the request path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from errpolicy_memcache import BreakerState, CircuitBreaker
from errpolicy_memcache._node import MAX_IN_FLIGHT, Claim, Node, Prober, Reply
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


def _poll(done: Callable[[], bool]) -> None:
    """Wait until ``done()`` (a stuck prober fails the test's assert, not this)."""
    ends = time.monotonic() + 30.0
    while not done() and time.monotonic() < ends:
        time.sleep(0.005)


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
                replies.append(Reply(target, commands, [], NodeFailure("timeout"), TIMEOUT))
            else:
                closed.set()
                replies.append(Reply(target, commands, [None], None, 0.001))
        return replies

    prober = Prober([hung, back], PROBE, lambda: None, run)
    hung.breaker.failure()
    back.breaker.failure()
    prober.wake()
    try:
        found_back = closed.wait(30.0)  # bounds a stuck prober: nothing timed
        _poll(lambda: back.breaker.state is BreakerState.CLOSED)  # recorded after run
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
            return [Reply(target, commands, [None], None, 0.001)]
        failure = NodeFailure("refused" if kind == "dead" else "timeout")
        return [Reply(target, commands, [], failure, 0.0)]

    prober = Prober(nodes, PROBE, lambda: None, run)
    for breaker in breakers:
        for _ in range(3):
            breaker.failure(refused=kind == "dead")
    ends: list[tuple[Claim, float]] = []  # each probe in flight, and when it ends

    def answer() -> None:
        for flying in list(ends):
            if clock.now >= flying[1] or clock.now >= back:  # a hung node answers on return
                ends.remove(flying)
                prober.probe(flying[0])

    closed: dict[Node, float] = {}
    while len(closed) < len(nodes):
        answer()
        for claim in prober.claim():
            ends.append((claim, clock.now if kind == "dead" else clock.now + TIMEOUT))
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


def slow_recovery_delays(back: float) -> list[float]:
    """As :func:`recovery_delays` for hung nodes, but a probe sent before ``back`` is
    never answered: it waits out ``TIMEOUT`` (a memcached that resumed starved of CPU,
    or a connection its stopping process took), while one sent after is answered at
    once."""
    clock = Clock()
    breakers = [CircuitBreaker(3, BACKOFF, MAX_BACKOFF, clock) for _ in range(5)]
    nodes = [node(port, breaker) for port, breaker in enumerate(breakers, 1)]

    def run(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        ((target, commands),) = plan
        if answered:
            return [Reply(target, commands, [None], None, 0.001)]
        return [Reply(target, commands, [], NodeFailure("timeout"), TIMEOUT)]

    prober = Prober(nodes, PROBE, lambda: None, run)
    for breaker in breakers:
        for _ in range(3):
            breaker.failure()
    ends: list[tuple[Claim, float, bool]] = []  # a probe in flight, its end, its answer
    closed: dict[Node, float] = {}
    while len(closed) < len(nodes):
        for claim in prober.claim():
            late = clock.now < back
            ends.append((claim, clock.now + (TIMEOUT if late else 0.0), not late))
        for flying in sorted(ends, key=lambda item: item[1]):
            if clock.now >= flying[1]:
                ends.remove(flying)
                answered = flying[2]
                prober.probe(flying[0])
        for target in nodes:
            if target.breaker.state is BreakerState.CLOSED:
                closed.setdefault(target, clock.now)
        clock.now = round(clock.now + STEP, 6)
    return [closed[target] - back for target in nodes]


@pytest.mark.parametrize("back", [2.0 + 0.037 * i for i in range(12)])
def test_a_probe_left_unanswered_by_a_returned_node_holds_it_at_most_a_backoff(
    back: float,
) -> None:
    """Hung nodes come back but never answer the probes sent while they hung: the
    probe sent beside the waiting one finds each back within ``max_retry_after``,
    not the read timeout."""
    delays = slow_recovery_delays(back)
    assert [] == [delay for delay in delays if delay > MAX_BACKOFF + STEP]


def one_open_node(on_open: Callable[[], None] = lambda: None) -> tuple[Clock, Node]:
    """A node whose breaker (threshold 1, the store's default backoffs) opened at -1 s:
    its first probe is due at 0."""
    clock = Clock()
    target = node(1, CircuitBreaker(1, BACKOFF, MAX_BACKOFF, clock, on_open=on_open))
    clock.now = -1.0
    target.breaker.failure()
    clock.now = 0.0
    return clock, target


def test_a_second_probe_goes_out_a_backoff_after_the_first_began() -> None:
    """While the first probe waits, none is due before the backoff ends and one is at
    its end: the node's claims at 0, just before and at the backoff."""
    clock, target = one_open_node()
    prober = Prober([target], PROBE, lambda: None, lambda plan: [])
    claims = [len(prober.claim())]
    clock.now = BACKOFF - STEP
    claims.append(len(prober.claim()))
    clock.now = BACKOFF
    claims.append(len(prober.claim()))
    assert [1, 0, 1] == claims


def test_at_most_two_probes_of_a_node_are_in_flight() -> None:
    """A node that answers nothing: over many backoffs, two probes are claimed, and a
    third only once one of them ended."""
    clock, target = one_open_node()
    prober = Prober([target], PROBE, lambda: None, lambda plan: [])
    claimed: list[Claim] = []
    for _ in range(100):
        claimed += prober.claim()
        clock.now = round(clock.now + STEP, 6)
    in_flight = len(claimed)
    prober._execute = lambda plan: [Reply(target, plan[0][1], [], NodeFailure("timeout"), 1.0)]
    prober.probe(claimed[0])
    clock.now += MAX_BACKOFF
    assert (MAX_IN_FLIGHT, 1) == (in_flight, len(prober.claim()))


def test_the_first_answer_closes_and_a_late_failure_counts_for_nothing() -> None:
    """The second probe is answered, the first then times out: the breaker stays
    closed with no failure counted, it never reopened, and ``after_probe`` ran once."""
    opened: list[bool] = []
    clock, target = one_open_node(lambda: opened.append(True))
    after: list[bool] = []
    answers = {"slow": NodeFailure("timeout"), "fast": None}
    order: list[str] = []

    def run(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        failure = answers[order.pop(0)]
        return [Reply(target, plan[0][1], [] if failure else [None], failure, 0.0)]

    prober = Prober([target], PROBE, lambda: after.append(True), run)
    (slow,) = prober.claim()
    clock.now = BACKOFF
    (fast,) = prober.claim()
    order += ["fast", "slow"]
    answered = [prober.probe(fast), prober.probe(slow)]
    state = (target.breaker.state, target.breaker.failures, opened[1:], len(after))
    assert ([True, False], (BreakerState.CLOSED, 0, [], 1)) == (answered, state)


def test_a_late_answer_after_the_second_probe_failed_closes_the_breaker() -> None:
    """The second probe is refused, the first is answered later: that answer closes the
    breaker (an answer is never dropped)."""
    clock, target = one_open_node()
    replies = [NodeFailure("refused"), None]

    def run(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        failure = replies.pop(0)
        return [Reply(target, plan[0][1], [] if failure else [None], failure, 0.0)]

    prober = Prober([target], PROBE, lambda: None, run)
    (first,) = prober.claim()
    clock.now = BACKOFF
    (second,) = prober.claim()
    prober.probe(second)
    between = target.breaker.state
    prober.probe(first)
    assert (BreakerState.OPEN, BreakerState.CLOSED) == (between, target.breaker.state)


def test_the_prober_thread_keeps_at_most_two_probes_of_a_node_in_flight() -> None:
    """Stress, with real threads: four nodes whose probes take up to 10 ms and fail for
    the first 400, on backoffs of 1-2 ms. No node ever has more than two probes in
    flight, each had two at some point, and once the probes are answered every breaker
    closes with nothing counted and the prober thread ends. Bounded by counts."""
    breakers = [CircuitBreaker(1, 0.001, 0.002) for _ in range(4)]
    nodes = [node(port, breaker) for port, breaker in enumerate(breakers, 1)]
    lock = threading.Lock()
    flying = dict.fromkeys(nodes, 0)
    most = dict.fromkeys(nodes, 0)
    sent = [0]
    pause = iter([0.001 * (i % 11) for i in range(1_000_000)])

    def run(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        ((target, commands),) = plan
        with lock:
            flying[target] += 1
            most[target] = max(most[target], flying[target])
            sent[0] += 1
            fail = sent[0] <= 400
            wait = next(pause)
        time.sleep(wait)
        with lock:
            flying[target] -= 1
        if fail:
            return [Reply(target, commands, [], NodeFailure("timeout"), wait)]
        return [Reply(target, commands, [None], None, wait)]

    prober = Prober(nodes, PROBE, lambda: None, run)
    for breaker in breakers:
        breaker._on_open = prober.wake
        breaker.failure()
    try:
        _poll(lambda: prober._stop is None and not prober._probes.in_flight)
        seen = (
            sorted(most.values()),
            [b.state for b in breakers],
            [b.failures for b in breakers],
            sent[0] > 400,
        )
    finally:
        prober.close()
    assert ([2, 2, 2, 2], [BreakerState.CLOSED] * 4, [0] * 4, True) == seen
