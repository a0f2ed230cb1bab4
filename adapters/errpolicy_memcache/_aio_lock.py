"""The session lock of the asyncio store: memcached ``add`` of a token, polled with
``asyncio.sleep`` (a waiting task never blocks the loop), released with ``delete``; the
sync store's rules (``MemcacheSessionStore._lock``), over the async driver's I/O."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from . import _core as core
from ._core import Op
from ._node import Node, Reply
from ._outcome import NodeStatus, OutcomeKind
from ._placement import rank
from ._session import Session, _Lock
from ._wire import Command, add, cas, delete, gets

if TYPE_CHECKING:
    from ._store import MemcacheSessionStore

__all__ = ["AsyncLocks"]

_STORED = "STORED"

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
        """Take the session's lock, waiting at most ``lock_timeout`` (see
        ``MemcacheSessionStore._lock``); None if it was not obtained."""
        s = self._store
        lock_key = key + ":lock"
        ranked = rank(s._nodes, s._seeds, key)
        token = secrets.token_hex(8).encode()
        deadline = time.monotonic() + s._lock_timeout
        delay = s._lock_poll
        seen: set[Node] = set()
        node: Node | None = None
        while True:
            if node is None:
                chosen = core.targets(op, ranked, 1, seen, time.perf_counter() - op.start)
                if not chosen:
                    return None
                node = chosen[0]
            (reply,) = await self._run(
                [(node, (add(lock_key, token, s._lock_ttl),))], s._deadline(op)
            )
            if reply.failure is not None:
                op.record(node, "lock", NodeStatus(reply.failure.kind), reply.elapsed)
                if reply.failure.kind in ("timeout", "closed"):
                    s._handoff.abandon(node, lock_key, token, s._lock_ttl)
                    token = secrets.token_hex(8).encode()
                node = None
                continue
            if reply.values[0] == _STORED:
                op.results.append((node.address, "lock", NodeStatus.LOCKED, reply.elapsed, ""))
                return _Lock(node.address, lock_key, time.monotonic())
            ours = s._handoff.abandoned(node, lock_key)
            if ours is not None and await self.clear(node, lock_key, ours):
                continue
            if time.monotonic() + delay > deadline:
                op.results.append((node.address, "lock", NodeStatus.BUSY, reply.elapsed, ""))
                op.flags.add(OutcomeKind.LOCK_TIMEOUT)
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

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
        self._store._handoff._abandoned.pop((node.address, lock_key), None)
        return value is None or value[0] == token

    async def unlock(self, session: Session, op: Op | None) -> None:
        lock, session._lock = session._lock, None
        if lock is not None:
            await self.unlock_key(lock, op)

    async def unlock_key(self, lock: _Lock, op: Op | None = None) -> None:
        s = self._store
        if time.monotonic() - lock.acquired > s._lock_ttl - 2:
            return  # past its TTL the lock may be another request's now
        node = s._by_address.get(lock.node)
        if node is None:
            return
        (reply,) = await self._run([(node, (delete(lock.key),))], s._deadline(None))
        if op is not None:
            status = NodeStatus.DELETED if reply.failure is None else NodeStatus(reply.failure.kind)
            op.results.append((node.address, "unlock", status, reply.elapsed, ""))
