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

from errpolicy_memcache import _wire
from errpolicy_memcache._transport import (
    TRANSPORTS,
    Answer,
    PipelinedTransport,
    PymemcacheTransport,
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
def make(kind: str) -> Iterator[Make]:
    """Transports of ``kind`` to a server or an address (0.3 s read timeout unless
    given), all closed after the test."""
    made: list[Transport] = []

    def make_one(node: MemcachedServer | tuple[str, int], read_timeout: float = 0.3) -> Transport:
        host, port = (node.host, node.port) if isinstance(node, MemcachedServer) else node
        transport = make_transport(kind, host, port, 0.5, read_timeout, 4)
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
