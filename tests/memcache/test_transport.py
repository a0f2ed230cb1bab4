"""The transports against real memcached: a batch over several nodes is fanned out (every
node sent its requests before any reply is read) by both, with the same replies, and a
node that dies, hangs, restarts or talks nonsense fails alone."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import _transport, _wire
from errpolicy_memcache._transport import (
    TRANSPORTS,
    Answer,
    PipelinedTransport,
    PymemcacheTransport,
    agreed_gets,
    make_transport,
)
from errpolicy_memcache._wire import Command, add, cas, delete, gets, set_, touch
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes

Transport = PipelinedTransport | PymemcacheTransport
Make = Callable[..., Transport]
KEY = "errpolicy:session:" + "ab" * 32
VALUE = b"a session's bytes"
LINGER_0 = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


@pytest.fixture(params=TRANSPORTS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each transport in turn."""
    param: str = request.param
    return param


@pytest.fixture
def make(kind: str, store_timeouts: dict[str, float]) -> Iterator[Make]:
    """Transports of ``kind`` to a server or an address (timeouts from ``store_timeouts``
    unless given), all closed after the test."""
    made: list[Transport] = []
    connect_timeout = store_timeouts["connect_timeout"]

    def make_one(
        node: MemcachedServer | tuple[str, int], read_timeout: float | None = None
    ) -> Transport:
        host, port = (node.host, node.port) if isinstance(node, MemcachedServer) else node
        timeout = store_timeouts["timeout"] if read_timeout is None else read_timeout
        transport = make_transport(kind, host, port, connect_timeout, timeout, 4)
        made.append(transport)
        return transport

    yield make_one
    for transport in made:
        transport.close()


def exchange(batch: Sequence[tuple[Transport, Sequence[Command]]]) -> list[Answer]:
    """One exchange, through the class of the batch's transports (as the store does)."""
    kinds = {type(transport) for transport, _ in batch}
    assert 1 == len(kinds)
    return kinds.pop().exchange(batch)


def kinds_of(answers: list[Answer]) -> list[str | None]:
    """Each node's failure kind, None where it answered."""
    return [None if failure is None else failure.kind for _, failure, _ in answers]


def values_of(answers: list[Answer]) -> list[list[Any]]:
    """Each node's reply values, CAS tokens replaced by "token" (they differ per write)."""
    return [
        [(v[0], "token") if isinstance(v, tuple) and isinstance(v[1], int) else v for v in values]
        for values, _, _ in answers
    ]


def reads(transports: Sequence[Transport], key: str = KEY) -> list[tuple[Transport, list[Command]]]:
    """A batch that reads ``key`` from each transport's node."""
    return [(transport, [gets(key)]) for transport in transports]


def stored(cluster: MemcachedCluster, key: str = KEY, value: bytes = VALUE) -> None:
    """``value`` written under ``key`` on every node of ``cluster``, by plain pymemcache."""
    for server in cluster.servers:
        client = Client((server.host, server.port), connect_timeout=1.0, timeout=1.0)
        assert client.set(key, value, noreply=False)  # stored before anything asks for it
        client.close()


def test_both_transports_and_the_pymemcache_api_give_the_same_replies(
    cluster: MemcachedCluster,
) -> None:
    """Hits (one of 200 KB, over many receives), misses and every command, several per
    node: the same values from either fan-out and from one node through pymemcache's API."""
    big = bytes(range(256)) * 800
    stored(cluster, "big", big)
    expected = [
        "STORED",
        (b"v1", "token"),
        None,
        "NOT_STORED",
        "EXISTS",
        "NOT_FOUND",
        "TOUCHED",
        "DELETED",
        "NOT_FOUND",
        None,
        (big, "token"),
    ]
    replies: dict[str, list[list[Any]]] = {}
    ways = [("pipelined", 3), ("pymemcache", 3), ("pymemcache", 1)]
    for way, size in ways:
        key = f"k-{way}-{size}"
        commands = [
            set_(key, b"v1", 60),
            gets(key),
            gets(key + "-missing"),
            add(key, b"v2", 60),
            cas(key, b"v3", 60, 1),  # a token nothing has: someone else wrote
            cas(key + "-missing", b"v3", 60, 1),
            touch(key, 120),
            delete(key),
            delete(key),
            gets(key),
            gets("big"),
        ]
        transports = [
            make_transport(way, s.host, s.port, 0.5, 0.3, 4) for s in cluster.servers[:size]
        ]
        answers = exchange([(transport, commands) for transport in transports])
        for transport in transports:
            transport.close()
        assert [None] * size == kinds_of(answers)
        replies[f"{way} x{size}"] = values_of(answers)
    assert {
        "pipelined x3": [expected] * 3,
        "pymemcache x3": [expected] * 3,
        "pymemcache x1": [expected],
    } == replies


@pytest.mark.hangs
def test_every_node_is_sent_its_request_before_any_reply_is_read(
    cluster: MemcachedCluster, make: Make
) -> None:
    """The first node is paused and resumed only once the second has been asked: read
    one after the other, the first would time out (1 s) before the second is asked."""
    stored(cluster)
    first, second = cluster[0], cluster[1]
    transports = [make(first, read_timeout=1.0), make(second, read_timeout=1.0)]
    exchange(reads(transports))  # one pooled connection per node
    asked_before = int(second.stats()["cmd_get"])
    first.pause()

    def resume_once_the_second_is_asked() -> None:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if int(second.stats()["cmd_get"]) > asked_before:
                first.resume()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=resume_once_the_second_is_asked)
    watcher.start()
    try:
        answers = exchange(reads(transports))
    finally:
        watcher.join()
    assert ([None, None], [[(VALUE, "token")]] * 2) == (kinds_of(answers), values_of(answers))


def test_a_killed_node_fails_alone(cluster: MemcachedCluster, make: Make) -> None:
    """Its pooled connection is closed: one fresh try, refused; the others answer."""
    stored(cluster)
    transports = [make(server) for server in cluster.servers]
    exchange(reads(transports))
    cluster[1].kill()
    answers = exchange(reads(transports))
    assert ([None, "refused", None], [[(VALUE, "token")], [], [(VALUE, "token")]]) == (
        kinds_of(answers),
        values_of(answers),
    )


@pytest.mark.hangs
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel-timeouts", "python-timeouts"])
def test_a_paused_node_times_out_alone(
    cluster: MemcachedCluster, make: Make, monkeypatch: pytest.MonkeyPatch, kernel: bool
) -> None:
    """A hung node is a "timeout" after about the read timeout (0.3 s), enforced by the
    kernel or by Python socket timeouts; the others answer; its connection is dropped."""
    if kernel and not _wire.KERNEL_TIMEOUTS:
        pytest.skip("kernel timeouts are not used on this platform")
    monkeypatch.setattr(_wire, "KERNEL_TIMEOUTS", kernel)
    stored(cluster)
    transports = [make(server) for server in cluster.servers]
    exchange(reads(transports))
    # The sockets are the kind the test is about: blocking, or with a Python timeout.
    assert [None if kernel else 0.3] * 3 == [t._idle[0]._sock.gettimeout() for t in transports]
    cluster[0].pause()
    start = time.monotonic()
    answers = exchange(reads(transports))
    elapsed = time.monotonic() - start
    assert (["timeout", None, None], [[], [(VALUE, "token")], [(VALUE, "token")]], 0) == (
        kinds_of(answers),
        values_of(answers),
        len(transports[0]._idle),
    )
    assert 0.25 <= elapsed < 1.0


def test_a_restarted_node_is_asked_again_on_a_fresh_connection(
    cluster: MemcachedCluster, make: Make
) -> None:
    """The pooled connection to the old process is found closed: the request goes once
    more on a new connection, which answers (the new process has an empty cache)."""
    stored(cluster)
    transports = [make(cluster[0]), make(cluster[1])]
    exchange(reads(transports))
    (stale,) = transports[1]._idle
    cluster[1].restart()
    answers = exchange(reads(transports))
    (kept,) = transports[1]._idle
    assert ([None, None], [[(VALUE, "token")], [None]], False, -1) == (
        kinds_of(answers),
        values_of(answers),
        kept is stale,
        stale._sock.fileno(),  # closed
    )


def test_a_client_goes_on_through_its_api_after_a_fan_out(cluster: MemcachedCluster) -> None:
    """The fan-out reads a client's socket to the last byte: the same client then works
    through pymemcache's API, and a single node's batch (the API) keeps it pooled."""
    big = b"x" * 150_000
    stored(cluster, "big", big)
    transports = [PymemcacheTransport(s.host, s.port, 0.5, 0.3, 4) for s in cluster.servers]
    try:
        answers = PymemcacheTransport.exchange(
            [(t, [set_("k", b"v", 60), gets("big"), gets("missing")]) for t in transports]
        )
        assert [["STORED", (big, "token"), None]] * 3 == values_of(answers)
        (conn,) = transports[0]._idle
        assert (conn._sock, big, b"v") == (
            conn.client.sock,
            conn.client.get("big"),
            conn.client.get("k"),
        )
        (single,) = PymemcacheTransport.exchange([(transports[0], [gets("k")])])
        assert ([(b"v", "token")], [conn]) == (values_of([single])[0], list(transports[0]._idle))
    finally:
        for transport in transports:
            transport.close()


class FakeNode:
    """A TCP server on 127.0.0.1 playing a node no real memcached is: the i-th connection
    follows ``scripts[i]`` (the last script for any beyond): bytes to send once a request
    is read, or None to close the connection at once (with a reset if ``reset``), which
    :attr:`dropped` counts. After its script, a connection waits for the client to close
    it, which :attr:`closed` counts."""

    def __init__(self, *scripts: Sequence[bytes | None], reset: bool = False) -> None:
        self._scripts = scripts
        self._reset = reset
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self.connections = 0
        self.closed = threading.Semaphore(0)
        self.dropped = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            script = self._scripts[min(self.connections, len(self._scripts) - 1)]
            self.connections += 1
            with conn:
                conn.settimeout(5.0)
                self._play(conn, script)

    def _play(self, conn: socket.socket, script: Sequence[bytes | None]) -> None:
        try:
            for reply in script:
                if reply is None:
                    if self._reset:  # linger 0: close() sends a reset, not a FIN
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    conn.close()
                    self.dropped.release()
                    return
                if not conn.recv(65536):
                    return
                conn.sendall(reply)
            if conn.recv(65536) == b"":
                self.closed.release()
        except OSError:
            return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeNode]]:
    """Start fake nodes (:class:`FakeNode`); all closed after the test."""
    started: list[FakeNode] = []

    def start(*scripts: Sequence[bytes | None], reset: bool = False) -> FakeNode:
        node = FakeNode(*scripts, reset=reset)
        started.append(node)
        return node

    yield start
    for node in started:
        node.close()


def test_a_node_talking_nonsense_is_an_error_and_its_connection_dropped(
    cluster: MemcachedCluster, make: Make, fake: Callable[..., FakeNode]
) -> None:
    """A reply that is no memcached reply: "error" for that node (not counted against
    its health), the client closed, never pooled; the real node answers."""
    stored(cluster)
    bogus = fake([b"HELLO THERE\r\n"])
    transports = [make(cluster[0]), make(bogus.address)]
    answers = exchange(reads(transports))
    assert ([None, "error"], [[(VALUE, "token")], []], 0) == (
        kinds_of(answers),
        values_of(answers),
        len(transports[1]._idle),
    )
    assert bogus.closed.acquire(timeout=2.0)


def test_bytes_after_a_reply_drop_the_connection(
    cluster: MemcachedCluster, make: Make, fake: Callable[..., FakeNode]
) -> None:
    """A reply followed by bytes nobody asked for: the stream is out of step, so the
    reply is not trusted (an "error") and the connection is closed, not pooled."""
    stored(cluster)
    chatty = fake([b"END\r\nVALUE"])
    transports = [make(cluster[0]), make(chatty.address)]
    answers = exchange(reads(transports))
    assert ([None, "error"], [[(VALUE, "token")], []], 0) == (
        kinds_of(answers),
        values_of(answers),
        len(transports[1]._idle),
    )
    assert chatty.closed.acquire(timeout=2.0)


def test_a_connection_closed_before_any_reply_is_retried_once(
    cluster: MemcachedCluster, make: Make, fake: Callable[..., FakeNode]
) -> None:
    """A node that closes every connection before answering: the pooled connection and
    one fresh one are tried, no more, and the node is "closed"."""
    closing = fake([b"END\r\n", None], [None])
    transports = [make(cluster[0]), make(closing.address)]
    exchange(reads(transports))
    answers = exchange(reads(transports))
    assert (["closed"], 2) == (kinds_of(answers)[1:], closing.connections)


def test_a_connection_reset_while_pooled_is_retried_on_a_fresh_one(
    cluster: MemcachedCluster, make: Make, fake: Callable[..., FakeNode]
) -> None:
    """The node reset the pooled connection (its send fails): a new connection answers."""
    resetting = fake([b"END\r\n", None], [b"END\r\n"], reset=True)
    transports = [make(cluster[0]), make(resetting.address)]
    exchange(reads(transports))
    assert resetting.dropped.acquire(timeout=2.0)
    time.sleep(0.05)  # the reset reaches the pooled socket
    answers = exchange(reads(transports))
    assert ([None, None], [None], 2) == (
        kinds_of(answers),
        values_of(answers)[1],
        resetting.connections,
    )


def test_a_connection_closed_after_a_reply_is_not_retried(
    cluster: MemcachedCluster, make: Make, fake: Callable[..., FakeNode]
) -> None:
    """Closed after the first of two replies: the first command ran, so the commands are
    not sent again (a retried set or add could apply twice); the node is "closed"."""
    halfway = fake([b"END\r\n", b"STORED\r\n", None])
    transports = [make(cluster[0]), make(halfway.address)]
    exchange(reads(transports))
    answers = exchange([reads(transports)[0], (transports[1], [set_("k", b"v", 60), gets("k")])])
    assert ([None, "closed"], 1) == (kinds_of(answers), halfway.connections)


# -- agreed_gets: one gets to every node, the value alone when they all hold it ---------


class Path:
    """Which way :func:`agreed_gets` runs, and what it called: "c" (the C round, which
    compares the values; ``calls`` holds each call's arguments after the request) or
    "python" (no C round: ``_fan_out``, then compared in Python; ``calls`` holds one
    entry per ``_fan_out``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[Any, ...]] = []


@pytest.fixture(params=["c", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each way of :func:`agreed_gets` in turn, in the same run: the C round (skipped
    where it is not built) and the Python one (``_C_GETS`` set to None)."""
    chosen = Path(request.param)
    if chosen.name == "python":
        fan_out = _transport._fan_out

        def fan_out_recorded(batch: Any, *deadline: float) -> list[Answer]:
            chosen.calls.append(())
            return fan_out(batch, *deadline)

        monkeypatch.setattr(_transport, "_C_GETS", None)
        monkeypatch.setattr(_transport, "_fan_out", fan_out_recorded)
        return chosen
    c_gets = _transport._C_GETS
    if c_gets is None:
        pytest.skip("the C gets round is not built (or not used) here")

    def c_gets_recorded(fds: Sequence[int], request: bytes, *rest: Any) -> Any:
        chosen.calls.append(rest[:1])  # agree; then the deadline and the value limit
        return c_gets(fds, request, *rest)

    monkeypatch.setattr(_transport, "_C_GETS", c_gets_recorded)
    return chosen


def put(server: MemcachedServer, value: bytes, key: str = KEY) -> None:
    """``value`` written under ``key`` on one node, by plain pymemcache."""
    client = Client((server.host, server.port), connect_timeout=1.0, timeout=1.0)
    assert client.set(key, value, noreply=False)
    client.close()


def holding(cluster: MemcachedCluster, values: Sequence[bytes | None]) -> list[MemcachedServer]:
    """The first ``len(values)`` nodes of ``cluster``, each holding its value under KEY
    (None: nothing, a miss)."""
    servers = cluster.servers[: len(values)]
    for server, value in zip(servers, values, strict=True):
        if value is not None:
            put(server, value)
    return servers


class Counts:
    """A node's ``total_connections`` (every connection it accepted so far), asked over
    one connection kept open, so that asking opens and closes none. Not
    ``curr_connections``: memcached lowers it only once a worker thread sees a closed
    connection's EOF, which on a busy machine can come after the client's close()."""

    def __init__(self, server: MemcachedServer) -> None:
        self._sock = socket.create_connection((server.host, server.port), timeout=2.0)

    def __call__(self) -> int:
        self._sock.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = self._sock.recv(65536)
            assert chunk, "closed while reading stats"
            buf += chunk
        stats = dict(
            line.split(" ", 2)[1:] for line in buf.decode().splitlines() if line.startswith("STAT ")
        )
        return int(stats["total_connections"])

    def close(self) -> None:
        self._sock.close()


def checked_answers(result: bytes | list[Answer], before: float) -> list[Answer]:
    """``result`` as the answers it must be, each answer's time checked: taken after
    ``before`` and by now."""
    assert isinstance(result, list), result
    now = time.perf_counter()
    assert all(isinstance(t, float) and before <= t <= now for _, _, t in result)
    return result


AGREEING = {
    "one node": [VALUE],
    "two nodes": [VALUE, VALUE],
    "three nodes": [VALUE, VALUE, VALUE],
    "protocol bytes": [b"x\r\nEND\r\n", b"x\r\nEND\r\n"],
    "empty": [b"", b""],
    "empty, three nodes": [b"", b"", b""],
    "300 kB": [bytes(range(256)) * 1200] * 3,
}


@pytest.mark.parametrize("values", AGREEING.values(), ids=AGREEING.keys())
def test_agreed_gets_gives_the_value_alone_when_every_node_holds_the_same_bytes(
    cluster: MemcachedCluster, make: Make, path: Path, values: list[bytes]
) -> None:
    """The bytes alone (b"" for empty values, not a miss), whatever the CAS tokens (the
    first node's value was written twice: its token differs); one round, compared in
    C on the C path."""
    servers = holding(cluster, values)
    put(servers[0], values[0])  # a second write: another CAS token on the first node
    transports = [make(server) for server in servers]
    result = agreed_gets(transports, gets(KEY))
    assert (bytes, values[0]) == (type(result), result)
    assert {"c": [(True,)], "python": [()]}[path.name] == path.calls


DISAGREEING = {
    "same length, other bytes": [b"one", b"two"],
    "the first a prefix of the second": [b"abc", b"abcd"],
    "the second a prefix of the first": [b"abcd", b"abc"],
    "two agree, the third not": [VALUE, VALUE, b"other"],
    "the last misses": [VALUE, None],
    "the first misses": [None, VALUE],
    "empty and a miss": [b"", None],
    "a miss and empty": [None, b""],
    "every node misses": [None, None],
    "every node of three misses": [None, None, None],
}


@pytest.mark.parametrize("values", DISAGREEING.values(), ids=DISAGREEING.keys())
def test_agreed_gets_gives_every_answer_when_the_nodes_differ(
    cluster: MemcachedCluster, make: Make, path: Path, values: list[bytes | None]
) -> None:
    """Other bytes, another length, a miss anywhere (an empty value is no miss): each
    node's answer, the same as the exchange of the same reads gives; the connections
    are pooled all the same."""
    transports = [make(server) for server in holding(cluster, values)]
    before = time.perf_counter()
    answers = checked_answers(agreed_gets(transports, gets(KEY)), before)
    expected = [[None] if value is None else [(value, "token")] for value in values]
    assert ([None] * len(values), expected) == (kinds_of(answers), values_of(answers))
    assert (kinds_of(answers), values_of(answers)) == (
        kinds_of(exchange(reads(transports))),
        values_of(exchange(reads(transports))),
    )
    assert [1] * len(values) == [len(t._idle) for t in transports]


@pytest.mark.parametrize("pooled", [True, False], ids=["pooled", "first-call"])
def test_agreed_gets_with_a_killed_node_gives_its_failure_and_the_others_values(
    cluster: MemcachedCluster, make: Make, path: Path, pooled: bool
) -> None:
    """A pooled connection to the killed node is found closed and tried once more on a
    fresh one, refused; with none pooled, the new connection is refused at once."""
    stored(cluster)
    transports = [make(server) for server in cluster.servers]
    if pooled:
        assert VALUE == agreed_gets(transports, gets(KEY))
        assert [1, 1, 1] == [len(t._idle) for t in transports]
    cluster[1].kill()
    before = time.perf_counter()
    answers = checked_answers(agreed_gets(transports, gets(KEY)), before)
    assert (
        [None, "refused", None],
        [[(VALUE, "token")], [], [(VALUE, "token")]],
        [1, 0, 1],
    ) == (kinds_of(answers), values_of(answers), [len(t._idle) for t in transports])


@pytest.mark.hangs
def test_agreed_gets_with_a_paused_node_times_out_after_the_read_timeout(
    cluster: MemcachedCluster, make: Make, path: Path
) -> None:
    """A hung node is a "timeout" after about the read timeout (0.3 s); the others
    answer and stay pooled; the hung node's connection is dropped."""
    stored(cluster)
    transports = [make(server) for server in cluster.servers]
    assert VALUE == agreed_gets(transports, gets(KEY))
    cluster[2].pause()
    start, before = time.monotonic(), time.perf_counter()
    answers = checked_answers(agreed_gets(transports, gets(KEY)), before)
    elapsed = time.monotonic() - start
    assert (
        [None, None, "timeout"],
        [[(VALUE, "token")], [(VALUE, "token")], []],
        [1, 1, 0],
    ) == (kinds_of(answers), values_of(answers), [len(t._idle) for t in transports])
    assert 0.25 <= elapsed < 1.0


def test_agreed_gets_pools_its_connections_again(
    cluster: MemcachedCluster, make: Make, path: Path
) -> None:
    """After an agreeing read each node's connection is back in its pool, and the next
    read goes over it: over many reads, no node accepts a connection more (memcached's
    connection counter, asked over a connection of its own, stays the same)."""
    stored(cluster)
    # A reply later than 0.3 s (a busy machine) would close its connection: no node hangs.
    transports = [make(server, read_timeout=5.0) for server in cluster.servers]
    assert VALUE == agreed_gets(transports, gets(KEY))
    pooled = [list(t._idle) for t in transports]
    counts = [Counts(server) for server in cluster.servers]
    try:
        first = [count() for count in counts]
        results = [agreed_gets(transports, gets(KEY)) for _ in range(50)]
        last = [count() for count in counts]
    finally:
        for count in counts:
            count.close()
    assert ([VALUE] * 50, first) == (results, last)
    assert pooled == [list(t._idle) for t in transports]
    assert [1, 1, 1] == [len(p) for p in pooled]


def test_agreed_gets_asks_a_restarted_node_again_and_then_agrees(
    cluster: MemcachedCluster, make: Make, path: Path
) -> None:
    """The pooled connection to the old process is found closed: the request goes once
    more on a new connection, whose value (written to the new process) agrees with the
    other node's: the bytes alone, and the new connection pooled."""
    stored(cluster)
    transports = [make(cluster[0]), make(cluster[1])]
    assert VALUE == agreed_gets(transports, gets(KEY))
    (stale,) = transports[1]._idle
    cluster[1].restart()
    put(cluster[1], VALUE)
    result = agreed_gets(transports, gets(KEY))
    (kept,) = transports[1]._idle
    assert (VALUE, False, -1) == (result, kept is stale, stale._sock.fileno())
    assert VALUE == agreed_gets(transports, gets(KEY))
    assert [kept] == list(transports[1]._idle)


def test_agreed_gets_retries_a_closed_connection_only_once(
    cluster: MemcachedCluster, make: Make, path: Path, fake: Callable[..., FakeNode]
) -> None:
    """A node that closes every connection before answering: the pooled connection and
    one fresh one are tried, no more; the node is "closed", the real one answers."""
    stored(cluster)
    reply = b"VALUE %s 0 %d 1\r\n%s\r\nEND\r\n" % (KEY.encode(), len(VALUE), VALUE)
    closing = fake([reply, None], [None])
    transports = [make(cluster[0]), make(closing.address)]
    assert VALUE == agreed_gets(transports, gets(KEY))  # the fake node agreed, once
    assert closing.dropped.acquire(timeout=2.0)  # then closed that connection
    before = time.perf_counter()
    answers = checked_answers(agreed_gets(transports, gets(KEY)), before)
    assert ([None, "closed"], [[(VALUE, "token")], []], 2) == (
        kinds_of(answers),
        values_of(answers),
        closing.connections,
    )


def test_agreed_gets_of_no_nodes_is_no_answers(path: Path) -> None:
    """Both paths give the empty list (nothing sent, nothing to agree on)."""
    assert [] == agreed_gets([], gets(KEY))
