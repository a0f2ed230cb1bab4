"""The pipelined transport's connection: its timeouts, without a memcached server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from errpolicy_memcache._wire import Connection, _set_read_timeout


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    """A connection whose peer never reads nor writes, with a 50 ms timeout."""
    ours, peer = socket.socketpair()
    _set_read_timeout(ours, 0.05)
    conn = Connection(ours)
    try:
        yield conn, peer
    finally:
        conn.close()
        peer.close()


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
