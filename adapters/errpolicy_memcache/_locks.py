"""The session lock's decisions, apart from I/O: where to ``add`` the lock, what each
reply means, when to poll again and when to give up, and whether a release is sent.

Sans-IO like ``_core``: :class:`LockAttempt` takes the replies and the current time
(the driver's monotonic clock) and returns the next step; it never sleeps, reads a
clock or opens a socket. The core's lock steps (``_machine_lock``) turn each step into
a command for either driver (an ``add`` to one node, a wait, clearing a lock an
earlier ``add`` of ours left) and feed the reply back.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from ._core import Op, targets
from ._node import Node, Reply
from ._outcome import NodeStatus, OutcomeKind
from ._wire import Command, add, delete

__all__ = ["LockAttempt", "LockStep", "Step", "lock_key", "unlock_plan"]

_STORED = "STORED"
_MAX_POLL = 0.1  # the poll's backoff stops growing here
# Past ``lock_ttl`` minus this, a held lock may have expired and been taken by another
# request: a release would remove that request's lock, so none is sent.
_RELEASE_MARGIN = 2.0


def lock_key(key: str) -> str:
    """The memcached key of the lock of the session stored under ``key``."""
    return key + ":lock"


class Step(Enum):
    """What the driver does next for a :class:`LockAttempt`."""

    SEND = "send"  # send ``command`` to ``node``, feed the reply to ``replied``
    CLEAR = "clear"  # remove our own earlier lock on ``node`` (``token``), feed ``cleared``
    WAIT = "wait"  # sleep ``delay`` seconds, then ask ``next_step`` again
    LOCKED = "locked"  # held on ``node``
    GIVE_UP = "give_up"  # no node to lock on, or the lock stayed busy past the timeout


@dataclass(frozen=True, slots=True)
class LockStep:
    """One step of a lock attempt (see :class:`Step` for which fields are set)."""

    step: Step
    node: Node | None = None
    command: Command | None = None
    token: bytes = b""
    delay: float = 0.0


class LockAttempt:
    """Taking a session's lock with memcached ``add`` of a random token, on the first
    node of the session's ranking whose breaker lets a request through, polling while
    another request holds it, at most ``timeout`` seconds.

    An ``add`` that timed out (or whose connection closed) may land when its node
    answers again: the driver hands its token to ``abandon`` (the store's hinted
    handoff) and the next ``add`` uses a new token. When the node says the lock is
    taken and ``abandoned`` knows a token of ours there, the lock is ours, landed late:
    the driver clears it and the attempt goes on at once.
    """

    def __init__(
        self,
        op: Op,
        key: str,
        ranked: Sequence[Node],
        *,
        ttl: int,
        timeout: float,
        poll: float,
        now: float,
        abandoned: Callable[[Node, str], bytes | None],
        token: Callable[[], bytes] = lambda: secrets.token_hex(8).encode(),
    ) -> None:
        self.op = op
        self.key = lock_key(key)
        self._ranked = ranked
        self._ttl = ttl
        self._deadline = now + timeout
        self._delay = poll
        self._abandoned = abandoned
        self._new_token = token
        self.token = token()
        self._seen: set[Node] = set()
        self._node: Node | None = None
        self.abandon: list[tuple[Node, bytes]] = []  # adds whose fate is unknown

    def next_step(self, at: float) -> LockStep:
        """The next command: an ``add`` to the current node, or to the next one of the
        ranking (``at``: seconds since the operation began, for the outcome)."""
        if self._node is None:
            chosen = targets(self.op, self._ranked, 1, self._seen, at)
            if not chosen:
                return LockStep(Step.GIVE_UP)
            self._node = chosen[0]
        command = add(self.key, self.token, self._ttl)
        return LockStep(Step.SEND, self._node, command)

    def replied(self, reply: Reply, now: float) -> LockStep:
        """What the ``add``'s ``reply`` means, at monotonic time ``now``."""
        node = reply.node
        if reply.failure is not None:
            self.op.record(node, "lock", NodeStatus(reply.failure.kind), reply.elapsed)
            if reply.failure.kind in ("timeout", "closed"):
                self.abandon.append((node, self.token))  # it may land when the node resumes
                self.token = self._new_token()
            self._node = None
            return self.next_step(reply.elapsed)
        if reply.values[0] == _STORED:
            self.op.results.append((node.address, "lock", NodeStatus.LOCKED, reply.elapsed, ""))
            return LockStep(Step.LOCKED, node)
        ours = self._abandoned(node, self.key)
        if ours is not None:
            return LockStep(Step.CLEAR, node, token=ours)
        return self._busy(node, reply.elapsed, now)

    def cleared(self, node: Node, gone: bool, at: float, now: float) -> LockStep:
        """After clearing our own late lock on ``node``: try again at once if it is gone."""
        if gone:
            return self.next_step(at)
        return self._busy(node, at, now)

    def _busy(self, node: Node, at: float, now: float) -> LockStep:
        delay = self._delay
        if now + delay > self._deadline:
            self.op.results.append((node.address, "lock", NodeStatus.BUSY, at, ""))
            self.op.flags.add(OutcomeKind.LOCK_TIMEOUT)
            return LockStep(Step.GIVE_UP)
        self._delay = min(delay * 2, _MAX_POLL)
        return LockStep(Step.WAIT, node, delay=delay)


def unlock_plan(
    node: Node | None, key: str, acquired: float, now: float, ttl: int
) -> list[tuple[Node, tuple[Command, ...]]]:
    """The release of a lock taken at monotonic time ``acquired`` on ``node``: a
    ``delete``, unless the lock may have expired by now (``ttl``) and belong to another
    request, or its node is unknown; then nothing (it expires)."""
    if node is None or now - acquired > ttl - _RELEASE_MARGIN:
        return []
    return [(node, (delete(key),))]
