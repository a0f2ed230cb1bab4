"""How the writes a node missed are handed over to it, decided apart from the I/O
(shared by the sync :class:`~errpolicy_memcache._handoff.Handoff` and the asyncio
driver's recovery).

A tombstone goes as it is (a ``set``: a tombstone beats any copy). A hinted copy must
leave the node holding that copy or a newer one: a plain ``add`` would keep an older
copy the node held from before it was skipped, and once the newer copy's other holders
are lost that older copy would be served. So the node is asked what it holds (``gets``)
and then sent an ``add`` if it holds nothing, a ``cas`` if its copy is older or invalid,
nothing if it is as new or newer; a write raced by another one starts again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._envelope import EnvelopeError, Record
from ._node import Node, Reply
from ._wire import Command, add, cas, gets

__all__ = ["ROUNDS", "Handing", "next_command"]

#: Round trips at most per handover; a hint still racing other writes after them stays
#: for the next handover.
ROUNDS = 6

Verify = Callable[[bytes, str], Record | EnvelopeError]


def next_command(hint: Command, sent: Command | None, value: Any, verify: Verify) -> Command | None:
    """The next command that hands ``hint`` over, given the node's reply ``value`` to
    ``sent`` (None: nothing sent yet), or None when the node holds ``hint``'s copy or a
    newer one. No I/O: ``verify`` decodes a stored blob of a key."""
    if sent is None:
        return hint if hint.name == "set" else gets(hint.key)
    if sent.name == "gets":
        assert hint.value is not None  # a hinted copy carries its blob
        if value is None:
            return add(hint.key, hint.value, hint.ttl)
        held, token = value
        ours = verify(hint.value, hint.key)
        if isinstance(ours, EnvelopeError):  # cannot happen for our own blob: drop it
            return None
        theirs = verify(held, hint.key)
        if isinstance(theirs, Record) and theirs.order >= ours.order:
            return None
        return cas(hint.key, hint.value, hint.ttl, token)
    if value == "STORED":
        return None
    # NOT_STORED (added meanwhile), EXISTS or NOT_FOUND (changed meanwhile): ask again.
    return gets(hint.key)


class Handing:
    """One handover of hinted writes as a state machine: :meth:`plan` gives the commands
    to send now (one per pending hint), :meth:`receive` takes the nodes' replies;
    :attr:`done` lists the hints handed over, as ((node address, key), hint). A node
    that fails keeps its hints for the next handover, as does a hint after :data:`ROUNDS`."""

    __slots__ = ("_pending", "_rounds", "_verify", "done")

    def __init__(self, writes: Sequence[tuple[Node, Sequence[Command]]], verify: Verify) -> None:
        self._verify = verify
        self._rounds = 0
        self.done: list[tuple[tuple[str, str], Command]] = []
        # node -> [(hint, command to send next)]
        self._pending: dict[Node, list[tuple[Command, Command]]] = {}
        for node, hints in writes:
            for hint in hints:
                first = next_command(hint, None, None, verify)
                assert first is not None
                self._pending.setdefault(node, []).append((hint, first))

    def plan(self) -> list[tuple[Node, tuple[Command, ...]]]:
        """The commands to send now, per node; empty when the handover is over."""
        if self._rounds >= ROUNDS:
            return []
        return [(node, tuple(c for _, c in steps)) for node, steps in self._pending.items()]

    def receive(self, replies: Sequence[Reply]) -> None:
        """Take the replies to :meth:`plan`'s commands and work out the next ones."""
        self._rounds += 1
        pending: dict[Node, list[tuple[Command, Command]]] = {}
        for reply in replies:
            if reply.failure is not None:  # the node failed: its hints wait
                continue
            steps = self._pending.get(reply.node, [])
            for (hint, sent), value in zip(steps, reply.values, strict=True):
                step = next_command(hint, sent, value, self._verify)
                if step is None:
                    self.done.append(((reply.node.address, hint.key), hint))
                else:
                    pending.setdefault(reply.node, []).append((hint, step))
        self._pending = pending
