"""A returned node that answers one probe slowly: the store's prober sends a second
probe beside it, on another connection, and the first answer closes the breaker long
before the slow probe's read timeout (docs/memcache/index.md, circuit breaker).

The node is a small TCP server on loopback: a real memcached cannot be made to answer
one connection slowly and the next at once. Its first connection gets no answer until
the test ends (a connection a stopping process accepted, a starved memcached); every
later one is answered at once. A real memcached, stopped and resumed, then answers
both probes in flight at once. Time is asserted only as "closed well before the read
timeout", polled with a generous deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from errpolicy_memcache import BreakerState, MemcacheSessionStore
from errpolicy_memcache._node import MAX_IN_FLIGHT
from errpolicy_memcache._transport import TRANSPORTS
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import SECRET, hung

READ_TIMEOUT = 10.0  # the slow probe's: only a second probe closes the breaker sooner
WELL_BEFORE = READ_TIMEOUT / 2


class SlowFirstNode:
    """A memcached stand-in on loopback that answers nothing on its first connection
    (until :meth:`close`) and ``END`` to every request line on the others."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()
        self.host, self.port = self._listener.getsockname()[:2]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            if len(self._conns) == 1:
                continue  # the slow one: read nothing, answer nothing
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        pending = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            while b"\r\n" in pending:
                _, pending = pending.split(b"\r\n", 1)
                conn.sendall(b"END\r\n")

    @property
    def connections(self) -> int:
        """How many connections it accepted."""
        return len(self._conns)

    def drop_slow(self) -> None:
        """Close the first connection without answering (its probe then fails)."""
        self._conns[0].close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._conns:
            conn.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def node() -> Iterator[SlowFirstNode]:
    made = SlowFirstNode()
    yield made
    made.close()


def _poll(done: Callable[[], bool], seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= ends:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_slow_probe_does_not_hold_a_returned_node_skipped(node: SlowFirstNode, kind: str) -> None:
    """The breaker opens; the first probe waits on the slow connection; the second,
    a backoff later on a new connection, is answered: closed well before the slow
    probe's read timeout, with that probe still waiting."""
    store = MemcacheSessionStore(
        [f"{node.host}:{node.port}"],
        SECRET,
        1,
        timeout=READ_TIMEOUT,
        failure_threshold=1,
        transport=kind,
    )
    breaker = store.nodes[0].breaker
    try:
        breaker.failure()  # as a timed-out request records it: the breaker opens
        closed = _poll(lambda: breaker.state is BreakerState.CLOSED, WELL_BEFORE)
        seen = (closed, node.connections >= 2, store.nodes[0] in store._prober._probing)
    finally:
        store.close()
    assert (True, True, True) == seen


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_the_slow_probes_late_failure_leaves_the_breaker_closed(
    node: SlowFirstNode, kind: str
) -> None:
    """Once the second probe closed the breaker, the first fails (its connection
    closed): nothing is counted, the breaker stays closed and the prober ends."""
    store = MemcacheSessionStore(
        [f"{node.host}:{node.port}"],
        SECRET,
        1,
        timeout=READ_TIMEOUT,
        failure_threshold=1,
        transport=kind,
    )
    target = store.nodes[0]
    prober = store._prober
    opened: list[BreakerState] = []
    wake = target.breaker._on_open
    assert wake is not None

    def on_open() -> None:  # the breaker's hook: counts each time it opens
        opened.append(target.breaker.state)
        wake()

    target.breaker._on_open = on_open
    try:
        target.breaker.failure()
        closed = _poll(lambda: target.breaker.state is BreakerState.CLOSED, WELL_BEFORE)
        node.drop_slow()
        ended = _poll(lambda: target not in prober._probing and prober._stop is None, WELL_BEFORE)
        seen = (closed, ended, opened, target.breaker.state, target.breaker.failures)
    finally:
        store.close()
    assert (True, True, [BreakerState.OPEN], BreakerState.CLOSED, 0) == seen


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
    opened: list[BreakerState] = []
    wake = target.breaker._on_open
    assert wake is not None

    def on_open() -> None:
        opened.append(target.breaker.state)
        wake()

    target.breaker._on_open = on_open
    with hung(server):
        target.breaker.failure()  # as a timed-out request records it
        both = _poll(lambda: prober._probing.get(target) == MAX_IN_FLIGHT, WELL_BEFORE)
    closed = _poll(lambda: target.breaker.state is BreakerState.CLOSED, WELL_BEFORE)
    idle = _poll(lambda: target not in prober._probing and prober._stop is None, WELL_BEFORE)
    seen = (both, closed, idle, opened, target.breaker.state, target.breaker.failures)
    assert (True, True, True, [BreakerState.OPEN], BreakerState.CLOSED, 0) == seen
