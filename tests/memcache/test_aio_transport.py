"""The asyncio transport against fake nodes on loopback (asyncio servers on the test's
own loop): replies in pieces or together, late, unasked, endless or huge; the round's
timers; cancellation. Each runs over both reply parsers (C and the ``_wire`` readers).
Time is asserted only as a hang guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from errpolicy_memcache import _aio_transport, _native
from errpolicy_memcache._aio_transport import AsyncPool, _Conn, exchange
from errpolicy_memcache._wire import _LATE, gets, set_

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HIT = b"VALUE k 0 5 7\r\nhello\r\nEND\r\n"
GUARD = 30.0  # seconds: a hang guard, far above any deadline here


@pytest.fixture(params=["c", "python"])
def twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The C reply parser (skipped where it is not built), then the ``_wire`` readers."""
    if request.param == "python":
        monkeypatch.setattr(_aio_transport, "_C_REPLY", None)
    elif _native.speedups is None:
        pytest.skip("the C speedups are not built here")
    param: str = request.param
    return param


class Fake:
    """A fake node: ``handler`` serves each connection; ``connections`` counts them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up: what several tests want
        finally:
            writer.close()

    def pool(self, timeout: float = 0.2, **options: Any) -> AsyncPool:
        return AsyncPool("127.0.0.1", self.port, 1.0, timeout, 4, 4, **options)


@pytest.fixture
async def fake() -> AsyncIterator[Callable[[Handler], Awaitable[Fake]]]:
    made: list[Fake] = []

    async def start(handler: Handler) -> Fake:
        node = Fake(handler)
        node.server = await asyncio.start_server(node._serve, "127.0.0.1", 0)
        node.port = node.server.sockets[0].getsockname()[1]
        made.append(node)
        return node

    yield start
    for node in made:
        assert node.server is not None
        node.server.close()


async def _request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n")


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads everything, answers nothing (a stopped node)."""
    while await reader.read(65536):
        pass


async def _hits(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request with the same hit."""
    while await _request(reader):
        writer.write(HIT)


def _kinds(answers: list[Any]) -> list[Any]:
    return [
        values if failure is None else (failure.kind, failure.detail)
        for values, failure, _ in answers
    ]


async def test_a_reply_in_one_byte_pieces_is_read_whole(
    fake: Any, twin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every byte in a packet of its own: the reply is read once it is whole."""

    async def one_by_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        for byte in HIT:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.001)
        await reader.read()

    pieces: list[bytes] = []
    received = _Conn.data_received

    def counted(self: _Conn, data: bytes) -> None:
        pieces.append(data)
        received(self, data)

    monkeypatch.setattr(_Conn, "data_received", counted)
    node = await fake(one_by_one)
    answers = await exchange([(node.pool(timeout=GUARD), (gets("k"),))])
    assert [[(b"hello", 7)]] == _kinds(answers)
    assert len(pieces) > 1


async def test_two_replies_in_one_packet_answer_a_two_command_batch(fake: Any, twin: str) -> None:
    """A node's two commands answered in one write: both values, the connection kept."""

    async def together(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)  # the set's line
        await _request(reader)  # its value
        await _request(reader)  # the gets
        writer.write(b"STORED\r\n" + HIT)
        await reader.read()

    node = await fake(together)
    pool = node.pool(timeout=GUARD)
    answers = await exchange([(pool, (set_("k", b"hello", 60), gets("k")))])
    assert [["STORED", (b"hello", 7)]] == _kinds(answers)
    assert 1 == pool.idle


async def test_a_reply_nobody_asked_for_is_the_nodes_error(fake: Any, twin: str) -> None:
    """A second reply after the one asked for, in the same packet: an error, and the
    connection is not kept."""

    async def twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(HIT + HIT)
        await reader.read()

    node = await fake(twice)
    pool = node.pool(timeout=GUARD)
    answers = await exchange([(pool, (gets("k"),))])
    assert [("error", "unexpected bytes after the reply")] == _kinds(answers)
    assert 0 == pool.idle


async def test_bytes_on_an_idle_connection_retire_it(fake: Any, twin: str) -> None:
    """Bytes that arrive while a connection waits in the pool: it is closed, and the
    next request goes out on a fresh connection and gets its own reply."""
    unasked = asyncio.Event()

    async def then_junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(HIT)
        await unasked.wait()
        writer.write(HIT)
        await _hits(reader, writer)

    node = await fake(then_junk)
    pool = node.pool(timeout=GUARD)
    await exchange([(pool, (gets("k"),))])
    conn = pool._idle[0]
    unasked.set()
    await asyncio.wait_for(_until(lambda: conn.closed), GUARD)
    unasked.clear()  # the second connection's handler waits for good
    node.handler = _hits
    answers = await exchange([(pool, (gets("k"),))])
    assert ([[(b"hello", 7)]], 2) == (_kinds(answers), node.connections)


async def test_a_late_reply_is_never_read_as_the_next_answer(fake: Any, twin: str) -> None:
    """A node that answers after its timeout: the round fails "timeout", that
    connection is closed, and the next request gets its own reply on a new one."""
    answered = asyncio.Event()
    closed_by_client = asyncio.Event()

    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        await answered.wait()
        writer.write(b"VALUE k 0 3 1\r\nold\r\nEND\r\n")
        if not await reader.read():
            closed_by_client.set()

    async def fresh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"VALUE k 0 3 2\r\nnew\r\nEND\r\n")
        await reader.read()

    node = await fake(late)
    pool = node.pool(timeout=0.1)
    first = await exchange([(pool, (gets("k"),))])
    answered.set()
    node.handler = fresh
    second = await exchange([(pool, (gets("k"),))])
    await asyncio.wait_for(closed_by_client.wait(), GUARD)
    assert [("timeout", "timed out")] == _kinds(first)
    assert ([[(b"new", 2)]], 2) == (_kinds(second), node.connections)


async def test_a_silent_node_times_out_while_the_other_answers(fake: Any, twin: str) -> None:
    """Per-node timeouts in one round: one node's value, the other's timeout."""
    answering, silent = await fake(_hits), await fake(_silent)
    answers = await exchange([(answering.pool(), (gets("k"),)), (silent.pool(), (gets("k"),))])
    assert [[(b"hello", 7)], ("timeout", "timed out")] == _kinds(answers)


async def test_a_trickling_node_ends_at_the_operations_deadline(fake: Any, twin: str) -> None:
    """A byte every few milliseconds keeps no read waiting past the operation's deadline."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"VALUE k 0 100000 1\r\n")
        while not writer.is_closing():
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.005)

    node = await fake(trickle)
    loop = asyncio.get_running_loop()
    deadline = asyncio.get_running_loop().time() + 0.3
    answers = await asyncio.wait_for(
        exchange([(node.pool(timeout=GUARD), (gets("k"),))], _perf(loop, deadline)), GUARD
    )
    assert [("timeout", _LATE)] == _kinds(answers)


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (b"VALUE " + b"A" * 65536, "reply line too long"),
        (b"VALUE k 0 %d 1\r\n" % 2**40, "value too large"),
    ],
    ids=["endless-line", "huge-value"],
)
async def test_an_unbounded_reply_is_the_nodes_error(
    fake: Any, twin: str, reply: bytes, detail: str
) -> None:
    """A line without end or a value over the limit: an error, before it is buffered."""

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(reply)
        while not writer.is_closing():
            writer.write(b"x" * 65536)
            await writer.drain()

    node = await fake(flood)
    answers = await exchange([(node.pool(timeout=GUARD), (gets("k"),))])
    assert [("error", detail)] == _kinds(answers)


async def test_a_node_closing_mid_reply_is_closed(fake: Any, twin: str) -> None:
    """Half a reply, then the connection closed: "closed"."""

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(HIT[:10])

    node = await fake(half)
    answers = await exchange([(node.pool(timeout=GUARD), (gets("k"),))])
    assert ["closed"] == [failure.kind for _, failure, _ in answers if failure]


async def test_a_pooled_connection_closed_before_its_reply_is_retried(fake: Any, twin: str) -> None:
    """A restarted node closed the pooled connection: the request goes again on a fresh
    one, once."""

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(HIT)
        await _request(reader)  # the second request: closed without a reply
        node.handler = _hits

    node = await fake(once)
    pool = node.pool(timeout=GUARD)
    await exchange([(pool, (gets("k"),))])
    answers = await exchange([(pool, (gets("k"),))])
    assert ([[(b"hello", 7)]], 2) == (_kinds(answers), node.connections)


async def test_a_round_with_an_earlier_deadline_does_not_wait_for_a_later_one(
    fake: Any, twin: str
) -> None:
    """A pool's rounds share a timer: a round whose deadline comes first still ends then."""
    node = await fake(_silent)
    pool = node.pool(timeout=GUARD)
    waiting = asyncio.ensure_future(exchange([(pool, (gets("k"),))]))
    await asyncio.sleep(0.01)  # its request is out, the timer set for its deadline
    answers = await asyncio.wait_for(
        exchange([(pool, (gets("k"),))], time.perf_counter() + 0.05), GUARD
    )
    assert ([("timeout", _LATE)], False) == (_kinds(answers), waiting.done())
    waiting.cancel()


async def test_a_round_with_a_later_deadline_ends_after_an_earlier_one(
    fake: Any, twin: str
) -> None:
    """Once the shared timer fired for one round, it is set again for the next."""
    node = await fake(_silent)
    pool = node.pool(timeout=0.2)
    first = asyncio.ensure_future(exchange([(pool, (gets("k"),))], time.perf_counter() + 0.05))
    await asyncio.sleep(0.01)
    second = await asyncio.wait_for(exchange([(pool, (gets("k"),))]), GUARD)
    assert [("timeout", _LATE), ("timeout", "timed out")] == _kinds(await first) + _kinds(second)


async def test_a_cancelled_round_aborts_its_connections(fake: Any, twin: str) -> None:
    """Cancelled while a node owes its reply: the connection is closed, not pooled, and
    its slot given back."""
    closed_by_client = asyncio.Event()

    async def owing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        if not await reader.read():
            closed_by_client.set()

    node = await fake(owing)
    pool = node.pool(timeout=GUARD)
    task = asyncio.ensure_future(exchange([(pool, (gets("k"),))]))
    while not node.connections:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed_by_client.wait(), GUARD)
    assert (0, 4) == (pool.idle, pool._slots._value)


async def test_a_cancelled_write_never_reaches_the_node_whole(fake: Any, twin: str) -> None:
    """A store request still in the write buffer when the round is cancelled is cut:
    the node gets part of it and then the close (memcached stores nothing of it), never
    the rest later."""
    reading = asyncio.Event()
    got: list[int] = []

    async def not_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reading.wait()
        total = 0
        while chunk := await reader.read(1 << 20):
            total += len(chunk)
        got.append(total)

    node = await fake(not_reading)
    pool = node.pool(timeout=GUARD)
    command = set_("k", b"x" * (32 << 20), 60)  # far more than the sockets' buffers hold
    task = asyncio.ensure_future(exchange([(pool, (command,))]))
    while not node.connections:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reading.set()
    while not got:
        await asyncio.sleep(0.01)
    assert got[0] < len(command.request)


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.001)


def _perf(loop: asyncio.AbstractEventLoop, when: float) -> float:
    """Loop time ``when`` as ``time.perf_counter()`` time (the deadline's clock)."""
    return time.perf_counter() + (when - loop.time())
