"""The asyncio transport's reply parser (``_aio_transport.parse_replies``): the C
``gets_reply`` and the ``_wire`` readers give the same answers, from the first byte of
a reply to its last and past it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import _aio_transport, _native
from errpolicy_memcache._aio_transport import parse_replies
from errpolicy_memcache._wire import MAX_VALUE, NodeFailure, gets, set_

needs_c = pytest.mark.skipif(_native.speedups is None, reason="the C speedups are not built here")
GETS = (gets("k"),)
REPLIES = [
    b"END\r\n",
    b"VALUE k 0 5 7\r\nhello\r\nEND\r\n",
    b"VALUE k 0 0 1\r\n\r\nEND\r\n",
    b"VALUE " + b"k" * 250 + b" 4294967295 4 18446744073709551615\r\nab\r\n\r\nEND\r\n",
]
BROKEN = [
    (b"END\r\nX", "error", "unexpected bytes after the reply"),
    (b"VALUE k 0 5 7\r\nhello\r\nEND\r\nVALUE", "error", "unexpected bytes after the reply"),
    (b"VALUE k 0 +5 7\r\nhello\r\nEND\r\n", "error", "unexpected reply"),
    (b"VALUE k 0 5 7\r\nhelloXXEND\r\n", "error", "malformed value block"),
    (b"X" * 1100, "error", "reply line too long"),
    (b"VALUE k 0 %d 1\r\n" % (MAX_VALUE + 1), "error", "value too large"),
    (b"SERVER_ERROR out of memory\r\n", "server_error", "SERVER_ERROR out of memory"),
    (b"ERROR\r\n", "error", "ERROR"),
]


@pytest.fixture
def python_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``_wire`` readers alone, as where the C speedups are not built."""
    monkeypatch.setattr(_aio_transport, "_C_REPLY", None)


def _python(data: bytes, commands: Any = GETS) -> Any:
    c_reply = _aio_transport._C_REPLY
    _aio_transport._C_REPLY = None
    try:
        return parse_replies(data, commands, MAX_VALUE)
    finally:
        _aio_transport._C_REPLY = c_reply


def _shape(result: Any) -> Any:
    """A result as the twins must agree on it (a failure by its kind)."""
    if isinstance(result, NodeFailure):
        return ("failure", result.kind)
    return result


@needs_c
@pytest.mark.parametrize("reply", REPLIES)
def test_a_whole_reply_reads_the_same_in_both_twins(reply: bytes) -> None:
    """A hit or a miss: the same value and token."""
    assert _python(reply) == parse_replies(reply, GETS, MAX_VALUE)


@pytest.mark.parametrize("reply", REPLIES)
def test_every_part_of_a_reply_asks_for_more(reply: bytes) -> None:
    """Each strict prefix of a reply asks for more bytes, never more than the reply has,
    and both twins ask for as many."""
    for end in range(len(reply)):
        c = parse_replies(reply[:end], GETS, MAX_VALUE)
        python = _python(reply[:end])
        assert (int, int) == (type(c), type(python))
        assert end < python <= len(reply)
        assert python == c


@pytest.mark.parametrize(("reply", "kind", "detail"), BROKEN)
def test_a_broken_reply_is_the_nodes_failure(
    reply: bytes, kind: str, detail: str, python_twin: None
) -> None:
    """The ``_wire`` readers: the failure's kind and detail."""
    failure = parse_replies(reply, GETS, MAX_VALUE)
    assert isinstance(failure, NodeFailure)
    assert (kind, True) == (failure.kind, failure.detail.startswith(detail))


@needs_c
@pytest.mark.parametrize(("reply", "kind", "detail"), BROKEN)
def test_the_c_parser_fails_a_broken_reply_alike(reply: bytes, kind: str, detail: str) -> None:
    """``gets_reply``: the same kind, and a detail that starts the same."""
    failure = parse_replies(reply, GETS, MAX_VALUE)
    assert isinstance(failure, NodeFailure)
    assert (kind, True) == (failure.kind, failure.detail.startswith(detail))


def test_two_replies_in_one_piece_answer_two_commands() -> None:
    """A batch of two commands: both replies from one packet, in order."""
    commands = (set_("k", b"v", 60), gets("k"))
    data = b"STORED\r\nVALUE k 0 1 9\r\nv\r\nEND\r\n"
    assert ["STORED", (b"v", 9)] == parse_replies(data, commands, MAX_VALUE)
    assert len(b"STORED\r\n") + 1 == parse_replies(data[:8], commands, MAX_VALUE)


def test_a_value_over_the_connections_limit_is_refused_at_its_line() -> None:
    """The limit is the connection's (the store's max_size), read from the VALUE line
    before any byte of the value is buffered."""
    failure = parse_replies(b"VALUE k 0 11 1\r\n", GETS, 10)
    assert isinstance(failure, NodeFailure)
    assert ("error", "value too large") == (failure.kind, failure.detail)


@needs_c
@given(
    st.binary(max_size=64)
    | st.builds(lambda a, b: a + b, st.sampled_from(REPLIES), st.binary(max_size=8))
)
def test_the_twins_agree_on_any_bytes(data: bytes) -> None:
    """Random bytes, and replies with bytes after them: the same answer's shape."""
    assert _shape(_python(data)) == _shape(parse_replies(data, GETS, MAX_VALUE))


@needs_c
@pytest.mark.parametrize("args", [(), (b"END\r\n",), ("END", 10), (b"END\r\n", -1), (b"", 2**41)])
def test_gets_reply_refuses_bad_arguments(args: tuple[object, ...]) -> None:
    """Wrong counts, types and limits raise, as the C round's arguments do."""
    assert _native.speedups is not None
    with pytest.raises((TypeError, ValueError)):
        _native.speedups.gets_reply(*args)
