"""How a node's commands reach memcached: pymemcache clients, or the store's own sockets.

Each node has one transport object holding its idle connections. A transport class's
``exchange`` runs a batch (one entry per node, each with its commands in order) and gives
per node the reply values or the :class:`NodeFailure` that ended them, and when its answer
was complete. Both give the same reply values (see ``_wire``), and every exception is
classified by :func:`as_failure` alone, so the store sees no difference but the speed.

A batch of several nodes is fanned out by one piece of code for both (:func:`_fan_out`):
every node's requests are sent before any reply is read, so several nodes cost about one
round trip, not one each; the replies are read with the ``_wire`` readers.

- ``pymemcache`` (the default): one pymemcache ``Client`` per connection, pooled per node.
  A batch of one node goes through the client's API; a batch of several writes to and
  reads from the clients' sockets (pymemcache keeps no read buffer between calls, so a
  client whose replies were read to the last byte goes on working through its API).
- ``pipelined``: the store's own sockets, for every batch.

A pooled connection that the server closed meanwhile (a restarted node) is retried once on
a fresh connection, before any reply came: the old process never saw the request.

Every exchange keeps the operation's deadline (``time.perf_counter()`` time): a node is
sent nothing once it passed (a "skipped" failure, which its breaker does not count), and
its replies are read only as far as they arrived by then (else a "timeout"). A node that
trickles its reply therefore holds an operation at most one read timeout past it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, TypeVar

from . import _wire
from ._extras import pymemcache_client
from ._native import speedups
from ._wire import (
    _LATE,
    KERNEL_TIMEOUTS,
    MAX_LINE,
    MAX_VALUE,
    Command,
    Connection,
    NodeFailure,
    _now,
    _read_gets,
    kernel_timeout_sockets,
)
from ._wire import STATUS as _STATUS

__all__ = [
    "TRANSPORTS",
    "Answer",
    "PipelinedTransport",
    "PymemcacheTransport",
    "agreed_gets",
    "as_failure",
    "make_transport",
    "stored_round",
    "wide_agreed",
    "wide_gets",
]

#: The transport names, the default first.
TRANSPORTS: Final = ("pymemcache", "pipelined")

#: A node's reply values (empty on failure), its failure, and ``perf_counter()`` when done.
Answer = tuple[list[Any], NodeFailure | None, float]

_C = TypeVar("_C", bound=Connection)
_UNBOUNDED = (1 << 64) - 1


def as_failure(exc: BaseException) -> NodeFailure:
    """The :class:`NodeFailure` kind of an exception from either transport.

    refused, timeout and closed say the node is unhealthy (its breaker counts them);
    error is a reply that makes no sense, a server error or a client error (our bug),
    which the node's health does not explain.
    """
    if isinstance(exc, NodeFailure):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return NodeFailure("refused", str(exc))
    if isinstance(exc, TimeoutError):
        return NodeFailure("timeout", str(exc) or "timed out")
    if isinstance(exc, BlockingIOError):
        # A blocking socket's kernel timeout (SO_RCVTIMEO, SO_SNDTIMEO) expired.
        return NodeFailure("timeout", "timed out")
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return NodeFailure("closed", str(exc))
    if isinstance(exc, OSError):
        # Unreachable network or host, unresolvable name: the node cannot be reached,
        # which the breaker must count like a refusal.
        return NodeFailure("refused", f"{type(exc).__name__}: {exc}")
    if type(exc).__module__.startswith("pymemcache"):
        from pymemcache.exceptions import MemcacheUnexpectedCloseError

        # A subclass of MemcacheServerError: check it first. Server errors (transient)
        # and client errors (a key or value pymemcache refused: our bug) are "error".
        if isinstance(exc, MemcacheUnexpectedCloseError):
            return NodeFailure("closed", "connection closed by the server")
    return NodeFailure("error", f"{type(exc).__name__}: {exc}")


class _Pool(Generic[_C]):
    """One node's idle connections, and what the fan-out needs of a transport.

    A transport says how a connection is made (:meth:`fresh`); checking one out of the
    pool, sending a request on it (once more on a fresh connection if a reused one turns
    out closed), reading the replies and putting it back are the same for both, and so
    is :func:`_fan_out`, which runs them for a batch. deque.append and deque.pop are
    atomic: no lock.
    """

    def __init__(self, pool_size: int, max_value: int = MAX_VALUE) -> None:
        self._pool_size = pool_size
        self._max_value = max_value
        self._idle: deque[_C] = deque()

    def fresh(self) -> _C:
        """A new connection to the node, connected; raises if the node cannot be reached."""
        raise NotImplementedError

    def _take(self) -> _C | None:
        try:
            return self._idle.pop()
        except IndexError:
            return None

    def release(self, conn: _C) -> None:
        """Keep ``conn`` for later if nothing is left unread on it and there is room."""
        if conn.clean and len(self._idle) < self._pool_size:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while (conn := self._take()) is not None:
            conn.close()

    def _send(self, request: bytes, deadline: float) -> _C | NodeFailure:
        """The connection that took ``request`` (an idle one if any), or why none did."""
        if _now() >= deadline:  # not the node's fault: nothing was asked of it
            return _SKIPPED
        try:
            conn = self._idle.pop()  # _take(), inlined
        except IndexError:
            return self._send_fresh(request, deadline)
        conn.deadline = deadline
        try:
            conn.send(request)
        except Exception as exc:
            conn.close()
            if not isinstance(exc, OSError) or isinstance(exc, TimeoutError):
                return as_failure(exc)  # a timeout: the node hangs, a second wait would too
            # Closed by the server meanwhile (a restarted node?): one fresh try.
            return self._send_fresh(request, deadline)
        conn.reused = True
        return conn

    def _send_fresh(self, request: bytes, deadline: float) -> _C | NodeFailure:
        conn: _C | None = None
        try:
            conn = self.fresh()
            conn.deadline = deadline
            conn.send(request)
        except Exception as exc:
            if conn is not None:
                conn.close()
            return as_failure(exc)
        return conn

    def _failed(
        self, conn: _C, commands: Sequence[Command], exc: Exception, read: int, deadline: float
    ) -> Answer:
        """The answer of a node whose replies broke off after ``read`` of them; ``conn``
        is closed. A reused connection closed before any reply is retried once."""
        conn.close()
        failure = as_failure(exc)
        if conn.reused and not read and failure.kind == "closed" and _now() < deadline:
            # The old process never saw the requests: one fresh try.
            fresh = None
            try:
                fresh = self.fresh()
                fresh.deadline = deadline
                fresh.send(_request(commands))
                values = [command.read(fresh) for command in commands]
            except Exception as again:
                if fresh is not None:
                    fresh.close()
                return [], as_failure(again), time.perf_counter()
            self.release(fresh)
            return values, None, time.perf_counter()
        return [], failure, time.perf_counter()


def _fan_out(
    batch: Sequence[tuple[_Pool[Any], Sequence[Command]]], deadline: float = math.inf
) -> list[Answer]:
    """Send every node its requests, then read every node's replies, in batch order.

    Never raises for a node: a node that took no request, or whose replies failed,
    gets its :class:`NodeFailure` and the others their values. Bytes left unread after
    the replies mean the stream is out of step: the node's answer is an "error" and
    its connection is closed. It runs on every session read: no call, lookup or
    allocation per node that is not needed. One ``gets`` to every node (a read) runs
    in C where the speedups are built (:func:`_gets_round`).
    """
    first = batch[0][1]
    if _C_GETS is not None and len(first) == 1:
        command = first[0]
        for _, commands in batch:
            if len(commands) != 1 or commands[0] is not command:
                break
        else:
            if command.read is _read_gets:
                return _gets_round(batch, command.request, deadline)
            status = _STATUS.get(command.read)
            if status is not None:  # one store command (a save's copies): a C round too
                return _line_round(batch, command.request, status, deadline)
    sent = [
        transport._send(commands[0].request if len(commands) == 1 else _request(commands), deadline)
        for transport, commands in batch
    ]
    clock = time.perf_counter
    answers: list[Answer] = []
    for (transport, commands), conn in zip(batch, sent, strict=True):
        if isinstance(conn, NodeFailure):
            answers.append(([], conn, clock()))
            continue
        values: list[Any] = []
        try:
            for command in commands:  # a loop: usually one command, no list comprehension
                values.append(command.read(conn))
        except Exception as exc:
            answers.append(transport._failed(conn, commands, exc, len(values), deadline))
            continue
        if not conn.clean:
            conn.close()
            answers.append(([], _OUT_OF_STEP, clock()))
        elif len(transport._idle) < transport._pool_size:  # release(), inlined
            transport._idle.append(conn)
            answers.append((values, None, clock()))
        else:
            conn.close()
            answers.append((values, None, clock()))
    return answers


_OUT_OF_STEP = NodeFailure("error", "unexpected bytes after the reply")
_SKIPPED = NodeFailure("skipped", _LATE)

# The C round of gets (see _speedups.c): it needs blocking sockets with kernel timeouts.
_C_GETS = speedups.gets_round if speedups is not None and KERNEL_TIMEOUTS else None
_C_LINES = speedups.line_round if _C_GETS is not None and speedups is not None else None


def _left(deadline: float) -> float | None:
    """The seconds a C round has before ``deadline`` (None: no deadline)."""
    return None if deadline == math.inf else deadline - _now()


def _gets_round(
    batch: Sequence[tuple[_Pool[Any], Sequence[Command]]], request: bytes, deadline: float
) -> list[Answer]:
    """The same ``gets`` to every node of ``batch``, sent and read in C: what
    :func:`_fan_out` does, with the same results, pooling and retry."""
    assert _C_GETS is not None
    conns = [_checkout(transport, deadline) for transport, _ in batch]
    live = [conn for conn in conns if not isinstance(conn, NodeFailure)]
    found = _C_GETS(
        [c.fileno() for c in live], request, False, _left(deadline), batch[0][0]._max_value
    )
    return _round_answers(batch, conns, found, deadline)


def _line_round(
    batch: Sequence[tuple[_Pool[Any], Sequence[Command]]],
    request: bytes,
    status: Callable[[bytes], str],
    deadline: float,
) -> list[Answer]:
    """The same store command to every node of ``batch``, sent and its reply line read
    in C (``status`` judges each line as the command's reader does): what
    :func:`_fan_out` does, with the same results, pooling and retry."""
    assert _C_LINES is not None
    conns = [_checkout(transport, deadline) for transport, _ in batch]
    live = [conn for conn in conns if not isinstance(conn, NodeFailure)]
    lines = _C_LINES([c.fileno() for c in live], request, _left(deadline))
    results: list[Any] = []
    for line in lines:
        if isinstance(line, NodeFailure):
            results.append(line)
            continue
        try:
            results.append(status(line))
        except NodeFailure as failure:  # an error reply: the node is alive
            results.append(failure)
    return _round_answers(batch, conns, results, deadline)


def stored_round(
    transports: Sequence[_Pool[Any]], command: Command, deadline: float = math.inf
) -> bool | list[Answer]:
    """One store command to every transport's node at once: True when every node
    answered ``STORED`` (the usual save, kept short), else each node's answer as
    ``exchange`` gives it. The round runs in C where it can."""
    status = _STATUS.get(command.read)
    if _C_LINES is None or status is None:
        answers = _fan_out([(transport, (command,)) for transport in transports], deadline)
    else:
        # _checkout, _left and _keep inlined for the usual case (a pooled connection
        # each, every node storing): the save's bookkeeping is mostly Python calls.
        conns = []
        fds = []
        conn: Any
        now = _now()  # one clock read for the round's checkouts
        for transport in transports:
            if now >= deadline:
                conn = _SKIPPED
            else:
                try:
                    conn = transport._idle.pop()
                except IndexError:
                    conn = _checkout(transport, deadline)  # a new connection, or why none
                else:
                    conn.reused = True
            conns.append(conn)
            if not isinstance(conn, NodeFailure):
                fds.append(conn._sock.fileno())
        left = None if deadline == math.inf else deadline - _now()
        lines = _C_LINES(fds, command.request, left)
        if len(fds) == len(conns) and lines.count(b"STORED") == len(lines):
            for i, conn in enumerate(conns):  # not zip(strict=True): it parses its keyword
                transport = transports[i]
                idle = transport._idle
                if len(idle) < transport._pool_size:
                    idle.append(conn)
                else:
                    conn.close()
            return True
        results: list[Any] = []
        for line in lines:
            if isinstance(line, NodeFailure):
                results.append(line)
                continue
            try:
                results.append(status(line))
            except NodeFailure as error:  # an error reply: the node is alive
                results.append(error)
        batch = [(transport, (command,)) for transport in transports]
        answers = _round_answers(batch, conns, results, deadline)
    for values, failure, _ in answers:
        if failure is not None or values[0] != "STORED":
            return answers
    return True


def agreed_gets(
    transports: Sequence[_Pool[Any]], command: Command, deadline: float = math.inf
) -> bytes | list[Answer]:
    """One ``gets`` to every transport's node at once: the value when every node holds
    the same bytes (the usual session read, kept short), else each node's answer as
    ``exchange`` gives it. The comparison runs in C with the round where it can."""
    if not transports:
        return []
    if _C_GETS is None:
        batch = [(transport, (command,)) for transport in transports]
        return _agreed(_fan_out(batch, deadline))
    conns, fds = _checkouts(transports, deadline)
    left = None if deadline == math.inf else deadline - _now()
    limit = transports[0]._max_value
    if len(fds) == len(conns):
        result = _C_GETS(fds, command.request, True, left, limit)
        if type(result) is bytes:
            _pool_again(transports, conns)
            return result
    else:
        result = _C_GETS(fds, command.request, False, left, limit)
    assert isinstance(result, list)
    # Compared again: a reused connection found closed (a restarted node) was retried
    # after the C round, and its value may agree with the others'.
    batch = [(transport, (command,)) for transport in transports]
    return _agreed(_round_answers(batch, conns, result, deadline))


def _agreed(answers: list[Answer]) -> bytes | list[Answer]:
    """The value of ``answers`` to one ``gets`` when every node answered a hit with the
    same bytes, else ``answers``."""
    blobs: set[bytes | None] = set()
    for values, failure, _ in answers:
        found = None if failure is not None else values[0]  # (bytes, cas) or a miss
        blobs.add(None if found is None else found[0])
    blob = blobs.pop() if len(blobs) == 1 else None
    return answers if blob is None else blob


_C_WIDE = speedups.wide_round if _C_GETS is not None and speedups is not None else None


def wide_gets(
    transports: Sequence[_Pool[Any]], command: Command, need: int, deadline: float = math.inf
) -> tuple[bytes, int] | list[Answer]:
    """One ``gets`` to every transport's node at once, for a wide read (after a fault:
    every node whose breaker is closed, in ranking order): ``(value, hits)`` when every
    node answered, the first ``need`` of them with the copy, and the others the same
    copy or none (``hits``: a bit per node that holds it, the first node the lowest
    bit), else each node's answer as ``exchange`` gives it. The round and the
    comparison run in C where they can (``_speedups.wide_round``)."""
    if not transports:
        return []
    if _C_WIDE is None or _C_GETS is None:
        batch = [(transport, (command,)) for transport in transports]
        return wide_agreed(_fan_out(batch, deadline), need)
    conns, fds = _checkouts(transports, deadline)
    left = None if deadline == math.inf else deadline - _now()
    limit = transports[0]._max_value
    if len(fds) == len(conns):
        result = _C_WIDE(fds, command.request, need, left, limit)
        if type(result) is tuple:
            _pool_again(transports, conns)
            return result
    else:
        result = _C_GETS(fds, command.request, False, left, limit)
    assert isinstance(result, list)
    # Compared again: a reused connection found closed was retried after the C round.
    batch = [(transport, (command,)) for transport in transports]
    return wide_agreed(_round_answers(batch, conns, result, deadline), need)


def wide_agreed(answers: list[Answer], need: int) -> tuple[bytes, int] | list[Answer]:
    """What :func:`wide_gets` gives for ``answers`` (the reference of the C
    ``wide_round``'s agreement)."""
    blob: bytes | None = None
    hits = 0
    if len(answers) > 62:  # as the C twin: the hits fit one small int
        return answers
    for index, (values, failure, _) in enumerate(answers):
        if failure is not None:
            return answers
        found = values[0]
        if found is None:
            if index < need:
                return answers
            continue
        if blob is None:
            blob = found[0]
        elif found[0] != blob:
            return answers
        hits |= 1 << index
    return answers if blob is None else (blob, hits)


def _checkouts(transports: Sequence[_Pool[Any]], deadline: float) -> tuple[list[Any], list[int]]:
    """A connection (or why none) per transport, and the live ones' file descriptors:
    :func:`_checkout` for each, inlined for the usual case (a pooled connection each;
    a read's bookkeeping is mostly Python calls)."""
    conns: list[Any] = []
    fds: list[int] = []
    conn: Any
    now = _now()  # one clock read for the round's checkouts
    for transport in transports:
        if now >= deadline:
            conn = _SKIPPED
        else:
            try:
                conn = transport._idle.pop()
            except IndexError:
                conn = _checkout(transport, deadline)  # a new connection, or why none
            else:
                conn.reused = True
        conns.append(conn)
        if not isinstance(conn, NodeFailure):
            fds.append(conn._sock.fileno())
    return conns, fds


def _pool_again(transports: Sequence[_Pool[Any]], conns: list[Any]) -> None:
    """:func:`_keep` each of ``conns`` (a round that read every reply to its last byte)."""
    for i, conn in enumerate(conns):  # not zip(strict=True): it parses its keyword
        transport = transports[i]
        idle = transport._idle
        if len(idle) < transport._pool_size:
            idle.append(conn)
        else:
            conn.close()


def _checkout(transport: _Pool[Any], deadline: float) -> Any:
    """An idle connection of ``transport`` (marked reused), a new one, or why none."""
    if _now() >= deadline:
        return _SKIPPED
    try:
        conn = transport._idle.pop()
    except IndexError:
        try:
            return transport.fresh()
        except Exception as exc:
            return as_failure(exc)
    conn.reused = True
    return conn


def _keep(transport: _Pool[Any], conn: Any) -> None:
    """Pool a connection whose replies were read to the last byte (release(), without
    the clean check: the C round reads nothing into the connection's buffer)."""
    if len(transport._idle) < transport._pool_size:
        transport._idle.append(conn)
    else:
        conn.close()


def _round_answers(
    batch: Sequence[tuple[_Pool[Any], Sequence[Command]]],
    conns: Sequence[Any],
    results: Sequence[Any],
    deadline: float,
) -> list[Answer]:
    """Each node's answer from a C round over the live ones of ``conns`` (a value, a
    miss, a status, or a NodeFailure each): failures
    close the connection (a reused one closed before its reply is retried once)."""
    done = time.perf_counter()
    found = iter(results)
    answers: list[Answer] = []
    for (transport, commands), conn in zip(batch, conns, strict=True):
        if isinstance(conn, NodeFailure):
            answers.append(([], conn, done))
            continue
        result = next(found)
        if isinstance(result, NodeFailure):
            answers.append(transport._failed(conn, commands, result, 0, deadline))
        else:
            _keep(transport, conn)
            answers.append(([result], None, done))
    return answers


def _request(commands: Sequence[Command]) -> bytes:
    if len(commands) == 1:  # the usual case: no join
        return commands[0].request
    return b"".join([command.request for command in commands])


class PipelinedTransport(_Pool[Connection]):
    """The store's own sockets: a batch sends every node's requests, then reads replies."""

    name = "pipelined"

    def __init__(
        self,
        host: str,
        port: int,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        max_value: int = MAX_VALUE,
    ) -> None:
        super().__init__(pool_size, max_value)
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    def fresh(self) -> Connection:
        return Connection.open(
            self._host, self._port, self._connect_timeout, self._read_timeout, self._max_value
        )

    #: Send every node its commands, then read every reply; never raises for a node.
    exchange = staticmethod(_fan_out)


class _ClientConnection(Connection):
    """A connected pymemcache ``Client`` and its socket as a :class:`Connection`.

    The pool keeps the two together: the fan-out sends and reads on the client's socket
    with the ``_wire`` readers, a single node's commands go through the client's API.
    pymemcache keeps no read buffer between calls, and a connection is kept only if
    its own buffer is empty, so the stream is in step for either. The client's socket
    stays the same while it is pooled: pymemcache replaces it only after closing it on
    an error, and a client that failed is closed, never pooled.
    """

    __slots__ = ("client",)

    def __init__(self, client: Any, max_value: int) -> None:
        super().__init__(client.sock, max_value)
        self.client = client

    def close(self) -> None:
        self.client.close()  # closes the socket; pymemcache swallows its errors


def _gets(client: Any, c: Command) -> tuple[bytes, int] | None:
    value, token = client.gets(c.key)
    return None if value is None else (value, int(token))


def _stored(result: bool | None) -> str:
    return "STORED" if result else "NOT_STORED"


# Each maps a pymemcache call's result to the pipelined reader's reply value.
_CALLS: dict[str, Callable[[Any, Command], Any]] = {
    "gets": _gets,
    "set": lambda client, c: _stored(client.set(c.key, c.value, expire=c.ttl, noreply=False)),
    "add": lambda client, c: _stored(client.add(c.key, c.value, expire=c.ttl, noreply=False)),
    "cas": lambda client, c: {True: "STORED", False: "EXISTS", None: "NOT_FOUND"}[
        client.cas(c.key, c.value, c.token, expire=c.ttl, noreply=False)
    ],
    "touch": lambda client, c: (
        "TOUCHED" if client.touch(c.key, expire=c.ttl, noreply=False) else "NOT_FOUND"
    ),
    "delete": lambda client, c: "DELETED" if client.delete(c.key, noreply=False) else "NOT_FOUND",
}


class PymemcacheTransport(_Pool[_ClientConnection]):
    """pymemcache ``Client`` objects, pooled (each used by one thread at a time).

    A batch of one node runs through the client's API (:meth:`call`); a batch of
    several is fanned out (:func:`_fan_out`) over one client per node: every node's
    requests are written to its client's socket before any reply is read.

    Not ``PooledClient``: its ``max_pool_size`` is a hard cap (a request beyond it fails
    with RuntimeError, where ``pool_size`` here bounds only the idle connections kept, as
    for the pipelined transport), and it cannot tell a reused connection from a new one,
    which the retry after a node's restart needs.
    """

    name = "pymemcache"

    def __init__(
        self,
        host: str,
        port: int,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        max_value: int = MAX_VALUE,
    ) -> None:
        Client = pymemcache_client()
        super().__init__(pool_size, max_value)
        # Sockets that keep the deadline and a byte budget (pymemcache's reader has no
        # bound of its own); with kernel timeouts they bound each send and recv too.
        sockets = kernel_timeout_sockets(read_timeout)
        kernel = _wire.KERNEL_TIMEOUTS  # read now: the tests switch it
        self._new: Callable[[], Any] = lambda: Client(
            (host, port),
            connect_timeout=connect_timeout,
            timeout=None if kernel else read_timeout,
            no_delay=True,
            default_noreply=False,
            allow_unicode_keys=False,  # keys are prefix + hex digest: safe ASCII
            socket_module=sockets,
        )

    def fresh(self) -> _ClientConnection:
        client = self._new()
        client._connect()  # pymemcache connects lazily; the fan-out needs the socket now
        return _ClientConnection(client, self._max_value)

    def call(self, commands: Sequence[Command], deadline: float = math.inf) -> Answer:
        """Run the commands through one client's API, in order; never raises for the node."""
        if _now() >= deadline:
            return [], _SKIPPED, _now()
        # What the replies may take in all: one value, and a line or two per command.
        budget = self._max_value + (len(commands) + 1) * (MAX_LINE + 9)
        conn = self._take()
        if conn is not None:
            done: list[Any] = []
            failure = self._run(conn, commands, done, deadline, budget)
            if failure is None:
                return done, None, time.perf_counter()
            if failure.kind != "closed" or done:
                return [], failure, time.perf_counter()
        # No idle client, or one whose server closed it before any reply: a new one.
        try:
            conn = self.fresh()
        except Exception as exc:
            return [], as_failure(exc), time.perf_counter()
        done = []
        failure = self._run(conn, commands, done, deadline, budget)
        return ([], failure, time.perf_counter()) if failure else (done, None, time.perf_counter())

    def _run(
        self,
        conn: _ClientConnection,
        commands: Sequence[Command],
        done: list[Any],
        deadline: float,
        budget: int,
    ) -> NodeFailure | None:
        """Append each command's reply to ``done``; keep the client if all answered."""
        client = conn.client
        sock = client.sock
        sock.deadline, sock.budget = deadline, budget
        try:
            for command in commands:
                done.append(_CALLS[command.name](client, command))
        except Exception as exc:
            conn.close()
            return as_failure(exc)
        # The fan-out reads this socket through the Connection, which keeps its own.
        sock.deadline, sock.budget = math.inf, _UNBOUNDED
        self.release(conn)
        return None

    @staticmethod
    def exchange(
        batch: Sequence[tuple[PymemcacheTransport, Sequence[Command]]], deadline: float = math.inf
    ) -> list[Answer]:
        """One node through its client's API; several fanned out over their clients'
        sockets (about one round trip in all); never raises for a node."""
        if len(batch) == 1:
            transport, commands = batch[0]
            return [transport.call(commands, deadline)]
        return _fan_out(batch, deadline)


_KINDS: dict[str, type[PipelinedTransport] | type[PymemcacheTransport]] = {
    "pipelined": PipelinedTransport,
    "pymemcache": PymemcacheTransport,
}


def make_transport(
    name: str,
    host: str,
    port: int,
    connect_timeout: float,
    read_timeout: float,
    pool_size: int,
    max_value: int = MAX_VALUE,
) -> PipelinedTransport | PymemcacheTransport:
    """The transport called ``name`` (one of :data:`TRANSPORTS`) for one node; a value
    above ``max_value`` bytes is a node's error."""
    return _KINDS[name](host, port, connect_timeout, read_timeout, pool_size, max_value)
