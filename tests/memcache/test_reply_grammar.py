"""The two readers of a ``gets`` reply, the C round and ``_wire._read_gets``, agree on
every byte string: the same value and CAS, or a failure of the same kind. The grammar is
memcached's, strictly: single spaces, digits only (no sign, tab, ``_``), bounded lines
and values. Replies are fed through a socket pair, as a node would send them."""

from __future__ import annotations

import socket

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from errpolicy_memcache import _native
from errpolicy_memcache._wire import MAX_LINE, Connection, NodeFailure, _read_gets

speedups = _native.speedups
REQUEST = b"gets k\r\n"
LIMIT = 4096  # the largest value either reader accepts here

Verdict = tuple[str, object, object]


def _fed(reply: bytes) -> tuple[socket.socket, socket.socket]:
    """Our end of a socket pair whose peer sent ``reply`` and then closed its side."""
    ours, peer = socket.socketpair()
    ours.settimeout(None)
    peer.sendall(reply)
    peer.shutdown(socket.SHUT_WR)
    return ours, peer


def python_reads(reply: bytes) -> Verdict:
    """What the Python fan-out makes of ``reply``: reader, then the in-step check."""
    ours, peer = _fed(reply)
    conn = Connection(ours, LIMIT)
    try:
        found = _read_gets(conn)
    except NodeFailure as failure:
        return ("failure", failure.kind, None)
    finally:
        peer.close()
    clean = conn.clean
    conn.close()
    if not clean:
        return ("failure", "error", None)
    return ("miss", None, None) if found is None else ("hit", found[0], found[1])


def c_reads(reply: bytes) -> Verdict:
    """What the C round makes of ``reply``."""
    assert speedups is not None
    ours, peer = _fed(reply)
    try:
        (found,) = speedups.gets_round([ours.fileno()], REQUEST, False, None, LIMIT)
    finally:
        ours.close()
        peer.close()
    if isinstance(found, NodeFailure):
        return ("failure", found.kind, None)
    return ("miss", None, None) if found is None else ("hit", found[0], found[1])


needs_c = pytest.mark.skipif(speedups is None, reason="the C speedups are not built here")

_number = st.one_of(
    st.integers(min_value=0, max_value=2**64 + 5).map(lambda n: b"%d" % n),
    st.sampled_from([b"+5", b"-1", b"5_0", b"0x5", b"05", b" 5", b"5 ", b"\t5", b"", b"1e3"]),
    st.text("0123456789+-_ \t", max_size=22).map(str.encode),
)
_key = st.one_of(
    st.just(b"k"),
    st.binary(min_size=0, max_size=8),
    st.integers(min_value=249, max_value=252).map(lambda n: b"k" * n),
)
_sep = st.sampled_from([b" ", b" ", b" ", b"  ", b"\t", b""])


@st.composite
def _value_reply(draw: st.DrawFn) -> bytes:
    """A VALUE reply built from parts, each valid or not, with a value of the declared
    length or not, and the closing END or not."""
    value = draw(st.binary(max_size=64))
    size = draw(st.one_of(st.just(b"%d" % len(value)), _number))
    parts = [b"VALUE", draw(_key), draw(_number), size, draw(_number)]
    line = parts[0]
    for part in parts[1:]:
        line += draw(_sep) + part
    tail = draw(st.sampled_from([b"\r\nEND\r\n", b"\r\nEND\r\nX", b"XXEND\r\n", b"\r\n", b""]))
    return line + b"\r\n" + value + tail


def _mutated(reply: bytes, data: st.DataObject) -> bytes:
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(reply)))
        change = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.binary(min_size=1, max_size=1))
        if change == "insert":
            reply = reply[:at] + byte + reply[at:]
        elif change == "delete":
            reply = reply[:at] + reply[at + 1 :]
        else:
            reply = reply[:at] + byte + reply[at + 1 :]
    return reply


_replies = st.one_of(
    _value_reply(),
    st.sampled_from(
        [b"END\r\n", b"END\r\nEXTRA", b"ERROR\r\n", b"SERVER_ERROR out of memory\r\n", b"HI\r\n"]
    ),
    st.binary(max_size=80),
    st.integers(MAX_LINE - 2, MAX_LINE + 3).map(lambda n: b"VALUE " + b"A" * n + b"\r\n"),
)


@needs_c
@settings(max_examples=400, deadline=None)
@given(_replies, st.data())
@example(b"VALUE k 0 +5 1\r\nhello\r\nEND\r\n", None)
@example(b"VALUE k 0 5\t1\r\nhello\r\nEND\r\n", None)
@example(b"VALUE k 0 5_0 1\r\nhello\r\nEND\r\n", None)
@example(b"VALUE k 0 5 -1\r\nhello\r\nEND\r\n", None)
def test_the_c_and_python_readers_agree(reply: bytes, data: st.DataObject | None) -> None:
    """Random, built and mutated replies: the same verdict from both readers."""
    if data is not None:
        reply = _mutated(reply, data)
    assert python_reads(reply) == c_reads(reply)


@pytest.mark.parametrize(
    "reply",
    [
        b"VALUE k 0 +5 1\r\nhello\r\nEND\r\n",
        b"VALUE k 0 5\t1\r\nhello\r\nEND\r\n",
        b"VALUE k 0 5_0 1\r\nhello\r\nEND\r\n",
        b"VALUE k 0 5 -1\r\nhello\r\nEND\r\n",
        b"VALUE k  0 5 1\r\nhello\r\nEND\r\n",
        b"VALUE k 0 5 1 \r\nhello\r\nEND\r\n",
        b"VALUE k 4294967296 5 1\r\nhello\r\nEND\r\n",
    ],
    ids=["sign", "tab", "underscore", "negative-cas", "two-spaces", "trailing-space", "flags"],
)
def test_the_python_reader_refuses_what_memcached_never_sends(reply: bytes) -> None:
    """Replies the Python reader once accepted (int() is lenient) are errors."""
    assert ("failure", "error", None) == python_reads(reply)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"VALUE k 0 5 1\r\nhello\r\nEND\r\n", ("hit", b"hello", 1)),
        (b"VALUE k 4294967295 0 18446744073709551615\r\n\r\nEND\r\n", ("hit", b"", 2**64 - 1)),
        (b"END\r\n", ("miss", None, None)),
    ],
    ids=["hit", "limits", "miss"],
)
def test_the_python_reader_takes_what_memcached_sends(reply: bytes, expected: Verdict) -> None:
    assert expected == python_reads(reply)


def test_a_value_over_the_limit_is_refused_before_it_is_read() -> None:
    """The declared length alone decides: nothing of the value needs to arrive."""
    assert ("failure", "error", None) == python_reads(b"VALUE k 0 %d 1\r\n" % (LIMIT + 1))
