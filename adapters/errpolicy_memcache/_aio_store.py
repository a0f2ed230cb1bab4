"""AsyncMemcacheSessionStore: the session store's second driver, over asyncio streams.

The decisions are the sync store's: which nodes to ask, what their replies mean, what
to repair, where writes go (``_core``), and everything a process keeps between
operations (what it knows of each id, the breakers, the version clock, the handoff of
missed tombstones). This driver owns a :class:`MemcacheSessionStore` for that state
and its helpers that do no I/O, and carries each plan out with ``_aio_transport``
instead of sockets: same options, outcomes, log records, guards and contract.

Each event loop gets its own connection pools (a connection belongs to the loop that
opened it); the breakers, what the store knows and the handoff are shared by every
task and loop of the process. Probing an open breaker, and handing over what waits
for a node that answers again, run on the loop too (``_aio_recovery``: a task per loop,
over the same asyncio connections; no thread, no blocking socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

from . import _core as core
from ._aio_lock import AsyncLocks
from ._aio_recovery import AsyncRecovery
from ._aio_transport import AsyncPool, agreed_gets, exchange
from ._breaker import BreakerState
from ._core import Acked, Known, Op, Read, Write
from ._envelope import Record
from ._errors import ConfigurationError, SessionExists, SessionUnavailable
from ._ids import is_valid_session_id, new_session_id, storage_key
from ._metrics import StoreStats
from ._node import Node, Reply, settle
from ._outcome import NodeStatus, Outcome, OutcomeKind
from ._session import Session
from ._store import _GUARDS, MemcacheSessionStore, _check_id, _positive
from ._transport import Answer
from ._wire import MAX_VALUE, Command, add, delete, gets, set_

__all__ = ["AsyncMemcacheSessionStore"]

_MAX_TTL = core.MAX_TTL
_STORED = "STORED"

Plan = Sequence[tuple[Node, Sequence[Command]]]


class AsyncMemcacheSessionStore:
    """Sessions replicated on ``replicas`` memcached nodes, for asyncio applications.

    Takes the options of :class:`MemcacheSessionStore` (but ``transport``: it talks to
    memcached over asyncio streams), and ``max_connections``: the connections one event
    loop keeps open to a node, idle or in use (more requests wait for one, within
    their deadline); it replaces ``pool_size``, which the async store does not use.
    Every method that talks to memcached is a coroutine and is guarded by the same
    operation name as the sync store's.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        servers: Sequence[str | tuple[str, int]],
        secret_key: str | bytes | Sequence[str | bytes],
        replicas: int = 2,
        *,
        max_connections: int = 64,
        **options: Any,
    ) -> None:
        if "transport" in options:
            raise ConfigurationError("transport: the async store talks over asyncio streams")
        _positive("max_connections", max_connections, integer=True)
        # The shared state, and the checks of every option: the sync store's own.
        self._s = MemcacheSessionStore(
            servers, secret_key, replicas, transport="pipelined", **options
        )
        self._max_connections = max_connections
        first = self._s.nodes[0].transport
        self._connect_timeout: float = first._connect_timeout  # type: ignore[union-attr]
        self._timeout: float = first._read_timeout  # type: ignore[union-attr]
        self._max_value: int = max(self._s._max_size, MAX_VALUE)
        self._locks = AsyncLocks(self._s, lambda plan, deadline: self._execute(plan, deadline))
        # Probing and handoff on the loop: the breakers wake it, not the sync prober.
        self._recovery = AsyncRecovery(
            self._s,
            lambda plan, deadline: self._execute(plan, deadline),
            self._locks,
            gets(self._s._prefix + "probe"),
        )
        for node in self._s.nodes:
            node.breaker._on_open = self._recovery.wake
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Node, AsyncPool]] = (
            weakref.WeakKeyDictionary()
        )
        self._last_pools: (
            tuple[weakref.ref[asyncio.AbstractEventLoop], dict[Node, AsyncPool]] | None
        ) = None

    def __repr__(self) -> str:
        return f"<AsyncMemcacheSessionStore replicas={self._s._replicas} nodes={self.nodes!r}>"

    # -- public API ------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in the order given; ``node.breaker.state`` tells their health."""
        return self._s.nodes

    def new_session(self) -> Session:
        """A fresh, empty session with a new id; no I/O."""
        return self._s.new_session()

    def stats(self) -> StoreStats:
        """What the store counted since it was built, as the sync store's
        :meth:`~MemcacheSessionStore.stats` (every loop's operations together); no I/O."""
        return self._s.stats()

    async def start(self, sid: str | None) -> Session:
        """Load the session ``sid``, or give a new one if it is None, malformed or unknown.

        Guarded by ``"session.start"``, as :meth:`MemcacheSessionStore.start`. If the
        awaiting task is cancelled, a lock taken for it is released.
        """
        if self._s._handoff.waiting:
            self._recovery.hand_over_soon()
        session: Session | None = None
        try:
            # The guard's __aenter__/__aexit__ only call __enter__/__exit__: the plain
            # form spares two coroutines on every read, with the same meaning.
            with _GUARDS["session.start"]:
                session, outcome = await self._start(sid)
        except BaseException:
            if session is not None and session._lock is not None:
                await _finish_anyway(self._locks.unlock(session, None))
            raise
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        return session

    async def exists(self, sid: str) -> bool:
        """True if ``sid`` names a stored, live session (guarded by ``"session.exists"``)."""
        if not is_valid_session_id(sid):
            return False
        async with _GUARDS["session.exists"]:
            key = storage_key(self._s._prefix, sid)
            op = Op("session.exists", key)
            read = await self._read(op, key)
            found, outcome = await self._conclude(op, sid, key, read, renew=False)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        return found is not None

    async def expires_in(self, sid: str) -> int | None:
        """Seconds until the stored session ``sid`` expires, read from its signed record
        (guarded by ``"session.exists"``); None if it is not stored.

        The record says when it was written and for how long: what is left of that,
        capped by the absolute lifetime. A read that renewed the session (memcached
        ``touch``) since its last write extended it, so this is a lower bound, at least 1.
        """
        if not is_valid_session_id(sid):
            return None
        async with _GUARDS["session.exists"]:
            key = storage_key(self._s._prefix, sid)
            op = Op("session.exists", key)
            read = await self._read(op, key)
            found, outcome = await self._conclude(op, sid, key, read, renew=False)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        if found is None:
            return None
        record = found.record
        now = self._s._clock()
        left = record.written + (record.ttl or self._s._idle_ttl) - now
        absolute = self._s._absolute_ttl
        if absolute is not None:
            left = min(left, record.created + absolute - now)
        return max(int(left), 1)

    async def save(
        self, session: Session, *, must_create: bool = False, ttl: int | None = None
    ) -> None:
        """Write the session to its replicas (guarded by ``"session.save"``); see
        :meth:`MemcacheSessionStore.save`. A save cancelled halfway changes ``session``
        in nothing: it stays modified, at its old version."""
        _check_id(session)
        if ttl is not None:
            _positive("ttl", ttl, integer=True)
            if ttl > _MAX_TTL:
                raise ConfigurationError(f"ttl: at most 30 days ({_MAX_TTL}), not {ttl}")
        async with _GUARDS["session.save"], self._unlocked_if_cancelled(session):
            outcome = await self._save(session, must_create=must_create, ttl=ttl)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)

    async def regenerate(self, session: Session) -> None:
        """Give the session a new id; the old id is tombstoned (``"session.regenerate"``)."""
        _check_id(session)
        async with _GUARDS["session.regenerate"], self._unlocked_if_cancelled(session):
            outcome = await self._regenerate(session)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)

    async def destroy(self, session: Session) -> None:
        """Log out: tombstone the stored session, then reset ``session`` to a new empty one
        (guarded by ``"session.destroy"``)."""
        _check_id(session)
        outcome: Outcome | None = None
        async with _GUARDS["session.destroy"], self._unlocked_if_cancelled(session):
            if not session.new:
                outcome = await self._tombstone(session.id, session.version, session.ttl, session)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        session._reset(new_session_id(), self._s._clock())

    async def delete(self, sid: str) -> None:
        """Tombstone the session ``sid`` (guarded by ``"session.destroy"``)."""
        if not is_valid_session_id(sid):
            return
        async with _GUARDS["session.destroy"]:
            outcome = await self._tombstone(sid, 0, None, None)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)

    async def release(self, session: Session) -> None:
        """Release the session's lock without saving (a request that changed nothing)."""
        if session._lock is not None:
            await self._locks.unlock(session, None)

    async def aclose(self) -> None:
        """Stop this loop's probing and handoff task, and close this loop's pooled
        connections (the store can still be used; it reconnects)."""
        await self._recovery.aclose()
        self._last_pools = None
        pools = self._pools.pop(asyncio.get_running_loop(), None)
        for pool in (pools or {}).values():
            pool.close()

    async def __aenter__(self) -> AsyncMemcacheSessionStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def _unlocked_if_cancelled(self, session: Session) -> AsyncIterator[None]:
        """Release the session's lock if the awaiting task is cancelled: the caller may
        never get to release it (an error keeps it, as in the sync store: the caller
        can fix the session and save again)."""
        try:
            yield
        except asyncio.CancelledError:
            if session._lock is not None:
                await _finish_anyway(self._locks.unlock(session, None))
            raise

    # -- I/O ---------------------------------------------------------------------------

    def _loop_pools(self) -> dict[Node, AsyncPool]:
        """The running loop's pools (the last loop's found again without a lookup)."""
        loop = asyncio.get_running_loop()
        last = self._last_pools
        if last is not None and last[0]() is loop:
            return last[1]
        pools = self._pools.get(loop)
        if pools is None:
            pools = self._pools[loop] = {}
        self._last_pools = (weakref.ref(loop), pools)
        return pools

    def _pool_of(self, node: Node, pools: dict[Node, AsyncPool] | None = None) -> AsyncPool:
        if pools is None:
            pools = self._loop_pools()
        pool = pools.get(node)
        if pool is None:
            pool = pools[node] = AsyncPool(
                node.host,
                node.port,
                self._connect_timeout,
                self._timeout,
                self._max_connections,  # idle ones too: they are counted in it anyway
                self._max_connections,
                self._max_value,
                self._s._nodes.index(node),
            )
        return pool

    async def _execute(self, plan: Plan, deadline: float = math.inf) -> list[Reply]:
        """Run each node's commands; one :class:`Reply` per node, recorded on its breaker
        (as ``_node.execute``). Never raises for a node."""
        start = time.perf_counter()
        pools = self._loop_pools()
        answers = await exchange(
            [(pools.get(node) or self._pool_of(node, pools), cmds) for node, cmds in plan],
            deadline,
        )
        return settle(plan, answers, start)

    def _agreed_gets(
        self, nodes: Sequence[Node], command: Command, deadline: float
    ) -> Awaitable[bytes | list[Answer]]:
        """One ``gets`` to ``nodes`` in one round: the value when all hold the same
        bytes, else each node's answer (the sync store's ``_agreed_gets``); nothing is
        recorded on the breakers. With :meth:`_execute`, the driver's I/O."""
        pools = self._loop_pools()
        return agreed_gets(
            [pools.get(node) or self._pool_of(node, pools) for node in nodes], command, deadline
        )

    # -- reading -------------------------------------------------------------------

    async def _start(self, sid: str | None) -> tuple[Session, Outcome | None]:
        s = self._s
        if type(sid) is not str:
            return s.new_session(), None
        known = s._known.get(sid)
        if known is not None:
            key = known.key
        elif is_valid_session_id(sid):
            key = storage_key(s._prefix, sid)
        else:
            return s.new_session(), None
        began = time.perf_counter()
        home: list[Reply] | None = None
        wide = False
        if not s._locking:  # a lock is taken before reading
            known = known or s._known_for(sid, key)
            if s._reads_home(known):
                settled = await self._home_read(sid, known, began)
            else:
                wide = True
                settled = await self._wide_read(sid, known, began)
            if isinstance(settled, Record):
                return s._loaded(sid, settled), None
            home = settled
        op = Op("session.start", key, began)
        lock = await self._locks.lock(op, key) if s._locking else None
        try:
            read = await self._read(op, key, home, wide=wide)
            found, outcome = await self._conclude(op, sid, key, read, renew=True)
        except BaseException:
            if lock is not None:
                await _finish_anyway(self._locks.unlock_key(lock))
            raise
        if found is None:
            session = s.new_session()
            if lock is not None:  # the caller's id was unknown: never adopt it
                await self._locks.unlock_key(lock)
        else:
            session = s._loaded(sid, found.record)
            session._lock = lock
        return session, outcome

    async def _home_read(self, sid: str, known: Known, began: float) -> Record | list[Reply] | None:
        """The usual read (see ``MemcacheSessionStore._home_read``): the home nodes in
        one round; their record when all hold the same valid live copy that needs
        nothing more, else their replies for :meth:`_read`, or None to start over."""
        s = self._s
        home = known.home
        for node in home:
            if node.breaker.state is not BreakerState.CLOSED:
                return None
        found = await self._agreed_gets(home, known.command, began + s._operation_timeout)
        if type(found) is not bytes:
            assert isinstance(found, list)
            return settle([(node, (known.command,)) for node in home], found, began)
        done = time.perf_counter()
        for node in home:
            node.breaker.success()
        return s._home_record(sid, known, began, found, done)

    async def _wide_read(self, sid: str, known: Known, began: float) -> Record | list[Reply] | None:
        """The read of a process that is not settled (see ``MemcacheSessionStore._wide_read``):
        every node whose breaker is closed, in one round."""
        s = self._s
        mark = s._faults.marks  # before the round: a fault during it unsettles
        asked, skipped = s._wide_targets(known)
        if not asked:
            return None
        at = time.perf_counter() - began
        plan = [(node, (known.command,)) for node in asked]
        replies = await self._execute(plan, began + s._operation_timeout)
        found = s._wide_record(sid, known, began, at, replies, skipped)
        s._settle(known, mark, found, skipped)
        return found

    async def _read(
        self, op: Op, key: str, home: list[Reply] | None = None, *, wide: bool = False
    ) -> Read:
        """The sync store's read (``MemcacheSessionStore._read``): the same steps
        (``_read_steps``), each round awaited."""
        s = self._s
        steps = s._read_steps(op, key, home, wide=wide)
        command = (gets(key),)
        try:
            targets = next(steps)
            while True:
                plan = [(node, command) for node in targets]
                targets = steps.send(await self._execute(plan, s._deadline(op)))
        except StopIteration as done:
            read: Read = done.value
            return read

    async def _conclude(
        self, op: Op, sid: str, key: str, read: Read, *, renew: bool
    ) -> tuple[core.Copy | None, Outcome | None]:
        """Judge a read (:func:`core.judge`) and carry out what it allows, as the sync
        store's ``_conclude``."""
        s = self._s
        known, judgement, now = s._judge_read(sid, key, read)
        winner = read.winner
        if judgement.repair:
            await self._repair(op, key, read, renew=renew and judgement.found is not None, now=now)
        if judgement.bury:
            write, _ = s._tombstone_write(key, winner.record.version if winner else 0, None)
            await self._write(op, [write])
            s._handoff.hint(write)
            if write.acks:
                op.flags.add(OutcomeKind.REPAIRED)
        return judgement.found, s._concluded(op, sid, known, read, judgement)

    async def _repair(self, op: Op, key: str, read: Read, *, renew: bool, now: float) -> None:
        s = self._s
        winner = read.winner
        if winner is None:
            return
        record = winner.record
        due = renew and s._renewal_due(record)
        if not (due or read.mixed or read.misses or read.invalid):
            return
        if not record.tombstone and core.expired(record, now, s._absolute_ttl):
            return
        ttl = core.effective_ttl(record, s._idle_ttl, s._absolute_ttl, now)
        plan, repaired = core.repair_plan(key, read, ttl, renew=due)
        if repaired:
            op.flags.add(OutcomeKind.REPAIRED)
        if plan:
            core.note_repairs(op, await self._execute(plan, s._deadline(op)))

    # -- writing -------------------------------------------------------------------

    async def _write(self, op: Op, writes: Sequence[Write]) -> None:
        """Store every write on ``need`` answering nodes, falling back down the ranking."""
        while True:
            plan = core.write_round(op, writes, time.perf_counter() - op.start)
            if not plan:
                return
            sent = [(node, [w.command for w in items]) for node, items in plan.items()]
            replies = await self._execute(sent, self._s._deadline(op))
            core.note_writes(op, plan, replies)

    async def _save(
        self, session: Session, *, must_create: bool, ttl: int | None
    ) -> Outcome | None:
        s = self._s
        key = storage_key(s._prefix, session.id)
        now = s._clock()
        created = session.created or now
        version = s._next_version(session.version)
        life = ttl or session.ttl or s._idle_ttl
        record = Record(version, s._writer, created, now, life, session._encoded())
        write = s._record_write(key, record, add if must_create else set_)
        op = Op("session.save", key)
        await self._write(op, [write])
        if ttl is not None:  # kept once the write went out (the sync store sets it first)
            session.ttl = ttl
        if write.acks and not must_create:
            stray = s._stray_write(session.id, write)
            if stray is not None:
                await self._write(op, [stray])
                write.acks.extend(stray.acks)
            s._hint_home(write)
        if write.taken:
            await self._rollback(op, key, write.acks)
            raise SessionExists(f"session id already in use (key ...{key[-12:]})")
        if session._lock is not None:
            await self._locks.unlock(session, op)
        outcome = s._write_outcome(op, [write], version)
        if write.acks:
            session.new = False
            session.modified = False
            session._version = version
            session._created = created
            assert write.command.value is not None
            known = s._known.get(session.id) or s._known_for(session.id, key)
            known.ack(
                Acked(version, False, frozenset(n.address for n in write.acks), s._faults.now())
            )
            s._remember(session.id, known, write.command.value, record)
        return outcome

    async def _rollback(self, op: Op, key: str, nodes: Sequence[Node]) -> None:
        if nodes:
            plan = [(node, (delete(key),)) for node in nodes]
            for reply in await self._execute(plan, self._s._deadline(None)):
                status = NodeStatus.DELETED if reply.failure is None else NodeStatus.ERROR
                op.results.append((reply.node.address, "delete", status, reply.elapsed, ""))

    async def _tombstone(
        self, sid: str, floor: int, ttl: int | None, session: Session | None
    ) -> Outcome | None:
        s = self._s
        key = storage_key(s._prefix, sid)
        op = Op("session.destroy", key)
        write, version = s._tombstone_write(key, floor, ttl)
        await self._write(op, [write])
        s._handoff.hint(write)
        if write.acks:
            s._acked(sid, key, write, version, True)
        if session is not None and session._lock is not None:
            await self._locks.unlock(session, op)
        return s._write_outcome(op, [write], version)

    async def _regenerate(self, session: Session) -> Outcome | None:
        s = self._s
        old_key = storage_key(s._prefix, session.id)
        new_id = new_session_id()
        new_key = storage_key(s._prefix, new_id)
        now = s._clock()
        version = s._next_version(session.version)
        ttl = session.ttl or s._idle_ttl
        record = Record(version, s._writer, now, now, ttl, session._encoded())
        writes = [s._record_write(new_key, record, set_)]
        op = Op("session.regenerate", new_key)
        await self._write(op, writes)
        if not session.new and writes[0].acks:  # the old id dies once the data is safe
            tomb, tomb_version = s._tombstone_write(old_key, session.version, session.ttl)
            writes.append(tomb)
            await self._write(op, [tomb])
            s._handoff.hint(tomb)
            if tomb.acks:
                s._acked(session.id, old_key, tomb, tomb_version, True)
        if writes[0].acks:
            s._acked(new_id, new_key, writes[0], version, False)
            await self._locks.unlock(session, op)
            session._id = new_id
            session._version = version
            session._created = now
            session.new = False
            session.modified = False
        return s._write_outcome(op, writes, version)


async def _finish_anyway(cleanup: Any) -> None:
    """Run ``cleanup`` (a coroutine) to its end in a task of its own, even when the
    caller is being cancelled: a lock is released, not left for its TTL."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
