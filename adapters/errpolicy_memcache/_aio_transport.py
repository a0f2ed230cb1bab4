"""The asyncio transport: each node's pooled stream connections, and a plan's fan-out.

The async store's counterpart of ``_transport``: a batch (one entry per node, each with
its commands in order) gives per node the reply values or the :class:`NodeFailure` that
ended them, as an ``Answer`` (the same shape, so ``_node.settle`` records it on the
breakers). Every node is sent its requests before any reply is awaited, so a round of
several nodes costs about one round trip, with no task per node.

The replies are read with the ``_wire`` readers, the sync transports' own: a reader
runs over the bytes that arrived so far (:class:`_Buffered`) and asks for more by
raising :class:`_NeedMore`, so the grammar, the line and value bounds and every reply
value are the same for both stores.

Timeouts: a connection is made within ``connect_timeout``; a node's replies must arrive
within ``timeout`` of the round's send, and by the operation's deadline
(``time.perf_counter()`` time, as the sync store's). A node is sent nothing once the
deadline passed ("skipped", which its breaker does not count).

Cancellation: a connection goes back to the pool only when its replies were read to the
last byte. One whose request or reply was cut short (a timeout, an error, or the
awaiting task cancelled) is closed, so a late reply can never be read as the answer to
the next request sent on it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from ._transport import Answer, as_failure
from ._wire import _LATE, MAX_VALUE, Command, Connection, NodeFailure, _now

__all__ = ["AsyncPool", "Stream", "exchange"]

_CHUNK = 65536
_SKIPPED = NodeFailure("skipped", _LATE)
_OUT_OF_STEP = NodeFailure("error", "unexpected bytes after the reply")


class _NeedMore(Exception):
    """The replies read so far need bytes that have not arrived yet."""


class _Buffered(Connection):
    """The ``_wire`` readers' view of the bytes a stream received: a read past them
    raises :class:`_NeedMore` (the caller awaits more and reads again from the start)."""

    __slots__ = ()

    def __init__(self, data: bytes, max_value: int) -> None:
        self._buf = data
        self._pos = 0
        self.reused = False
        self.deadline = math.inf
        self.max_value = max_value

    def _recv(self) -> bytes:
        raise _NeedMore


class Stream:
    """One asyncio stream connection to a node, with the bytes received but not yet
    read as replies."""

    __slots__ = ("pending", "reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending = b""
        self.reused = False

    @property
    def usable(self) -> bool:
        """Not closed by either side (checked before an idle connection is reused)."""
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        self.writer.close()  # never awaited: closing must not be cancellable halfway


class _Slots:
    """A counting semaphore whose uncontended take is a plain call (every request takes
    a slot: an awaited ``asyncio.Semaphore.acquire`` was a good part of a read's work).
    A slot given back goes straight to the oldest waiter, so none is overtaken."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, size: int) -> None:
        self._value = size  # slots free
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take_now(self) -> bool:
        """Take a free slot if one is free and nobody waits for it."""
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return True
        return False

    async def take(self, loop_deadline: float) -> bool:
        """Take a slot, waiting at most until ``loop_deadline``; False if none came."""
        if self.take_now():
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(loop_deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot as the wait ended: the next one's
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def release(self) -> None:
        """Give a slot back: to the oldest waiter still waiting, else to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._value += 1


class AsyncPool:
    """One node's idle stream connections, for the event loop that made them.

    At most ``max_connections`` are open at once (a request waits for one, at most until
    the operation's deadline: a thousand tasks do not open a thousand sockets per node);
    at most ``pool_size`` idle ones are kept.
    """

    __slots__ = (
        "_connect_timeout",
        "_host",
        "_idle",
        "_max_value",
        "_pool_size",
        "_port",
        "_slots",
        "rank",
        "timeout",
    )

    def __init__(
        self,
        host: str,
        port: int,
        connect_timeout: float,
        timeout: float,
        pool_size: int,
        max_connections: int,
        max_value: int = MAX_VALUE,
        rank: int = 0,
    ) -> None:
        self.rank = rank  # the order in which a round takes its connections
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self.timeout = timeout
        self._pool_size = pool_size
        self._max_value = max_value
        self._idle: deque[Stream] = deque()
        self._slots = _Slots(max_connections)

    @property
    def idle(self) -> int:
        """How many idle connections are pooled."""
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections (the pool reconnects when used again)."""
        while self._idle:
            self._idle.pop().close()

    async def _fresh(self) -> Stream:
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(self._host, self._port)
        return Stream(reader, writer)

    async def _checkout(self, loop_deadline: float) -> Stream | NodeFailure:
        """A connection (idle or new) with a slot held, or why none: the slot is the
        caller's to give back (:meth:`_checkin`) unless a failure is returned."""
        if not self._slots.take_now() and not await self._slots.take(loop_deadline):
            return _SKIPPED
        try:
            while self._idle:
                stream = self._idle.pop()
                if stream.usable:
                    stream.reused = True
                    return stream
                stream.close()
            if asyncio.get_running_loop().time() >= loop_deadline:
                self._slots.release()
                return _SKIPPED
            return await self._fresh()
        except BaseException as exc:
            self._slots.release()
            if not isinstance(exc, Exception):
                raise
            return as_failure(exc)

    def _checkin(self, stream: Stream, clean: bool) -> None:
        """Give the slot back; keep ``stream`` if its replies were read to the last byte."""
        self._slots.release()
        if clean and not stream.pending and len(self._idle) < self._pool_size:
            self._idle.append(stream)
        else:
            stream.close()

    async def _read(
        self, stream: Stream, commands: Sequence[Command], loop_deadline: float
    ) -> list[Any]:
        """The replies to ``commands``, read with the ``_wire`` readers; raises what they
        raise, TimeoutError past ``loop_deadline``, NodeFailure "closed" at EOF."""
        data = stream.pending
        while True:
            if data:  # no reply is empty: nothing to parse before the first bytes
                buffered = _Buffered(data, self._max_value)
                try:
                    values = [command.read(buffered) for command in commands]
                except _NeedMore:
                    pass
                else:
                    stream.pending = buffered._buf[buffered._pos :]
                    return values
            chunk = await _receive(stream.reader, loop_deadline)
            if not chunk:
                raise NodeFailure("closed", "connection closed by the server")
            data += chunk


async def _receive(reader: asyncio.StreamReader, loop_deadline: float) -> bytes:
    """The next bytes, waiting at most until ``loop_deadline``; past it, only what has
    already arrived (as the sync readers do). A loop too busy to run this task in time
    must not blame the node: bytes that arrived before the timeout fired are read."""
    # StreamReader has no public "what is buffered"; _buffer is the bytearray it reads
    # from (the same attribute from 3.8 to 3.14). Bytes already there need no timer.
    if reader._buffer:  # type: ignore[attr-defined]
        return await reader.read(_CHUNK)
    try:
        async with asyncio.timeout_at(loop_deadline):
            return await reader.read(_CHUNK)
    except TimeoutError:
        if not reader._buffer:  # type: ignore[attr-defined]
            raise
    return await reader.read(_CHUNK)  # returns at once: the bytes are there


async def exchange(
    batch: Sequence[tuple[AsyncPool, Sequence[Command]]], deadline: float = math.inf
) -> list[Answer]:
    """Send every node its requests, then read every node's replies, in batch order.

    Never raises for a node: a node that took no request, or whose replies failed, gets
    its :class:`NodeFailure` and the others their values. ``deadline`` is the
    operation's (``time.perf_counter()`` time). A reused connection found closed before
    any reply (a restarted node) is retried once on a fresh one. On cancellation every
    connection still in use is closed, and the cancellation goes on.
    """
    loop = asyncio.get_running_loop()
    now = _now()
    if now >= deadline:
        return [([], _SKIPPED, time.perf_counter()) for _ in batch]
    op_deadline = loop.time() + (deadline - now) if deadline != math.inf else math.inf
    in_use: dict[int, tuple[AsyncPool, Stream]] = {}
    answers: list[Answer] = []
    try:
        # Connections are taken in one order (the pools' rank) by every task: a task
        # that holds a slot on one node while it waits for another's cannot wait on a
        # task doing the reverse.
        sent: list[Stream | NodeFailure] = [_SKIPPED] * len(batch)
        for index in _by_rank(batch):
            pool = batch[index][0]
            stream = await pool._checkout(op_deadline)
            if isinstance(stream, Stream):
                in_use[index] = (pool, stream)
            sent[index] = stream
        for index, (_, stream) in in_use.items():
            stream.writer.write(_request(batch[index][1]))
        since = loop.time()
        for index, ((pool, commands), stream) in enumerate(zip(batch, sent, strict=True)):
            if isinstance(stream, NodeFailure):
                answers.append(([], stream, time.perf_counter()))
                continue
            answers.append(await _answer(pool, stream, commands, since, op_deadline, in_use, index))
    finally:
        for pool, stream in in_use.values():  # cut short: never pooled
            pool._checkin(stream, clean=False)
    return answers


async def _answer(
    pool: AsyncPool,
    stream: Stream,
    commands: Sequence[Command],
    since: float,
    op_deadline: float,
    in_use: dict[int, tuple[AsyncPool, Stream]],
    index: int,
) -> Answer:
    """One node's answer; its connection leaves ``in_use`` once checked back in."""
    node_deadline = min(since + pool.timeout, op_deadline)
    try:
        if stream.writer.transport.get_write_buffer_size():  # else drain waits for nothing
            await stream.writer.drain()
        values = await pool._read(stream, commands, node_deadline)
    except Exception as exc:
        del in_use[index]
        pool._checkin(stream, clean=False)
        failure = _late(exc, op_deadline)
        if stream.reused and failure.kind == "closed" and _left(op_deadline):
            return await _retry(pool, commands, op_deadline)
        return [], failure, time.perf_counter()
    del in_use[index]
    if stream.pending:
        pool._checkin(stream, clean=False)
        return [], _OUT_OF_STEP, time.perf_counter()
    pool._checkin(stream, clean=True)
    return values, None, time.perf_counter()


async def _retry(pool: AsyncPool, commands: Sequence[Command], op_deadline: float) -> Answer:
    """One fresh try after a reused connection was found closed: the old server process
    never saw the requests."""
    stream = await pool._checkout(op_deadline)
    if isinstance(stream, NodeFailure):
        return [], stream, time.perf_counter()
    clean = False
    try:
        stream.writer.write(_request(commands))
        await stream.writer.drain()
        loop = asyncio.get_running_loop()
        values = await pool._read(stream, commands, min(loop.time() + pool.timeout, op_deadline))
        clean = not stream.pending
    except Exception as exc:
        return [], _late(exc, op_deadline), time.perf_counter()
    finally:
        pool._checkin(stream, clean=clean)
    if not clean:
        return [], _OUT_OF_STEP, time.perf_counter()
    return values, None, time.perf_counter()


def _by_rank(batch: Sequence[tuple[AsyncPool, Sequence[Command]]]) -> Sequence[int]:
    """The batch's indexes in the pools' rank order (a home read's two nodes usually
    come in it already: no sort then)."""
    if len(batch) < 2 or (len(batch) == 2 and batch[0][0].rank < batch[1][0].rank):
        return range(len(batch))
    return sorted(range(len(batch)), key=lambda i: batch[i][0].rank)


def _left(op_deadline: float) -> bool:
    return asyncio.get_running_loop().time() < op_deadline


def _late(exc: Exception, op_deadline: float) -> NodeFailure:
    """The failure ``exc`` stands for; a timeout at the operation's deadline says so."""
    if isinstance(exc, TimeoutError) and not _left(op_deadline):
        return NodeFailure("timeout", _LATE)
    return as_failure(exc)


def _request(commands: Sequence[Command]) -> bytes:
    if len(commands) == 1:
        return commands[0].request
    return b"".join([command.request for command in commands])
