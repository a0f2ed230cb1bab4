"""The fan-out's connection and reply readers, without a memcached server: its timeouts,
replies cut anywhere by the network, and replies that make no sense."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from errpolicy_memcache._wire import (
    Connection,
    NodeFailure,
    _read_gets,
    _read_store,
    _set_read_timeout,
)


def _connected(timeout: float) -> tuple[Connection, socket.socket]:
    ours, peer = socket.socketpair()
    _set_read_timeout(ours, timeout)
    return Connection(ours), peer


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    """A connection whose peer never reads nor writes, with a 50 ms timeout."""
    conn, peer = _connected(0.05)
    try:
        yield conn, peer
    finally:
        conn.close()
        peer.close()


@pytest.fixture
def patient() -> Iterator[tuple[Connection, socket.socket]]:
    """A connection and its peer, with a 2 s timeout: for replies sent in pieces."""
    conn, peer = _connected(2.0)
    try:
        yield conn, peer
    finally:
        conn.close()
        peer.close()


def _send_in_pieces(peer: socket.socket, *pieces: bytes) -> threading.Thread:
    """Send each piece after a short pause, from a thread: each usually arrives alone."""

    def send() -> None:
        for piece in pieces:
            time.sleep(0.02)
            peer.sendall(piece)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_silent_peer_times_out_a_read(pair: tuple[Connection, socket.socket]) -> None:
    """A read that gets no reply raises TimeoutError (kind "timeout"), after the timeout."""
    conn, _ = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        conn.readline()
    assert 0.04 <= time.monotonic() - start < 1.0


def test_a_peer_that_stops_reading_times_out_a_send(
    pair: tuple[Connection, socket.socket],
) -> None:
    """A send into full buffers raises TimeoutError, not a BlockingIOError ("refused")."""
    conn, _ = pair
    with pytest.raises(TimeoutError):
        conn.send(b"x" * (64 * 1024 * 1024))


def test_the_reply_is_read_once_it_arrives(pair: tuple[Connection, socket.socket]) -> None:
    """A timeout bounds the wait; a reply within it is read as usual."""
    conn, peer = pair
    peer.sendall(b"STORED\r\nEND\r\n")
    assert (b"STORED", b"END") == (conn.readline(), conn.readline())


def test_a_closed_peer_is_a_closed_failure(pair: tuple[Connection, socket.socket]) -> None:
    """The peer's end of stream before a reply is kind "closed" (a restarted node)."""
    conn, peer = pair
    peer.close()
    with pytest.raises(NodeFailure) as raised:
        conn.readline()
    assert "closed" == raised.value.kind


def test_replies_that_came_together_are_read_one_by_one(
    pair: tuple[Connection, socket.socket],
) -> None:
    """Two replies in one receive: each reader takes its own, and nothing is left."""
    conn, peer = pair
    peer.sendall(b"STORED\r\nVALUE k 0 2 5\r\nab\r\nEND\r\n")
    assert ("STORED", (b"ab", 5), True) == (_read_store(conn), _read_gets(conn), conn.clean)


def test_a_value_over_many_receives_is_read_whole(
    patient: tuple[Connection, socket.socket],
) -> None:
    """A 300 KB value, with CRLFs inside, that arrives in pieces cut anywhere."""
    conn, peer = patient
    value = b"\r\nEND\r\n" + bytes(range(256)) * 1200
    reply = b"VALUE k 0 %d 12\r\n%s\r\nEND\r\n" % (len(value), value)
    cuts = [0, 3, 20, 5000, 100_000, len(reply) - 4, len(reply) - 1, len(reply)]
    sender = _send_in_pieces(peer, *[reply[a:b] for a, b in itertools.pairwise(cuts)])
    got = _read_gets(conn)
    sender.join()
    assert ((value, 12), True) == (got, conn.clean)


def test_a_line_cut_between_its_cr_and_lf_is_read(
    patient: tuple[Connection, socket.socket],
) -> None:
    """A status line whose CR and LF arrive apart."""
    conn, peer = patient
    sender = _send_in_pieces(peer, b"STORED\r", b"\nEND\r\n")
    line = conn.readline()
    sender.join()
    assert (b"STORED", b"END", True) == (line, conn.readline(), conn.clean)


def test_bytes_after_a_reply_leave_the_connection_unclean(
    pair: tuple[Connection, socket.socket],
) -> None:
    """The reply is read; the bytes after it mean the stream is out of step: not clean."""
    conn, peer = pair
    peer.sendall(b"END\r\nVALUE")
    assert (None, False) == (_read_gets(conn), conn.clean)


@pytest.mark.parametrize(
    "reply",
    [
        b"VALUE k 0 3 1\r\nabcXXEND\r\n",  # no CRLF after the value
        b"VALUE k 0 3 1\r\nabc\r\nENDX\r\n",  # no END after it
        b"VALUE k 0 -2 1\r\nEND\r\n",  # a negative size (its CRLF and END would fit)
        b"HELLO\r\n",  # not a reply to gets
        b"VALUE k 0 3\r\nabc\r\nEND\r\n",  # no CAS token
    ],
)
def test_a_malformed_gets_reply_is_an_error(
    pair: tuple[Connection, socket.socket], reply: bytes
) -> None:
    """A reply that makes no sense raises kind "error" at once (no wait for more bytes)."""
    conn, peer = pair
    peer.sendall(reply)
    with pytest.raises(NodeFailure) as raised:
        _read_gets(conn)
    assert "error" == raised.value.kind


def test_a_server_error_is_a_node_failure(pair: tuple[Connection, socket.socket]) -> None:
    """SERVER_ERROR (a proxy's backend down) is kind "server_error", with the server's words."""
    conn, peer = pair
    peer.sendall(b"SERVER_ERROR out of memory storing object\r\n")
    with pytest.raises(NodeFailure) as raised:
        _read_store(conn)
    assert ("server_error", "SERVER_ERROR out of memory storing object") == (
        raised.value.kind,
        raised.value.detail,
    )
