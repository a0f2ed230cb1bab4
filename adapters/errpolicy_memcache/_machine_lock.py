"""The core's session locks, as steps (``_steps``): take a lock (a :class:`LockAttempt`,
polling with ``WAIT``), release it, and hand over what waits for a node that is back."""

from __future__ import annotations

from ._core import Op
from ._locks import LockAttempt, Step, unlock_plan
from ._machine import State
from ._outcome import NodeStatus
from ._placement import rank
from ._session import Session, _Lock
from ._steps import ROUND, WAIT, Steps

__all__ = ["Locking"]


class Locking(State):
    """Lock and handover steps over the store's state."""

    def lock(self, op: Op, key: str) -> Steps[_Lock | None]:
        """Take the session's lock, waiting at most ``lock_timeout``: the steps of a
        :class:`LockAttempt` (the decisions, in ``_locks``) until it is held (the lock)
        or given up (None)."""
        attempt = LockAttempt(
            op,
            key,
            rank(self._nodes, self._seeds, key),
            ttl=self._lock_ttl,
            timeout=self._lock_timeout,
            poll=self._lock_poll,
            now=self._monotonic(),
            abandoned=self._handoff.abandoned,
        )
        step = attempt.next_step(self._ticks() - op.start)
        while True:
            if step.step is Step.SEND:
                assert step.node is not None
                assert step.command is not None
                (reply,) = yield (ROUND, [(step.node, (step.command,))], self.deadline(op))
                step = attempt.replied(reply, self._monotonic())
                for node, token in attempt.abandon:  # may land when the node answers again
                    self._handoff.abandon(node, attempt.key, token, self._lock_ttl)
                attempt.abandon.clear()
            elif step.step is Step.CLEAR:
                assert step.node is not None
                gone = yield from self._handoff.clear_lock(step.node, attempt.key, step.token)
                at = self._ticks() - op.start
                step = attempt.cleared(step.node, gone, at, self._monotonic())
            elif step.step is Step.WAIT:
                yield (WAIT, step.delay)
                step = attempt.next_step(self._ticks() - op.start)
            elif step.step is Step.LOCKED:
                assert step.node is not None
                return _Lock(step.node.address, attempt.key, self._monotonic())
            else:
                return None

    def unlock(self, session: Session, op: Op | None = None) -> Steps[None]:
        """Release the session's lock, if it holds one (it no longer does at once)."""
        lock, session._lock = session._lock, None
        if lock is not None:
            yield from self.unlock_key(lock, op)

    def unlock_key(self, lock: _Lock, op: Op | None = None) -> Steps[None]:
        """Release ``lock`` unless it may have expired and been taken by another request."""
        node = self._by_address.get(lock.node)
        plan = unlock_plan(node, lock.key, lock.acquired, self._monotonic(), self._lock_ttl)
        if not plan:
            return
        # From now, not from the operation's start: a late save still frees its lock.
        (reply,) = yield (ROUND, plan, self.deadline(None))
        if op is not None:
            status = NodeStatus.DELETED if reply.failure is None else NodeStatus(reply.failure.kind)
            op.results.append((reply.node.address, "unlock", status, reply.elapsed, ""))

    def hand_over(self) -> Steps[None]:
        """Hand over what waits for the nodes that answer again (``Handoff.hand_over``)."""
        return self._handoff.hand_over()
