"""A returned node that answers one probe slowly: the store's prober sends a second
probe beside it, on another connection, and the first answer closes the breaker long
before the slow probe's read timeout (docs/memcache/index.md, circuit breaker).

The node is a small TCP server on loopback (test_hostile's ``FakeNode``): a real
memcached cannot be made to answer one connection slowly and the next at once. Its
first probe gets no answer until the test lets it go (a connection a stopping process
accepted, a starved memcached); every later connection is answered at once. A real
memcached, stopped and resumed, then answers both probes in flight at once. Time is
asserted only as "closed well before the read timeout", polled with a generous
deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from errpolicy_memcache import BreakerState, CircuitBreaker, MemcacheSessionStore
from errpolicy_memcache._transport import TRANSPORTS
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import SECRET, hung
from .test_hostile import FakeNode

READ_TIMEOUT = 10.0  # the slow probe's: only a second probe closes the breaker sooner
WELL_BEFORE = READ_TIMEOUT / 2


class SlowFirst:
    """A ``FakeNode`` behaviour: the first request (the first probe's) gets no answer
    until :attr:`release` is set, and then its connection closes; every other
    connection is answered ``END`` to each request line at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.connections = 0
        self._lock = threading.Lock()

    def __call__(self, conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        with self._lock:
            self.connections += 1
            first = self.connections == 1
        if first:
            while not (stop.is_set() or self.release.wait(0.05)):
                pass
            return  # the fake node closes the connection: the slow probe fails
        conn.settimeout(0.05)
        pending = request
        while not stop.is_set():
            while b"\r\n" in pending:
                _, pending = pending.split(b"\r\n", 1)
                conn.sendall(b"END\r\n")
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return
            pending += chunk


@pytest.fixture
def slow() -> Iterator[tuple[FakeNode, SlowFirst]]:
    behaviour = SlowFirst()
    node = FakeNode(behaviour)
    yield node, behaviour
    behaviour.release.set()
    node.close()


def _store(node: FakeNode, kind: str) -> MemcacheSessionStore:
    """A store on ``node`` alone whose breaker opens at the first failure, with a long
    read timeout: only a second probe closes it sooner."""
    return MemcacheSessionStore(
        [node.address], SECRET, 1, timeout=READ_TIMEOUT, failure_threshold=1, transport=kind
    )


def _opens(breaker: CircuitBreaker) -> list[BreakerState]:
    """The breaker's state each time it opens from now on (its ``on_open`` hook, which
    still wakes the prober)."""
    opened: list[BreakerState] = []
    wake = breaker._on_open
    assert wake is not None

    def on_open() -> None:
        opened.append(breaker.state)
        wake()

    breaker._on_open = on_open
    return opened


def _poll(done: Callable[[], bool], seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= ends:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_slow_probe_does_not_hold_a_returned_node_skipped(
    slow: tuple[FakeNode, SlowFirst], kind: str
) -> None:
    """The breaker opens; the first probe waits on the slow connection; the second,
    a backoff later on a new connection, is answered: closed well before the slow
    probe's read timeout, with that probe still waiting."""
    node, behaviour = slow
    store = _store(node, kind)
    breaker = store.nodes[0].breaker
    try:
        breaker.failure()  # as a timed-out request records it: the breaker opens
        closed = _poll(lambda: breaker.state is BreakerState.CLOSED, WELL_BEFORE)
        seen = (
            closed,
            behaviour.connections >= 2,
            store.nodes[0] in store._prober._probes.in_flight,
        )
    finally:
        store.close()
    assert (True, True, True) == seen


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_the_slow_probes_late_failure_leaves_the_breaker_closed(
    slow: tuple[FakeNode, SlowFirst], kind: str
) -> None:
    """Once the second probe closed the breaker, the first fails (its connection
    closed): nothing is counted, the breaker never opens again and the prober ends."""
    node, behaviour = slow
    store = _store(node, kind)
    target = store.nodes[0]
    prober = store._prober
    opened = _opens(target.breaker)
    try:
        target.breaker.failure()
        closed = _poll(lambda: target.breaker.state is BreakerState.CLOSED, WELL_BEFORE)
        behaviour.release.set()
        ended = _poll(
            lambda: target not in prober._probes.in_flight and prober._stop is None, WELL_BEFORE
        )
        seen = (closed, ended, opened, target.breaker.state, target.breaker.failures)
    finally:
        store.close()
    assert (True, True, [BreakerState.OPEN], BreakerState.CLOSED, 0) == seen


@pytest.mark.hangs  # its store sets its own timeouts (a 10 s read: the probes wait)
def test_a_hung_memcached_gets_two_probes_and_both_answers_close_it_once(
    pair: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """A real memcached, stopped (SIGSTOP): a second probe goes out beside the first
    while both wait; resumed, it answers both, the first answer closes the breaker
    and the other changes nothing (no failure, no second opening)."""
    server = pair.servers[0]
    store = make_store(
        pair, timeout=READ_TIMEOUT, failure_threshold=1, retry_after=0.1, max_retry_after=0.4
    )
    target = next(node for node in store.nodes if node.address == server.address)
    prober = store._prober
    opened = _opens(target.breaker)
    with hung(server):
        target.breaker.failure()  # as a timed-out request records it
        both = _poll(lambda: prober._probes.in_flight.get(target) == 2, WELL_BEFORE)
    closed = _poll(lambda: target.breaker.state is BreakerState.CLOSED, WELL_BEFORE)
    idle = _poll(
        lambda: target not in prober._probes.in_flight and prober._stop is None, WELL_BEFORE
    )
    seen = (both, closed, idle, opened, target.breaker.state, target.breaker.failures)
    assert (True, True, True, [BreakerState.OPEN], BreakerState.CLOSED, 0) == seen
