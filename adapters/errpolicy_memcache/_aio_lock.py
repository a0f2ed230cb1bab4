"""The session lock of the asyncio store: memcached ``add`` of a token, polled with
``asyncio.sleep`` (a waiting task never blocks the loop), released with ``delete``; the
decisions are ``_locks``' (the sync store's), carried out with the async driver's I/O."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ._core import Op
from ._locks import LockAttempt, Step, unlock_plan
from ._node import Node, Reply
from ._outcome import NodeStatus
from ._placement import rank
from ._session import Session, _Lock
from ._wire import Command, cas, gets

if TYPE_CHECKING:
    from ._store import MemcacheSessionStore

__all__ = ["AsyncLocks"]

Run = Callable[[Sequence[tuple[Node, Sequence[Command]]], float], Awaitable[list[Reply]]]


class AsyncLocks:
    """Takes and releases session locks for one async store: ``store`` holds the
    options and the handoff of ``add`` commands whose fate is unknown, ``run`` carries
    a plan out (the driver's ``_execute``)."""

    __slots__ = ("_run", "_store")

    def __init__(self, store: MemcacheSessionStore, run: Run) -> None:
        self._store = store
        self._run = run

    async def lock(self, op: Op, key: str) -> _Lock | None:
        """Take the session's lock, waiting at most ``lock_timeout``: the steps of a
        :class:`LockAttempt` (the sync store's decisions), carried out with this
        driver's I/O and ``asyncio.sleep``; None if it was not obtained."""
        s = self._store
        attempt = LockAttempt(
            op,
            key,
            rank(s._nodes, s._seeds, key),
            ttl=s._lock_ttl,
            timeout=s._lock_timeout,
            poll=s._lock_poll,
            now=time.monotonic(),
            abandoned=s._handoff.abandoned,
        )
        step = attempt.next_step(time.perf_counter() - op.start)
        while True:
            if step.step is Step.SEND:
                assert step.node is not None
                assert step.command is not None
                (reply,) = await self._run([(step.node, (step.command,))], s._deadline(op))
                step = attempt.replied(reply, time.monotonic())
                for node, token in attempt.abandon:  # may land when the node answers again
                    s._handoff.abandon(node, attempt.key, token, s._lock_ttl)
                attempt.abandon.clear()
            elif step.step is Step.CLEAR:
                assert step.node is not None
                gone = await self.clear(step.node, attempt.key, step.token)
                at = time.perf_counter() - op.start
                step = attempt.cleared(step.node, gone, at, time.monotonic())
            elif step.step is Step.WAIT:
                await asyncio.sleep(step.delay)
                step = attempt.next_step(time.perf_counter() - op.start)
            elif step.step is Step.LOCKED:
                assert step.node is not None
                return _Lock(step.node.address, attempt.key, time.monotonic())
            else:
                return None

    async def clear(self, node: Node, lock_key: str, token: bytes) -> bool:
        """``Handoff.clear_lock`` over the driver's connections: remove the lock if it
        still holds ``token`` (a ``cas`` that expires it at once)."""
        deadline = self._store._deadline(None)
        (reply,) = await self._run([(node, (gets(lock_key),))], deadline)
        if reply.failure is not None:
            return False
        value = reply.values[0]
        if value is not None and value[0] == token:
            (reply,) = await self._run([(node, (cas(lock_key, token, -1, value[1]),))], deadline)
            if reply.failure is not None:
                return False
        self._store._handoff.forget(node, lock_key)
        return value is None or value[0] == token

    async def unlock(self, session: Session, op: Op | None) -> None:
        lock, session._lock = session._lock, None
        if lock is not None:
            await self.unlock_key(lock, op)

    async def unlock_key(self, lock: _Lock, op: Op | None = None) -> None:
        s = self._store
        node = s._by_address.get(lock.node)
        plan = unlock_plan(node, lock.key, lock.acquired, time.monotonic(), s._lock_ttl)
        if not plan:
            return
        # From now, not from the operation's start: a late save still frees its lock.
        (reply,) = await self._run(plan, s._deadline(None))
        if op is not None:
            status = NodeStatus.DELETED if reply.failure is None else NodeStatus(reply.failure.kind)
            op.results.append((reply.node.address, "unlock", status, reply.elapsed, ""))
