"""What a handoff carries out now, decided apart from its I/O (both drivers).

:class:`~errpolicy_memcache._handoff.Handoff` keeps the tombstones and lock ``add``
commands that wait for a node. :func:`take` says what is due (the locks to clear, the
commands to write, the hints that expired); the driver carries it out (the sync
``Handoff._hand_over`` with blocking I/O, the asyncio recovery task on its loop) and
calls ``Handoff.settle`` with what was handed over. The handoff's lock is never held
during I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._breaker import BreakerState
from ._node import Node
from ._wire import Command

if TYPE_CHECKING:
    from ._handoff import Handoff

__all__ = ["Due", "decide", "take"]

Entry = tuple[str, str]  # (node address, key)


@dataclass(frozen=True, slots=True)
class Due:
    """One handover: ``clears`` are (node, lock key, token) of locks to remove if they
    still hold that token; ``writes`` the commands each node missed; ``expired`` the
    hints to forget unsent; ``stale`` the abandoned lock ``add`` commands whose TTL ended."""

    clears: tuple[tuple[Node, str, bytes], ...]
    writes: tuple[tuple[Node, tuple[Command, ...]], ...]
    expired: tuple[tuple[Entry, Command], ...]
    stale: tuple[Entry, ...]


def decide(
    ready: set[str],
    abandoned: Iterable[tuple[Entry, tuple[bytes, float]]],
    hints: Iterable[tuple[Entry, tuple[Command, float]]],
    by_address: Mapping[str, Node],
    now: float,
) -> Due:
    """What to hand over to the ``ready`` nodes (addresses whose breaker closed) at
    monotonic time ``now``: no I/O, no lock, no clock of its own."""
    clears: list[tuple[Node, str, bytes]] = []
    stale: list[Entry] = []
    for (address, lock_key), (token, until) in abandoned:
        if until <= now:
            stale.append((address, lock_key))
        elif address in ready:
            clears.append((by_address[address], lock_key, token))
    writes: dict[Node, list[Command]] = {}
    expired: list[tuple[Entry, Command]] = []
    for (address, key), (command, until) in hints:
        if until <= now:
            expired.append(((address, key), command))
        elif address in ready:
            writes.setdefault(by_address[address], []).append(command)
    return Due(
        tuple(clears),
        tuple((node, tuple(commands)) for node, commands in writes.items()),
        tuple(expired),
        tuple(stale),
    )


def take(handoff: Handoff, now: float) -> Due | None:
    """What ``handoff`` has due now, or None while no node it waits for is back; the
    abandoned locks whose TTL ended are forgotten at once."""
    with handoff._kept:
        ready = {n.address for n in handoff._waiting if n.breaker.state is BreakerState.CLOSED}
        if not ready:
            return None
        abandoned = list(handoff._abandoned.items())
        hints = list(handoff._hints.items())
    due = decide(ready, abandoned, hints, handoff._by_address, now)
    with handoff._kept:
        for entry in due.stale:
            handoff._abandoned.pop(entry, None)
    return due
