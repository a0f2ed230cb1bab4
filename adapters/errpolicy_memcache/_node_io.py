"""The sync driver's connections: a transport per node (``_transport``: pooled
connections), the fan-out of a plan to them, and the transports of each route (the
ordered home nodes of a ``Known``) for the one-round read and save. The core holds
the nodes; this, kept by the sync store alone, holds what talks to them."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from ._node import Node, Reply, exchanged, settle
from ._transport import Answer, PipelinedTransport, PymemcacheTransport, make_transport
from ._wire import Command

__all__ = ["Transport", "Transports"]

Transport = PipelinedTransport | PymemcacheTransport
_KINDS: dict[str, type[Transport]] = {
    PipelinedTransport.name: PipelinedTransport,
    PymemcacheTransport.name: PymemcacheTransport,
}


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
        #: The transport of each node (``by_node[node]``: a wide read's, per node).
        self.by_node: dict[Node, Transport] = {
            node: make_transport(
                kind, node.host, node.port, connect_timeout, read_timeout, pool_size, max_value
            )
            for node in nodes
        }
        # Every node's transport is of one kind: one exchange for a whole plan.
        self._exchange: Callable[..., list[Answer]] = _KINDS[kind].exchange
        self._route = route
        self._numbering = threading.Lock()
        #: ``routes[known.route]``: the transports of a ``Known``'s home nodes, in
        #: order, for the routes used so far (a list: one subscript a read; see
        #: :meth:`route` for the others).
        self.routes: list[list[Transport]] = []

    def route(self, number: int) -> list[Transport]:
        """The transports of route ``number`` (``Known.route``), in order: ``routes``
        grows to hold it (routes are numbered from 0, each once)."""
        routes = self.routes
        if number >= len(routes):
            with self._numbering:  # racing threads append each route once, in order
                while len(routes) <= number:
                    routes.append([self.by_node[node] for node in self._route(len(routes))])
        return routes[number]

    def of(self, node: Node) -> Transport:
        """The transport that talks to ``node``."""
        return self.by_node[node]

    def close(self) -> None:
        """Close every idle connection (a transport reconnects when used again)."""
        for transport in self.by_node.values():
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
        of = self.by_node
        answers = self._exchange([(of[node], commands) for node, commands in plan], deadline)
        return settle(plan, answers, start)

    def exchange(
        self, plan: Sequence[tuple[Node, Sequence[Command]]], deadline: float = math.inf
    ) -> list[Reply]:
        """As :meth:`execute`, without recording the replies on the breakers (the
        prober's probes: it records each answer itself, see ``Prober``)."""
        start = time.perf_counter()
        of = self.by_node
        answers = self._exchange([(of[node], commands) for node, commands in plan], deadline)
        return exchanged(plan, answers, start)
