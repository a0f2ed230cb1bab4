"""One memcached node (address, transport, breaker) and the fan-out of a plan to nodes."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._breaker import CircuitBreaker
from ._transport import Answer, PipelinedTransport, PymemcacheTransport, make_transport
from ._wire import MAX_VALUE, Command, NodeFailure

__all__ = ["Node", "Reply", "execute", "settle"]

# Failures that say the node itself is unhealthy; an error reply does not.
_BREAKER_KINDS = frozenset({"refused", "timeout", "closed"})


class Node:
    """A memcached server: where it is, its transport (pooled connections) and its breaker."""

    def __init__(
        self,
        host: str,
        port: int,
        breaker: CircuitBreaker,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        transport: str = "pymemcache",
        max_value: int = MAX_VALUE,
    ) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.breaker = breaker
        self.transport = make_transport(
            transport, host, port, connect_timeout, read_timeout, pool_size, max_value
        )

    def __repr__(self) -> str:
        return f"<Node {self.address} {self.breaker.state.value}>"

    def close(self) -> None:
        """Close the idle connections (the node reconnects when used again)."""
        self.transport.close()


@dataclass(slots=True)
class Reply:
    """A node's replies to its commands (in order), or the failure that ended them."""

    node: Node
    commands: Sequence[Command]
    values: list[Any]
    failure: NodeFailure | None
    elapsed: float


def _answers(plan: Sequence[tuple[Node, Sequence[Command]]], deadline: float) -> list[Answer]:
    """Each node's answer, in plan order, from one exchange per transport kind; nothing
    is recorded on the breakers (:func:`settle` does that)."""
    pipelined: list[tuple[PipelinedTransport, Sequence[Command]]] = []
    pooled: list[tuple[PymemcacheTransport, Sequence[Command]]] = []
    for node, commands in plan:
        transport = node.transport
        if isinstance(transport, PipelinedTransport):
            pipelined.append((transport, commands))
        else:
            pooled.append((transport, commands))
    if not pooled:  # a store's nodes share one transport: this or the next line
        return PipelinedTransport.exchange(pipelined, deadline)
    if not pipelined:
        return PymemcacheTransport.exchange(pooled, deadline)
    firsts = iter(PipelinedTransport.exchange(pipelined, deadline))
    others = iter(PymemcacheTransport.exchange(pooled, deadline))
    return [
        next(firsts) if isinstance(node.transport, PipelinedTransport) else next(others)
        for node, _ in plan
    ]


def execute(
    plan: Sequence[tuple[Node, Sequence[Command]]], deadline: float = math.inf
) -> list[Reply]:
    """Run each node's commands through its transport; never raises for a node.

    Returns one :class:`Reply` per node, in plan order, and records each node's success,
    unhealthy failure (refused, timeout, closed) or error reply on its breaker.
    ``deadline`` is the operation's (``time.perf_counter()`` time; see ``_transport``):
    a node skipped because it passed is not counted against it.
    """
    start = time.perf_counter()
    return settle(plan, _answers(plan, deadline), start)


def settle(
    plan: Sequence[tuple[Node, Sequence[Command]]], answered: Sequence[Answer], start: float
) -> list[Reply]:
    """The :class:`Reply` of each node of ``plan`` from its transport's answer (as
    ``exchange`` gives it), recorded on its breaker; ``start`` is ``perf_counter()``
    when the plan was sent."""
    replies: list[Reply] = []
    for (node, commands), (values, failure, done) in zip(plan, answered, strict=True):
        if failure is None:
            node.breaker.success()
        elif failure.kind in _BREAKER_KINDS:
            node.breaker.failure()
        else:
            node.breaker.errored()
        replies.append(Reply(node, commands, values, failure, done - start))
    return replies
