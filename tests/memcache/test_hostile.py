"""Nodes that are broken or hostile: fake servers on loopback that trickle a reply, send
a line without end, declare a huge value or talk nonsense. Every operation ends by its
deadline (give or take one read timeout) with the node's failure, and memory stays
bounded. Time is asserted only as a hang guard (ten times the deadline)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import errpolicy
import pytest

from errpolicy_memcache import MemcacheSessionStore, NodeStatus, Outcome, OutcomeKind, _transport
from errpolicy_memcache._ids import new_session_id
from errpolicy_memcache._transport import TRANSPORTS, make_transport
from errpolicy_memcache._wire import MAX_LINE, gets

KEY = "errpolicy:session:" + "ab" * 32
# Test-sized timeouts: the store's default deadline is then 4 * (0.2 + 0.2) = 1.6 s.
TIMEOUTS = {"connect_timeout": 0.2, "timeout": 0.2}
DEADLINE = 1.6
HANG_GUARD = 10 * DEADLINE
# How long a fake node keeps misbehaving: past the hang guard, so an operation without
# a deadline would outlast the guard (the defect), yet a broken run still ends.
MISBEHAVE_FOR = 25.0

Behaviour = Callable[[socket.socket, bytes, threading.Event], None]


class FakeNode:
    """A TCP server on loopback: each connection's first request gets ``behaviour``."""

    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()
        host, port = self._listener.getsockname()[:2]
        self.address = f"{host}:{port}"
        self.host, self.port = host, port

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.05)
            request = b""
            while b"\r\n" not in request and not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                request += chunk
            conn.settimeout(None)
            try:
                self._behaviour(conn, request, self._stop)
            except OSError:  # the client gave up and closed: what the test wants
                return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


def _key_of(request: bytes) -> bytes:
    return request.split(b"\r\n", 1)[0].split(b" ")[1]


def trickle(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    """A valid VALUE line, then the value one byte every 0.05 s: each read gets a byte
    well within the read timeout, so only an operation deadline ends the reply."""
    conn.sendall(b"VALUE %s 0 100000 1\r\n" % _key_of(request))
    ends = time.monotonic() + MISBEHAVE_FOR
    while time.monotonic() < ends and not stop.wait(0.05):
        conn.sendall(b"x")


def endless_line(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    """A reply line that never ends, sent as fast as the client reads it."""
    chunk = b"VALUE " + b"A" * 65536
    ends = time.monotonic() + MISBEHAVE_FOR
    while time.monotonic() < ends and not stop.is_set():
        conn.sendall(chunk)


def huge_value(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    """A value that declares 2**40 bytes, then streams them."""
    conn.sendall(b"VALUE %s 0 %d 1\r\n" % (_key_of(request), 2**40))
    ends = time.monotonic() + MISBEHAVE_FOR
    while time.monotonic() < ends and not stop.is_set():
        conn.sendall(b"x" * 65536)


def signed_number(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    """A reply the old Python reader accepted and the C one refused: a sign."""
    conn.sendall(b"VALUE %s 0 +5 1\r\nhello\r\nEND\r\n" % _key_of(request))
    stop.wait(1.0)


@pytest.fixture
def fake() -> Iterator[Callable[[Behaviour], FakeNode]]:
    made: list[FakeNode] = []

    def start(behaviour: Behaviour) -> FakeNode:
        node = FakeNode(behaviour)
        made.append(node)
        return node

    yield start
    for node in made:
        node.close()


@pytest.fixture(params=["c", "python"])
def twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The C gets round (skipped where it is not built), then the Python fan-out."""
    if request.param == "python":
        monkeypatch.setattr(_transport, "_C_GETS", None)
    elif _transport._C_GETS is None:
        pytest.skip("the C gets round is not built (or not used) here")
    param: str = request.param
    return param


# -- one exchange: the transports and both twins of the round ---------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("nodes", [1, 2], ids=["one-node", "fan-out"])
def test_a_trickling_node_ends_at_the_deadline(
    fake: Callable[[Behaviour], FakeNode], kind: str, nodes: int, twin: str
) -> None:
    """A reply trickled a byte at a time fails "timeout" once the deadline passed."""
    transports = []
    for _ in range(nodes):
        node = fake(trickle)
        transports.append(make_transport(kind, node.host, node.port, 0.2, 0.2, 1))
    start = time.perf_counter()
    answers = type(transports[0]).exchange(
        [(t, (gets(KEY),)) for t in transports],
        start + 0.5,  # type: ignore[arg-type]
    )
    took = time.perf_counter() - start
    assert ["timeout"] * nodes == [failure.kind for _, failure, _ in answers if failure]
    assert took < 10 * 0.5  # a hang guard, not a timing claim


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize(
    ("behaviour", "detail"),
    [(endless_line, "reply line too long"), (huge_value, "value too large")],
    ids=["endless-line", "huge-value"],
)
@pytest.mark.parametrize("nodes", [1, 2], ids=["one-node", "fan-out"])
def test_an_unbounded_reply_is_the_nodes_error(
    fake: Callable[[Behaviour], FakeNode],
    kind: str,
    behaviour: Behaviour,
    detail: str,
    nodes: int,
    twin: str,
) -> None:
    """A line without end or a value over the limit stops the read: an "error"."""
    transports = []
    for _ in range(nodes):
        node = fake(behaviour)
        # Generous timeouts: the byte budget, not the clock, must end this read, also
        # when a busy machine runs the fake node's thread late.
        transports.append(make_transport(kind, node.host, node.port, 2.0, 2.0, 1))
    answers = type(transports[0]).exchange([(t, (gets(KEY),)) for t in transports])  # type: ignore[arg-type]
    failures = [failure for _, failure, _ in answers]
    assert ["error"] * nodes == [f.kind for f in failures if f]
    if kind == "pipelined" or nodes > 1:  # pymemcache's own reader: our byte budget
        assert [detail] * nodes == [f.detail for f in failures if f]


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_node_is_sent_nothing_once_the_deadline_passed(
    fake: Callable[[Behaviour], FakeNode], kind: str, twin: str
) -> None:
    """Not the node's fault: "skipped", which its breaker does not count."""
    node = fake(signed_number)
    transport = make_transport(kind, node.host, node.port, 0.2, 0.2, 1)
    (answer,) = type(transport).exchange([(transport, (gets(KEY),))], time.perf_counter() - 1)  # type: ignore[arg-type]
    assert answer[1] is not None
    assert ("skipped", "operation deadline passed") == (answer[1].kind, answer[1].detail)


def test_the_line_limit_is_memcacheds_longest_line_and_more() -> None:
    """A VALUE line with memcached's longest key (250 bytes) fits under MAX_LINE."""
    longest = b"VALUE %s %d %d %d" % (b"k" * 250, 2**32 - 1, 2**64 - 1, 2**64 - 1)
    assert len(longest) < MAX_LINE


# -- the store: every operation ends by its deadline ------------------------------------


@pytest.fixture
def hostile_store(
    fake: Callable[[Behaviour], FakeNode],
    make_store: Callable[..., MemcacheSessionStore],
) -> Callable[[Behaviour], MemcacheSessionStore]:
    def build(behaviour: Behaviour, **options: Any) -> MemcacheSessionStore:
        return make_store([fake(behaviour).address], replicas=1, **{**TIMEOUTS, **options})

    return build


def _failed_start(store: MemcacheSessionStore) -> float:
    """Seconds that start() of an unknown id took to raise PolicyViolation."""
    began = time.monotonic()
    with pytest.raises(errpolicy.PolicyViolation):
        store.start(new_session_id())
    return time.monotonic() - began


def test_a_trickling_node_cannot_hold_a_read_past_its_deadline(
    hostile_store: Callable[..., MemcacheSessionStore], outcomes: list[Outcome]
) -> None:
    """start() ends unavailable, the node timed out; before the deadline it ran 20 s+."""
    took = _failed_start(hostile_store(trickle))
    assert (OutcomeKind.UNAVAILABLE, NodeStatus.TIMEOUT) == (
        outcomes[-1].kind,
        outcomes[-1].nodes[0].status,
    )
    assert took < HANG_GUARD


def test_a_trickling_node_cannot_hold_a_save_past_its_deadline(
    hostile_store: Callable[..., MemcacheSessionStore], outcomes: list[Outcome]
) -> None:
    """save() ends unavailable: the node timed out within the operation's deadline."""

    def slow_ack(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        ends = time.monotonic() + MISBEHAVE_FOR
        for byte in b"STORED" * 1000:
            if time.monotonic() > ends or stop.wait(0.05):
                return
            conn.sendall(bytes([byte]))

    store = hostile_store(slow_ack, operation_timeout=0.6)
    session = store.new_session()
    session["a"] = 1
    began = time.monotonic()
    with pytest.raises(errpolicy.PolicyViolation):
        store.save(session)
    assert (OutcomeKind.UNAVAILABLE, NodeStatus.TIMEOUT) == (
        outcomes[-1].kind,
        outcomes[-1].nodes[0].status,
    )
    assert time.monotonic() - began < 10 * 0.6


@pytest.mark.parametrize(
    "behaviour", [endless_line, huge_value, signed_number], ids=["endless", "huge", "signed"]
)
def test_a_node_talking_nonsense_is_an_error_not_a_session(
    hostile_store: Callable[..., MemcacheSessionStore],
    outcomes: list[Outcome],
    behaviour: Behaviour,
) -> None:
    """The read ends with the node's error reply; nothing it sent is served."""
    # Generous timeouts: the reply's grammar, not the clock, must end this read, also
    # when a busy machine runs the fake node's thread late.
    _failed_start(hostile_store(behaviour, timeout=2.0, operation_timeout=4.0))
    assert (OutcomeKind.UNAVAILABLE, NodeStatus.ERROR) == (
        outcomes[-1].kind,
        outcomes[-1].nodes[0].status,
    )


def test_the_operation_timeout_must_be_positive(
    make_store: Callable[..., MemcacheSessionStore], cluster: Any
) -> None:
    from errpolicy_memcache import ConfigurationError

    with pytest.raises(ConfigurationError, match="operation_timeout"):
        make_store(cluster, operation_timeout=0)


def test_with_locking_the_operation_timeout_covers_the_lock_wait(
    make_store: Callable[..., MemcacheSessionStore], cluster: Any
) -> None:
    from errpolicy_memcache import ConfigurationError

    with pytest.raises(ConfigurationError, match="must exceed lock_timeout"):
        make_store(cluster, locking=True, lock_timeout=1.0, operation_timeout=1.0)
