"""The asyncio transport: each node's pooled connections, and a plan's fan-out.

The async store's counterpart of ``_transport``: a batch (one entry per node, each with
its commands in order) gives per node the reply values or the :class:`NodeFailure` that
ended them, as an ``Answer`` (the same shape, so ``_node.settle`` records it on the
breakers). Every node is sent its requests before any reply is awaited, so a round of
several nodes costs about one round trip, with no task per node.

A connection is an :class:`asyncio.Protocol` (:class:`_Conn`): it parses its replies
as their bytes arrive (``data_received``), with the C reply parser where it is built
(``_speedups.gets_reply``) and the ``_wire`` readers otherwise (:func:`parse_replies`),
so the grammar, the line and value bounds and every reply value are the sync
transports'. A round awaits one future, done when its last node finished.

Timeouts: a connection is made within ``connect_timeout``; a node's replies must arrive
within ``timeout`` of the round's send, and by the operation's deadline
(``time.perf_counter()`` time, as the sync store's); a timer (:class:`_Deadlines`)
ends the nodes still owing replies then. A node is sent nothing once
the deadline passed ("skipped", which its breaker does not count). The loop runs the
callbacks of the bytes that arrived before the timers that fell due in the same turn,
so a loop too busy to run the round in time does not blame the nodes.

Cancellation: a connection goes back to the pool only when its replies were read to the
last byte. One whose request or reply was cut short (a timeout, an error, or the
awaiting task cancelled) is aborted, so a late reply can never be read as the answer to
the next request sent on it, and a request still in its write buffer never reaches the
node in part (memcached discards a command cut by a closed connection).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any, Literal, overload

from ._native import speedups
from ._transport import Answer, _agreed, as_failure
from ._wire import _LATE, MAX_VALUE, Command, Connection, NodeFailure, _now, _read_gets

__all__ = ["AsyncPool", "agreed_gets", "exchange", "parse_replies"]

_SKIPPED = NodeFailure("skipped", _LATE)
_OUT_OF_STEP = NodeFailure("error", "unexpected bytes after the reply")
_CLOSED = NodeFailure("closed", "connection closed by the server")
_NO_VALUES: list[Any] = []  # never changed: what a connection holds between replies
_C_REPLY = speedups.gets_reply if speedups is not None else None
_IN_ORDER = (0, 1)
_SWAPPED = (1, 0)

Batch = Sequence[tuple["AsyncPool", Sequence[Command]]]


class _NeedMore(Exception):
    """The replies read so far need bytes that have not arrived yet: ``need`` bytes in
    all, at least, before reading them again is worth it."""

    def __init__(self, need: int) -> None:
        super().__init__(need)
        self.need = need


class _Buffered(Connection):
    """The ``_wire`` readers' view of the bytes a connection received: a read past them
    raises :class:`_NeedMore` (the caller waits for more and reads again from the start)."""

    __slots__ = ("_total",)

    def __init__(self, data: bytes, max_value: int) -> None:
        self._buf = data
        self._pos = 0
        self._total = len(data)
        self.reused = False
        self.deadline = math.inf
        self.max_value = max_value

    def _fill(self) -> bytes:
        raise _NeedMore(self._total + 1)

    def _fill_to(self, size: int) -> bytes:
        # The readers drop a fully read buffer: count from the bytes still unread.
        raise _NeedMore(self._total - (len(self._buf) - self._pos) + size)


def parse_replies(
    data: bytes, commands: Sequence[Command], max_value: int
) -> list[Any] | NodeFailure | int:
    """The replies to ``commands`` in ``data`` (every byte received since they were
    sent): their values, the node's failure (bytes after the last reply are one), or how
    many bytes in all to wait for before reading again. One ``gets`` is read in C where
    it is built (``_speedups.gets_reply``), else by the ``_wire`` readers."""
    if _C_REPLY is not None and len(commands) == 1 and commands[0].read is _read_gets:
        found = _C_REPLY(data, max_value)
        if type(found) is int or type(found) is NodeFailure:
            return found
        return [found]
    buffered = _Buffered(data, max_value)
    try:
        values = [command.read(buffered) for command in commands]
    except _NeedMore as more:
        return more.need
    except NodeFailure as failure:
        return failure
    if buffered._pos != len(buffered._buf):
        return _OUT_OF_STEP
    return values


class _Round:
    """What one round's connections share: the future the round awaits, done when the
    last node finished (replies, failure or timeout)."""

    __slots__ = ("asked", "left", "op_deadline", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, op_deadline: float) -> None:
        self.op_deadline = op_deadline  # loop time
        self.waiter: asyncio.Future[None] = loop.create_future()
        self.asked: list[_Conn] = []
        self.left = 0  # nodes still owing replies

    def finished(self) -> None:
        self.left -= 1
        if not self.left and not self.waiter.done():
            self.waiter.set_result(None)

    def expire(self, when: float) -> float:
        """Every node whose deadline is ``when`` or before fails "timeout"; the nearest
        deadline of the nodes still owing replies (inf: none)."""
        nearest = math.inf
        for conn in self.asked:
            if conn._round is not self:
                continue  # finished
            if conn.deadline <= when:
                conn.expire(conn.deadline >= self.op_deadline)
            elif conn.deadline < nearest:
                nearest = conn.deadline
        return nearest


class _Deadlines:
    """One timer for the node deadlines of many rounds: a round adds itself while it
    waits, and the timer is set again only when a round's deadline comes before the
    one it is set for (every pool of a store has the same timeout, so a later round's
    deadline is later: one timer a timeout period, not a timer per round)."""

    __slots__ = ("_rounds", "_timer", "_when")

    def __init__(self) -> None:
        self._rounds: dict[_Round, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._when = math.inf  # loop time the timer is set for

    def add(self, owner: _Round, when: float, loop: asyncio.AbstractEventLoop) -> None:
        """Wake ``owner`` at ``when`` (loop time), its nearest node deadline."""
        self._rounds[owner] = None
        if when < self._when:
            if self._timer is not None:
                self._timer.cancel()
            self._when = when
            self._timer = loop.call_at(when, self._fire, loop)

    def discard(self, owner: _Round) -> None:
        self._rounds.pop(owner, None)

    def stop(self) -> None:
        """Cancel the timer if no round waits (the pool was closed)."""
        if not self._rounds and self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._when = math.inf

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        # By the time the timer was set for, not the clock's reading: the loop runs a
        # timer up to its clock's resolution early.
        when = self._when
        self._timer = None
        self._when = math.inf
        nearest = math.inf
        for owner in list(self._rounds):
            left = owner.expire(when)
            if left == math.inf:
                del self._rounds[owner]
            elif left < nearest:
                nearest = left
        if nearest != math.inf:
            self._when = nearest
            self._timer = loop.call_at(nearest, self._fire, loop)


class _Conn(asyncio.Protocol):
    """One connection to a node; it reads its replies as their bytes arrive and tells
    its round when they are complete."""

    __slots__ = (
        "_chunks",
        "_commands",
        "_max_value",
        "_need",
        "_one_gets",
        "_round",
        "_size",
        "closed",
        "deadline",
        "done",
        "failure",
        "reused",
        "transport",
        "values",
    )

    def __init__(self, max_value: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.closed = False
        self._max_value = max_value
        self._commands: Sequence[Command] | None = None  # set while replies are owed
        self._round: _Round | None = None  # likewise
        self._chunks: list[bytes] = []
        self._size = 0  # bytes of the replies so far
        self._need = 1  # bytes in all before it is worth parsing again
        self._one_gets = False  # the replies are one gets's, read in C
        self.deadline = math.inf  # loop time
        self.values: list[Any] = _NO_VALUES
        self.failure: NodeFailure | None = None
        self.done = 0.0  # perf_counter() when the node finished

    @property
    def heard(self) -> bool:
        """True if any byte of the replies to the last request arrived."""
        return self._size > 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._commands is not None:
            self._finish(_NO_VALUES, _CLOSED if exc is None else as_failure(exc))

    def eof_received(self) -> None:
        self.closed = True  # never reused; the transport closes itself next

    def ask(
        self, commands: Sequence[Command], request: bytes, owner: _Round, deadline: float
    ) -> None:
        """Send ``request``; its replies are owed to ``owner`` by ``deadline``."""
        self._commands = commands
        self._round = owner
        self.deadline = deadline
        self.failure = None
        self._size = 0
        self._need = 1
        self._one_gets = (
            _C_REPLY is not None and len(commands) == 1 and commands[0].read is _read_gets
        )
        owner.asked.append(self)
        owner.left += 1
        self.transport.write(request)  # type: ignore[union-attr]  # connected

    def data_received(self, data: bytes) -> None:
        commands = self._commands
        if commands is None:  # nothing was asked: out of step, never to be reused
            self.shut()
            return
        size = self._size = self._size + len(data)
        chunks = self._chunks
        if chunks:  # the start of the replies came earlier
            chunks.append(data)
            if size < self._need:
                return
            data = b"".join(chunks)  # one join when enough arrived, not one per chunk
            chunks.clear()
        result: Any
        try:
            if self._one_gets:  # the usual read, in C
                result = _C_REPLY(data, self._max_value)  # type: ignore[misc]  # built
                if result is None or type(result) is tuple:
                    # _finish and _Round.finished inlined: every read pays them.
                    self._commands = None
                    self.values = [result]
                    self.done = time.perf_counter()
                    owner = self._round
                    self._round = None
                    if owner is not None:
                        owner.left -= 1
                        if not owner.left and not owner.waiter.done():
                            owner.waiter.set_result(None)
                    return
            else:
                result = parse_replies(data, commands, self._max_value)
                if type(result) is list:
                    self._finish(result, None)
                    return
        except Exception as exc:  # a reader's bug must not leave the round waiting
            result = as_failure(exc)
        if type(result) is int:
            chunks.append(data)
            self._need = result
            return
        self._finish(_NO_VALUES, result)
        self.shut()

    def expire(self, late: bool) -> None:
        """The node's deadline passed with replies owed: a timeout."""
        self._finish(_NO_VALUES, NodeFailure("timeout", _LATE if late else "timed out"))
        self.shut()

    def _finish(self, values: list[Any], failure: NodeFailure | None) -> None:
        self._commands = None
        self.values = values
        self.failure = failure
        self.done = time.perf_counter()
        owner = self._round
        self._round = None
        if owner is not None:
            owner.finished()

    def shut(self) -> None:
        """Close at once: what the write buffer still holds is dropped (a request cut
        short never reaches the node whole), and nothing more is read."""
        self.closed = True
        self._commands = None
        self._round = None
        self._chunks.clear()
        if self.transport is not None:
            self.transport.abort()


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
    """One node's idle connections, for the event loop that made them.

    At most ``max_connections`` are open at once (a request waits for one, at most until
    the operation's deadline: a thousand tasks do not open a thousand sockets per node);
    at most ``pool_size`` idle ones are kept.
    """

    __slots__ = (
        "_connect_timeout",
        "_deadlines",
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
        self._idle: deque[_Conn] = deque()
        self._slots = _Slots(max_connections)
        self._deadlines = _Deadlines()  # for the rounds whose first node this is

    @property
    def idle(self) -> int:
        """How many idle connections are pooled."""
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections (the pool reconnects when used again), and leave
        no timer on the loop."""
        while self._idle:
            self._idle.pop().shut()
        self._deadlines.stop()

    async def _fresh(self) -> _Conn:
        loop = asyncio.get_running_loop()
        max_value = self._max_value
        async with asyncio.timeout(self._connect_timeout):
            _, conn = await loop.create_connection(lambda: _Conn(max_value), self._host, self._port)
        return conn

    async def _checkout(self, loop_deadline: float, fresh: bool = False) -> _Conn | NodeFailure:
        """A connection (idle, unless ``fresh``, or new) with a slot held, or why none:
        the slot is the caller's to give back (:meth:`_checkin`) unless a failure is
        returned."""
        if not self._slots.take_now() and not await self._slots.take(loop_deadline):
            return _SKIPPED
        try:
            while self._idle and not fresh:
                conn = self._idle.pop()
                if not conn.closed:
                    conn.reused = True
                    return conn
                conn.shut()
            if asyncio.get_running_loop().time() >= loop_deadline:
                self._slots.release()
                return _SKIPPED
            return await self._fresh()
        except BaseException as exc:
            self._slots.release()
            if not isinstance(exc, Exception):
                raise
            return as_failure(exc)

    def _checkin(self, conn: _Conn, clean: bool) -> None:
        """Give the slot back; keep ``conn`` if its replies were read to the last byte."""
        slots = self._slots
        if slots._waiters:
            slots.release()
        else:
            slots._value += 1
        conn.values = _NO_VALUES  # an idle connection holds no reply
        if clean and not conn.closed and len(self._idle) < self._pool_size:
            self._idle.append(conn)
        else:
            conn.shut()


def agreed_gets(
    pools: Sequence[AsyncPool], command: Command, deadline: float = math.inf
) -> Coroutine[Any, Any, bytes | list[Answer]]:
    """One ``gets`` to every pool's node in one round: the value when every node holds
    the same bytes (the usual session read, kept short), else each node's answer as
    :func:`exchange` gives it (the sync ``_transport.agreed_gets``'s contract)."""
    loop = asyncio.get_running_loop()
    batch = [(pool, (command,)) for pool in pools]
    if deadline == math.inf:
        return _exchange(loop, batch, math.inf, True, True)
    return _exchange(loop, batch, loop.time() + (deadline - _now()), True, True)


def exchange(batch: Batch, deadline: float = math.inf) -> Coroutine[Any, Any, list[Answer]]:
    """Send every node its requests, then await every node's replies; the answers in
    batch order.

    Never raises for a node: a node that took no request, or whose replies failed, gets
    its :class:`NodeFailure` and the others their values. ``deadline`` is the
    operation's (``time.perf_counter()`` time). A reused connection found closed before
    any reply (a restarted node) is retried once on a fresh one. On cancellation every
    connection still owed a reply is aborted, and the cancellation goes on.
    """
    loop = asyncio.get_running_loop()
    if deadline == math.inf:
        return _exchange(loop, batch, math.inf, True, False)
    return _exchange(loop, batch, loop.time() + (deadline - _now()), True, False)


@overload
async def _exchange(
    loop: asyncio.AbstractEventLoop,
    batch: Batch,
    op_deadline: float,
    retry: bool,
    agree: Literal[False],
) -> list[Answer]: ...
@overload
async def _exchange(
    loop: asyncio.AbstractEventLoop, batch: Batch, op_deadline: float, retry: bool, agree: bool
) -> bytes | list[Answer]: ...
async def _exchange(
    loop: asyncio.AbstractEventLoop, batch: Batch, op_deadline: float, retry: bool, agree: bool
) -> bytes | list[Answer]:
    """:func:`exchange` with the operation's deadline in loop time; ``retry`` allows
    the one retry on a fresh connection (made with ``retry`` False and ``fresh``);
    ``agree`` gives the value alone when every node answered a hit with the same bytes
    (a batch of one ``gets`` per node)."""
    if loop.time() >= op_deadline:
        return [([], _SKIPPED, time.perf_counter()) for _ in batch]
    conns: list[_Conn | NodeFailure] = [_SKIPPED] * len(batch)
    owner = _Round(loop, op_deadline)
    try:
        # Connections are taken in one order (the pools' rank) by every task: a task
        # that holds a slot on one node while it waits for another's cannot wait on a
        # task doing the reverse.
        for index in _by_rank(batch):
            pool = batch[index][0]
            idle = pool._idle
            slots = pool._slots
            if retry and idle and slots._value > 0 and not slots._waiters and not idle[-1].closed:
                # The usual case, inlined (every read pays it): an idle connection and
                # a free slot, no await.
                slots._value -= 1
                taken = conns[index] = idle.pop()
                taken.reused = True
            else:
                conns[index] = await pool._checkout(op_deadline, fresh=not retry)
        since = loop.time()
        nearest = math.inf
        for (pool, commands), conn in zip(batch, conns, strict=True):
            if type(conn) is _Conn:
                node_deadline = since + pool.timeout
                if node_deadline > op_deadline:
                    node_deadline = op_deadline
                if node_deadline < nearest:
                    nearest = node_deadline
                request = commands[0].request if len(commands) == 1 else _request(commands)
                conn.ask(commands, request, owner, node_deadline)
        if owner.left:
            deadlines = batch[0][0]._deadlines
            rounds = deadlines._rounds
            rounds[owner] = None  # Deadlines.add, its usual case inlined
            if nearest < deadlines._when:
                deadlines.add(owner, nearest, loop)
            try:
                await owner.waiter
            finally:
                rounds.pop(owner, None)
    except BaseException:
        for (pool, _), conn in zip(batch, conns, strict=True):
            if type(conn) is _Conn:  # cut short: aborted, unless it finished cleanly
                pool._checkin(conn, conn._commands is None and conn.failure is None)
        raise
    if agree:
        found = _same_hit(conns)
        if found is not None:  # the usual read: no answers to build
            for (pool, _), conn in zip(batch, conns, strict=True):
                assert type(conn) is _Conn  # _same_hit saw every node's reply
                slots = pool._slots
                if slots._waiters or conn.closed or len(pool._idle) >= pool._pool_size:
                    pool._checkin(conn, True)
                else:  # _checkin's usual case, inlined
                    slots._value += 1
                    conn.values = _NO_VALUES
                    pool._idle.append(conn)
            return found
    answers: list[Answer] = []
    for (pool, commands), conn in zip(batch, conns, strict=True):
        if type(conn) is not _Conn:
            answers.append(([], conn, time.perf_counter()))  # type: ignore[arg-type]
            continue
        failure = conn.failure
        answers.append((conn.values, failure, conn.done))
        pool._checkin(conn, failure is None)
        if (
            failure is not None
            and failure.kind == "closed"
            and retry
            and _stale(conn, loop, op_deadline)
        ):
            # The old server process never saw the requests: one fresh try.
            (answers[-1],) = await _exchange(loop, [(pool, commands)], op_deadline, False, False)
    if agree:
        return _agreed(answers)
    return answers


def _same_hit(conns: list[_Conn | NodeFailure]) -> bytes | None:
    """The value when every node answered its ``gets`` with a hit of the same bytes."""
    blob = None
    for conn in conns:
        if type(conn) is not _Conn or conn.failure is not None:
            return None
        found = conn.values[0]
        if found is None or (blob is not None and found[0] != blob):
            return None
        blob = found[0]
    return blob


def _stale(conn: _Conn, loop: asyncio.AbstractEventLoop, op_deadline: float) -> bool:
    """True if ``conn`` was pooled and closed before any reply came (a restarted node),
    with time left to try again."""
    return conn.reused and not conn.heard and loop.time() < op_deadline


def _by_rank(batch: Batch) -> Sequence[int]:
    """The batch's indexes in the pools' rank order (a home read's two nodes usually
    come in it already: no sort then)."""
    if len(batch) == 2:
        return _IN_ORDER if batch[0][0].rank < batch[1][0].rank else _SWAPPED
    if len(batch) < 2:
        return range(len(batch))
    return sorted(range(len(batch)), key=lambda i: batch[i][0].rank)


def _request(commands: Sequence[Command]) -> bytes:
    if len(commands) == 1:
        return commands[0].request
    return b"".join([command.request for command in commands])
