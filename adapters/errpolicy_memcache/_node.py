"""One memcached node (address, idle connections, breaker) and the pipelined fan-out."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._breaker import CircuitBreaker
from ._wire import Command, Connection, NodeFailure

__all__ = ["Node", "Reply", "execute"]

# Failures that say the node itself is unhealthy; an error reply does not.
_BREAKER_KINDS = frozenset({"refused", "timeout", "closed"})


class Node:
    """A memcached server: where it is, its pooled connections and its circuit breaker."""

    def __init__(
        self,
        host: str,
        port: int,
        breaker: CircuitBreaker,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
    ) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.breaker = breaker
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_size = pool_size
        # deque.append and deque.pop are atomic: the pool needs no lock.
        self._idle: deque[Connection] = deque()

    def __repr__(self) -> str:
        return f"<Node {self.address} {self.breaker.state.value}>"

    def acquire(self) -> Connection:
        try:
            conn = self._idle.pop()
        except IndexError:
            return self.fresh()
        conn.reused = True
        return conn

    def fresh(self) -> Connection:
        return Connection.open(self.host, self.port, self._connect_timeout, self._read_timeout)

    def release(self, conn: Connection) -> None:
        if conn.clean and len(self._idle) < self._pool_size:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return
            conn.close()


@dataclass(slots=True)
class Reply:
    """A node's replies to its commands (in order), or the failure that ended them."""

    node: Node
    commands: Sequence[Command]
    values: list[Any]
    failure: NodeFailure | None
    elapsed: float


def _as_failure(exc: BaseException) -> NodeFailure:
    if isinstance(exc, NodeFailure):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return NodeFailure("refused", str(exc))
    if isinstance(exc, TimeoutError):
        return NodeFailure("timeout", str(exc) or "timed out")
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return NodeFailure("closed", str(exc))
    if isinstance(exc, OSError):
        # Unreachable network or host, unresolvable name: the node cannot be reached,
        # which the breaker must count like a refusal.
        return NodeFailure("refused", f"{type(exc).__name__}: {exc}")
    return NodeFailure("error", f"{type(exc).__name__}: {exc}")


def _read_all(conn: Connection, commands: Sequence[Command]) -> list[Any]:
    return [command.read(conn) for command in commands]


def execute(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
    """Send every node its commands, then read every reply; never raises for a node.

    A pooled connection that the server closed meanwhile (a restarted node) is retried
    once on a fresh connection: the old process never saw the request.
    """
    start = time.perf_counter()
    pending: list[tuple[Node, Sequence[Command], bytes, Connection | None, NodeFailure | None]] = []
    for node, commands in plan:
        request = b"".join(c.request for c in commands)
        conn: Connection | None = None
        failure: NodeFailure | None = None
        try:
            conn = node.acquire()
            try:
                conn.send(request)
            except OSError:
                if not conn.reused:
                    raise
                conn.close()
                conn = node.fresh()
                conn.send(request)
        except Exception as exc:
            if conn is not None:
                conn.close()
            conn, failure = None, _as_failure(exc)
        pending.append((node, commands, request, conn, failure))

    replies: list[Reply] = []
    for node, commands, request, conn, failure in pending:
        values: list[Any] = []
        if conn is not None:
            try:
                values = [command.read(conn) for command in commands]
            except Exception as exc:
                conn.close()
                failure = _as_failure(exc)
                if conn.reused and failure.kind == "closed":
                    values, failure = _retry(node, commands, request)
            else:
                node.release(conn)
        if failure is None:
            node.breaker.success()
        elif failure.kind in _BREAKER_KINDS:
            node.breaker.failure()
        replies.append(Reply(node, commands, values, failure, time.perf_counter() - start))
    return replies


def _retry(
    node: Node, commands: Sequence[Command], request: bytes
) -> tuple[list[Any], NodeFailure | None]:
    conn: Connection | None = None
    try:
        conn = node.fresh()
        conn.send(request)
        values = _read_all(conn, commands)
    except Exception as exc:
        if conn is not None:
            conn.close()
        return [], _as_failure(exc)
    node.release(conn)
    return values, None
