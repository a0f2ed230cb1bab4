"""The sync driver's connections: a transport per node (``_transport``: pooled
connections), the fan-out of a plan to them, and the transports of each route (the
ordered home nodes of a ``Known``) for the one-round read and save. The core holds
the nodes; this, kept by the sync store alone, holds what talks to them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from ._node import Node, Reply, settle
from ._transport import Answer, PipelinedTransport, PymemcacheTransport, make_transport
from ._wire import Command

__all__ = ["Transport", "Transports"]

Transport = PipelinedTransport | PymemcacheTransport
_KINDS: dict[str, type[Transport]] = {
    PipelinedTransport.name: PipelinedTransport,
    PymemcacheTransport.name: PymemcacheTransport,
}


class _Routes(dict[int, list[Transport]]):
    """Each route's transports, in the route's order, made the first time it is used
    (a read costs one subscript, not a lookup per node)."""

    __slots__ = ("_of", "_route")

    def __init__(self, of: dict[Node, Transport], route: Callable[[int], Sequence[Node]]) -> None:
        super().__init__()
        self._of = of
        self._route = route

    def __missing__(self, number: int) -> list[Transport]:
        made = self[number] = [self._of[node] for node in self._route(number)]
        return made


class Transports:
    """A transport of kind ``kind`` (one of ``_transport.TRANSPORTS``) for each node;
    ``route`` gives the nodes of a route number (``StoreCore.route``)."""

    def __init__(
        self,
        nodes: Sequence[Node],
        kind: str,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        max_value: int,
        route: Callable[[int], Sequence[Node]],
    ) -> None:
        self.kind = kind
        self._of: dict[Node, Transport] = {
            node: make_transport(
                kind, node.host, node.port, connect_timeout, read_timeout, pool_size, max_value
            )
            for node in nodes
        }
        # Every node's transport is of one kind: one exchange for a whole plan.
        self._exchange: Callable[..., list[Answer]] = _KINDS[kind].exchange
        #: ``routes[known.route]``: the transports of a ``Known``'s home nodes, in order.
        self.routes = _Routes(self._of, route)

    def of(self, node: Node) -> Transport:
        """The transport that talks to ``node``."""
        return self._of[node]

    def close(self) -> None:
        """Close every idle connection (a transport reconnects when used again)."""
        for transport in self._of.values():
            transport.close()

    def execute(
        self, plan: Sequence[tuple[Node, Sequence[Command]]], deadline: float = math.inf
    ) -> list[Reply]:
        """Run each node's commands through its transport; never raises for a node.

        Returns one :class:`Reply` per node, in plan order, and records each node's
        success, unhealthy failure (refused, timeout, closed) or error reply on its
        breaker. ``deadline`` is the operation's (``time.perf_counter()`` time, the
        transports' clock): a node skipped because it passed is not counted against it.
        """
        start = time.perf_counter()
        of = self._of
        answers = self._exchange([(of[node], commands) for node, commands in plan], deadline)
        return settle(plan, answers, start)
