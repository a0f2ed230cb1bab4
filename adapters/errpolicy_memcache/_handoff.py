"""What waits for a node that answers again: the tombstones it missed, and the locks
whose ``add`` timed out there (Dynamo's hinted handoff, for logouts and locks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._breaker import BreakerState
from ._core import Write
from ._handover import take
from ._hinted import Handing, Verify
from ._node import Node
from ._steps import ROUND, Steps
from ._wire import Command, cas, gets

__all__ = ["Handoff"]

# At most this many of each kind are kept; the oldest go first.
_HINTS_MAX = 4096
_ABANDONED_MAX = 256


class Handoff:
    """The tombstones that did not reach a node (skipped or failed), and the lock
    ``add`` commands whose fate is unknown (timed out, or the connection closed: they
    may land when a paused node resumes), kept until they expire and handed over once
    their node answers again: a tombstone is written there, a copy unless the node holds
    a newer one (:mod:`._hinted`), a lock is removed if it still holds that request's
    token. No I/O: a handover is steps (``_steps``) that a driver carries out.
    ``verify`` decodes a stored blob of a key (the store's keys), ``timeout`` is each
    handover round's deadline from its start (the store's ``operation_timeout``);
    ``monotonic`` and ``ticks`` are the core's clocks (:mod:`._clocks`): expiries on
    the first, round deadlines on the second."""

    def __init__(
        self,
        nodes: Sequence[Node],
        verify: Verify,
        timeout: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        ticks: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._nodes = nodes
        self._monotonic = monotonic
        self._ticks = ticks
        self._by_address = {node.address: node for node in nodes}
        self._timeout = timeout
        self.verify = verify
        # (address, key) -> (the missed write: a tombstone's set or a copy's add, the
        # monotonic time it expires)
        self._hints: dict[tuple[str, str], tuple[Command, float]] = {}
        # (address, lock key) -> (the lock's token, monotonic time its TTL ends)
        self._abandoned: dict[tuple[str, str], tuple[bytes, float]] = {}
        # The nodes something waits for: a request checks only these.
        self._waiting: set[Node] = set()
        #: True while something waits for a node (``_waiting`` is not empty): an
        #: attribute, not a property, as every request reads it (set under ``_kept``).
        self.waiting = False
        self._lock = threading.Lock()  # one handoff at a time (held during its I/O)
        # Guards the two dicts and the waiting set: held for a few dict operations only,
        # never during I/O, so a save's hint does not wait for a handoff's round trips,
        # and no thread ever iterates a dict that another one changes.
        self._kept = threading.Lock()

    def ready(self) -> bool:
        """True when a node that something waits for answers again (breaker closed)."""
        with self._kept:
            return any(n.breaker.state is BreakerState.CLOSED for n in self._waiting)

    def hint(
        self, write: Write, nodes: Sequence[Node] | None = None, command: Command | None = None
    ) -> None:
        """Keep ``command`` (default: ``write``'s, a tombstone) for each of ``nodes``
        (default: every node) that ``write`` did not reach, until it expires. A save
        hints an ``add`` of its copy to the home nodes it skipped: a reader that finds
        them back, and its copy below home on nodes that failed since, must not take
        their misses for "no session"."""
        command = write.command if command is None else command
        until = self._monotonic() + command.ttl
        for node in self._nodes if nodes is None else nodes:
            if node in write.acks:
                continue
            with self._kept:
                _bounded(self._hints, _HINTS_MAX)
                self._hints[node.address, write.key] = (command, until)
                self._waiting.add(node)
                self.waiting = True

    def abandon(self, node: Node, lock_key: str, token: bytes, ttl: float) -> None:
        """Remember a lock ``add`` whose fate is unknown, until its TTL would end it."""
        with self._kept:
            _bounded(self._abandoned, _ABANDONED_MAX)
            self._abandoned[node.address, lock_key] = (token, self._monotonic() + ttl)
            self._waiting.add(node)
            self.waiting = True

    def forget(self, node: Node, lock_key: str) -> None:
        """Forget the abandoned ``add`` of ``lock_key`` on ``node`` (its lock is cleared)."""
        with self._kept:
            self._abandoned.pop((node.address, lock_key), None)

    def abandoned(self, node: Node, lock_key: str) -> bytes | None:
        """The token of an ``add`` of ``lock_key`` on ``node`` whose fate is unknown."""
        kept = self._abandoned.get((node.address, lock_key))
        return None if kept is None else kept[0]

    def clear_lock(self, node: Node, lock_key: str, token: bytes) -> Steps[bool]:
        """Remove the lock ``lock_key`` on ``node`` if it still holds ``token`` (a ``cas``
        that expires it at once, so another request's lock is never removed). True if it
        is gone; the token is forgotten unless the node failed. Steps (``_steps``)."""
        deadline = self._ticks() + self._timeout
        (reply,) = yield (ROUND, [(node, (gets(lock_key),))], deadline)
        if reply.failure is not None:
            return False
        value = reply.values[0]
        if value is not None and value[0] == token:
            (reply,) = yield (ROUND, [(node, (cas(lock_key, token, -1, value[1]),))], deadline)
            if reply.failure is not None:
                return False
        self.forget(node, lock_key)
        return value is None or value[0] == token

    def hand_over(self) -> Steps[None]:
        """Hand over what waits for the nodes that answer again (their breaker closed):
        remove the locks whose ``add`` timed out there, write the tombstones and copies
        they missed (:mod:`._hinted`). Steps (``_steps``), run before a ``start()`` while
        anything waits and after a probe reached a node. One handover at a time in the
        process: another finds it busy and ends at once."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            due = take(self, self._monotonic())
            if due is None:  # the usual case while a node is away
                return
            for node, lock_key, token in due.clears:
                yield from self.clear_lock(node, lock_key, token)
            handing = Handing(due.writes, self.verify)
            while step := handing.plan():
                handing.receive((yield (ROUND, step, self._ticks() + self._timeout)))
            self.settle([*due.expired, *handing.done])
        finally:
            self._lock.release()

    @property
    def busy(self) -> bool:
        """True while a handover runs (tests hold it to stand for one)."""
        return self._lock.locked()

    def settle(self, done: Sequence[tuple[tuple[str, str], Command]]) -> None:
        """Forget the hints in ``done`` (handed over or expired), each unless a newer
        hint replaced it meanwhile (that one waits); the nodes something still waits
        for are those with a hint or an abandoned lock left."""
        with self._kept:
            for entry, command in done:
                kept = self._hints.get(entry)
                if kept is not None and kept[0] == command:
                    del self._hints[entry]
            left = {a for a, _ in self._abandoned}
            left.update(a for a, _ in self._hints)
            self._waiting = {node for node in self._nodes if node.address in left}
            self.waiting = bool(self._waiting)


def _bounded(kept: dict[tuple[str, str], Any], limit: int) -> None:
    """Make room for one more entry in ``kept``: the oldest goes past ``limit``."""
    if len(kept) >= limit:  # the caller holds the lock that guards ``kept``
        del kept[next(iter(kept))]
