"""How a node's commands reach memcached: pymemcache clients, or pipelined sockets.

Each node has one transport object holding its idle connections. A transport class's
``exchange`` runs a batch (one entry per node, each with its commands in order) and gives
per node the reply values or the :class:`NodeFailure` that ended them, and when its answer
was complete. Both give the same reply values (see ``_wire``), and every exception is
classified by :func:`as_failure` alone, so the store sees no difference but the speed.

- ``pymemcache`` (the default): one pymemcache ``Client`` per connection, pooled per node;
  the nodes of a batch are done one after the other.
- ``pipelined``: the store's own text-protocol client; every node's requests are sent
  before any reply is read, so several nodes cost about one round trip.

A pooled connection that the server closed meanwhile (a restarted node) is retried once on
a fresh connection, before any reply came: the old process never saw the request.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from ._wire import Command, Connection, NodeFailure, kernel_timeout_sockets

__all__ = [
    "TRANSPORTS",
    "Answer",
    "PipelinedTransport",
    "PymemcacheTransport",
    "as_failure",
    "make_transport",
]

#: The transport names, the default first.
TRANSPORTS: Final = ("pymemcache", "pipelined")

#: A node's reply values (empty on failure), its failure, and ``perf_counter()`` when done.
Answer = tuple[list[Any], NodeFailure | None, float]


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


class _Pool:
    """Idle connections of one node; deque.append and deque.pop are atomic: no lock."""

    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._idle: deque[Any] = deque()

    def _take(self) -> Any | None:
        try:
            return self._idle.pop()
        except IndexError:
            return None

    def _keep(self, conn: Any, close: Callable[[], None]) -> None:
        if len(self._idle) < self._pool_size:
            self._idle.append(conn)
        else:
            close()

    def _drain(self) -> list[Any]:
        drained = []
        while (conn := self._take()) is not None:
            drained.append(conn)
        return drained


class PipelinedTransport(_Pool):
    """The store's own sockets: a batch sends every node's requests, then reads replies."""

    name = "pipelined"

    def __init__(
        self, host: str, port: int, connect_timeout: float, read_timeout: float, pool_size: int
    ) -> None:
        super().__init__(pool_size)
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    def fresh(self) -> Connection:
        return Connection.open(self._host, self._port, self._connect_timeout, self._read_timeout)

    def release(self, conn: Connection) -> None:
        if conn.clean and len(self._idle) < self._pool_size:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conn in self._drain():
            conn.close()

    @staticmethod
    def exchange(batch: Sequence[tuple[PipelinedTransport, Sequence[Command]]]) -> list[Answer]:
        """Send every node its commands, then read every reply; never raises for a node."""
        sent = [transport._send(_request(commands)) for transport, commands in batch]
        answers: list[Answer] = []
        for (transport, commands), conn in zip(batch, sent, strict=True):
            if isinstance(conn, NodeFailure):
                answers.append(([], conn, time.perf_counter()))
            else:
                answers.append(transport._receive(conn, commands))
        return answers

    def _send(self, request: bytes) -> Connection | NodeFailure:
        """The connection that took ``request`` (an idle one if any), or why none did."""
        conn: Connection | None = self._take()
        try:
            if conn is not None:
                conn.reused = True
                try:
                    conn.send(request)
                    return conn
                except OSError:
                    # Closed by the server meanwhile (a restarted node?): one fresh try.
                    conn.close()
            conn = self.fresh()
            conn.send(request)
            return conn
        except Exception as exc:
            if conn is not None:
                conn.close()
            return as_failure(exc)

    def _receive(self, conn: Connection, commands: Sequence[Command]) -> Answer:
        """Read the replies to ``commands`` sent on ``conn``, then keep or close it."""
        values: list[Any] = []
        try:
            for command in commands:  # a loop: usually one command, no list comprehension
                values.append(command.read(conn))
        except Exception as exc:
            conn.close()
            failure = as_failure(exc)
            if conn.reused and failure.kind == "closed":
                return (*self._retry(commands), time.perf_counter())
            return [], failure, time.perf_counter()
        self.release(conn)
        return values, None, time.perf_counter()

    def _retry(self, commands: Sequence[Command]) -> tuple[list[Any], NodeFailure | None]:
        conn: Connection | None = None
        try:
            conn = self.fresh()
            conn.send(_request(commands))
            values = [command.read(conn) for command in commands]
        except Exception as exc:
            if conn is not None:
                conn.close()
            return [], as_failure(exc)
        self.release(conn)
        return values, None


def _request(commands: Sequence[Command]) -> bytes:
    if len(commands) == 1:  # the usual case: no join
        return commands[0].request
    return b"".join([command.request for command in commands])


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


class PymemcacheTransport(_Pool):
    """pymemcache ``Client`` objects, pooled (each used by one thread at a time).

    Not ``PooledClient``: its ``max_pool_size`` is a hard cap (a request beyond it fails
    with RuntimeError, where ``pool_size`` here bounds only the idle connections kept, as
    for the pipelined transport), and it cannot tell a reused connection from a new one,
    which the retry after a node's restart needs.
    """

    name = "pymemcache"

    def __init__(
        self, host: str, port: int, connect_timeout: float, read_timeout: float, pool_size: int
    ) -> None:
        from pymemcache.client.base import Client

        super().__init__(pool_size)
        # With kernel timeouts the client's sockets bound each send and recv themselves.
        sockets = kernel_timeout_sockets(read_timeout)
        self._new: Callable[[], Any] = lambda: Client(
            (host, port),
            connect_timeout=connect_timeout,
            timeout=read_timeout if sockets is None else None,
            no_delay=True,
            default_noreply=False,
            allow_unicode_keys=False,  # keys are prefix + hex digest: safe ASCII
            socket_module=socket if sockets is None else sockets,
        )

    def call(self, commands: Sequence[Command]) -> Answer:
        """Run the commands on one client, in order; never raises for the node."""
        client = self._take()
        if client is not None:
            done: list[Any] = []
            failure = self._run(client, commands, done)
            if failure is None:
                return done, None, time.perf_counter()
            if failure.kind != "closed" or done:
                return [], failure, time.perf_counter()
        # No idle client, or one whose server closed it before any reply: a new one.
        done = []
        failure = self._run(self._new(), commands, done)
        return ([], failure, time.perf_counter()) if failure else (done, None, time.perf_counter())

    def _run(self, client: Any, commands: Sequence[Command], done: list[Any]) -> NodeFailure | None:
        """Append each command's reply to ``done``; keep the client if all answered."""
        try:
            for command in commands:
                done.append(_CALLS[command.name](client, command))
        except Exception as exc:
            client.close()
            return as_failure(exc)
        self._keep(client, client.close)
        return None

    def close(self) -> None:
        for client in self._drain():
            client.close()

    @staticmethod
    def exchange(batch: Sequence[tuple[PymemcacheTransport, Sequence[Command]]]) -> list[Answer]:
        """Each node in turn (measured faster than a thread pool; see the benchmarks)."""
        return [transport.call(commands) for transport, commands in batch]


_KINDS: dict[str, type[PipelinedTransport] | type[PymemcacheTransport]] = {
    "pipelined": PipelinedTransport,
    "pymemcache": PymemcacheTransport,
}


def make_transport(
    name: str, host: str, port: int, connect_timeout: float, read_timeout: float, pool_size: int
) -> PipelinedTransport | PymemcacheTransport:
    """The transport called ``name`` (one of :data:`TRANSPORTS`) for one node."""
    return _KINDS[name](host, port, connect_timeout, read_timeout, pool_size)
