"""AsyncMemcacheSessionStore: the session store's second driver, over asyncio connections.

The decisions and the state are the store's sans-IO core's (:class:`~._machine_read.
StoreCore`, the same class the sync store holds): which nodes to ask, what their
replies mean, what to repair, where writes go, the locks, and everything a process
keeps between operations (what it knows of each id, the breakers, the version clock,
the handoff). This driver holds one core and carries its commands out with
``_aio_transport`` (``_drive``: ``await`` for a round, ``asyncio.sleep`` for a lock's
poll): same options, outcomes, log records, guards and contract.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ._aio_recovery import AsyncRecovery
from ._aio_transport import AsyncPool, agreed_gets, exchange
from ._errors import ConfigurationError, SessionUnavailable
from ._ids import is_valid_session_id, new_session_id
from ._machine_write import check_id
from ._metrics import StoreStats
from ._node import Node, Reply, exchanged, settle
from ._options import _positive
from ._outcome import Outcome, OutcomeKind
from ._session import Session, _Lock
from ._steps import HOME_STORE, ROUND, WAIT, Steps
from ._store import _GUARDS, build_core
from ._transport import Answer
from ._wire import MAX_VALUE, Command

__all__ = ["AsyncMemcacheSessionStore"]

T = TypeVar("T")
_STORED = "STORED"

Plan = Sequence[tuple[Node, Sequence[Command]]]


class AsyncMemcacheSessionStore:
    """Sessions replicated on ``replicas`` memcached nodes, for asyncio applications.

    Takes the options of :class:`MemcacheSessionStore` (but ``transport``: it talks to
    memcached over its own asyncio connections), and ``max_connections``: the connections one event
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
            raise ConfigurationError(
                "transport: the async store talks over its own asyncio connections"
            )
        _positive("max_connections", max_connections, integer=True)
        # Probing and handoff on the loop: the breakers wake it, not a prober thread.
        self._core = core = build_core(servers, secret_key, replicas, on_open=self._wake, **options)
        self._handoff = core.handoff
        self._locking = core.locking
        self._nodes = core.nodes
        self._max_connections = max_connections
        self._operation_timeout = core.operation_timeout
        self._connect_timeout = core.connect_timeout
        self._timeout = core.timeout
        self._max_value: int = max(core.max_size, MAX_VALUE)
        self._ticks = core.clocks.ticks  # the core's: the rounds' times and its own agree
        # Each round's transport clock is perf_counter (the pools' deadlines); a
        # simulation that replaces _execute, _exchange and _agreed_gets gives the core other clocks
        # and replaces this sleep with one of simulated time.
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # The probes' round records nothing: the recovery records each answer itself.
        self._recovery = AsyncRecovery(
            core, lambda plan, deadline: self._exchange(plan, deadline), self._drive
        )
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Node, AsyncPool]] = (
            weakref.WeakKeyDictionary()
        )
        self._last_pools: (
            tuple[weakref.ref[asyncio.AbstractEventLoop], dict[Node, AsyncPool]] | None
        ) = None

    def _wake(self) -> None:
        self._recovery.wake()

    def __repr__(self) -> str:
        return f"<AsyncMemcacheSessionStore {self._core!r}>"

    # -- public API ------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in the order given; ``node.breaker.state`` tells their health."""
        return self._nodes

    def new_session(self) -> Session:
        """A fresh, empty session with a new id; no I/O."""
        return self._core.new_session()

    def stats(self) -> StoreStats:
        """What the store counted since it was built, as the sync store's
        :meth:`~MemcacheSessionStore.stats` (every loop's operations together); no I/O."""
        return self._core.stats()

    async def start(self, sid: str | None) -> Session:
        """Load the session ``sid``, or give a new one if it is None, malformed or unknown.

        Guarded by ``"session.start"``, as :meth:`MemcacheSessionStore.start`. If the
        awaiting task is cancelled, a lock taken for it is released.
        """
        if self._handoff.waiting:
            self._recovery.hand_over_soon()
        held: list[_Lock] | None = [] if self._locking else None
        try:
            # The guard's __aenter__/__aexit__ only call __enter__/__exit__: the plain
            # form spares two coroutines on every read, with the same meaning.
            with _GUARDS["session.start"]:
                session, outcome = await self._start(sid, held)
        except BaseException:
            # The caller never gets this session: do not leave its lock held.
            if held:
                await _finish_anyway(self._drive(self._core.unlock_key(held[0])))
            raise
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        return session

    async def exists(self, sid: str) -> bool:
        """True if ``sid`` names a stored, live session (guarded by ``"session.exists"``)."""
        if not is_valid_session_id(sid):
            return False
        async with _GUARDS["session.exists"]:
            found, outcome = await self._drive(self._core.exists(sid))
        _raise_unavailable(outcome)
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
            found, outcome = await self._drive(self._core.exists(sid))
        _raise_unavailable(outcome)
        return None if found is None else self._core.expires_in(found.record)

    async def save(
        self, session: Session, *, must_create: bool = False, ttl: int | None = None
    ) -> None:
        """Write the session to its replicas (guarded by ``"session.save"``); see
        :meth:`MemcacheSessionStore.save`. A save cancelled halfway changes ``session``
        in nothing: it stays modified, at its old version."""
        core = self._core
        core.check_save(session, ttl)
        async with _GUARDS["session.save"], self._unlocked_if_cancelled(session):
            outcome = await self._drive(core.save(session, must_create, ttl))
        _raise_unavailable(outcome)

    async def regenerate(self, session: Session) -> None:
        """Give the session a new id; the old id is tombstoned (``"session.regenerate"``)."""
        check_id(session)
        async with _GUARDS["session.regenerate"], self._unlocked_if_cancelled(session):
            outcome = await self._drive(self._core.regenerate(session))
        _raise_unavailable(outcome)

    async def destroy(self, session: Session) -> None:
        """Log out: tombstone the stored session, then reset ``session`` to a new empty one
        (guarded by ``"session.destroy"``)."""
        check_id(session)
        outcome: Outcome | None = None
        async with _GUARDS["session.destroy"], self._unlocked_if_cancelled(session):
            if not session.new:
                steps = self._core.tombstone(session.id, session.version, session.ttl, session)
                outcome = await self._drive(steps)
        _raise_unavailable(outcome)
        session._reset(new_session_id(), self._core.now())

    async def delete(self, sid: str) -> None:
        """Tombstone the session ``sid`` (guarded by ``"session.destroy"``)."""
        if not is_valid_session_id(sid):
            return
        async with _GUARDS["session.destroy"]:
            outcome = await self._drive(self._core.tombstone(sid, 0, None, None))
        _raise_unavailable(outcome)

    async def release(self, session: Session) -> None:
        """Release the session's lock without saving (a request that changed nothing)."""
        if session._lock is not None:
            await self._drive(self._core.unlock(session))

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
                await _finish_anyway(self._drive(self._core.unlock(session)))
            raise

    # -- the driver --------------------------------------------------------------------

    async def _start(
        self, sid: str | None, held: list[_Lock] | None
    ) -> tuple[Session, Outcome | None]:
        """The usual read in one round (the core's ``home_known``/``home_session``),
        else the core's start steps, going on from that round's replies."""
        core = self._core
        known = core.home_known(sid)
        if known is None:
            return await self._drive(core.start(sid, held))
        assert sid is not None
        ticks = self._ticks  # a call of an attribute: LOAD_METHOD would not specialize
        began = ticks()
        found = await self._agreed_gets(known.home, known.command, began + self._operation_timeout)
        if type(found) is bytes:
            session = core.home_session(sid, known, began, found)
            if session is not None:
                return session, None
            return await self._drive(core.start(sid, held, began=began))
        assert isinstance(found, list)
        replies = settle([(node, (known.command,)) for node in known.home], found, began)
        return await self._drive(core.start(sid, held, began=began, home=replies))

    async def _drive(self, steps: Steps[T]) -> T:
        """Carry out the core's commands (``_steps``) until the operation returns: each
        round awaited (a cancelled round's connections are closed, not pooled), each
        wait an ``asyncio.sleep``."""
        try:
            command = next(steps)
            while True:
                tag = command[0]
                if tag is ROUND:
                    command = steps.send(await self._execute(command[1], command[2]))
                elif tag is HOME_STORE:  # the usual save: the home nodes in one round
                    known, write = command[1], command[2]
                    deadline = self._ticks() + self._operation_timeout
                    replies = await self._execute(
                        [(node, (write,)) for node in known.home], deadline
                    )
                    stored = all(r.failure is None and r.values[0] == _STORED for r in replies)
                    command = steps.send(True if stored else replies)
                else:
                    assert tag is WAIT
                    await self._sleep(command[1])
                    command = steps.send(None)
        except StopIteration as done:
            result: T = done.value
            return result

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
                self._nodes.index(node),
            )
        return pool

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

    async def _execute(self, plan: Plan, deadline: float = math.inf) -> list[Reply]:
        """Run each node's commands; one :class:`Reply` per node, recorded on its breaker
        (as the sync store's ``Transports.execute``). Never raises for a node."""
        start = time.perf_counter()  # the pools' clock: their answers end on it
        pools = self._loop_pools()
        answers = await exchange(
            [(pools.get(node) or self._pool_of(node, pools), cmds) for node, cmds in plan],
            deadline,
        )
        return settle(plan, answers, start)

    async def _exchange(self, plan: Plan, deadline: float = math.inf) -> list[Reply]:
        """As :meth:`_execute`, without recording the replies on the breakers (the
        probes: the recovery records each answer itself, as the sync prober does)."""
        # Not one helper with _execute: that would cost every save's round a coroutine.
        start = time.perf_counter()
        pools = self._loop_pools()
        answers = await exchange(
            [(pools.get(node) or self._pool_of(node, pools), cmds) for node, cmds in plan],
            deadline,
        )
        return exchanged(plan, answers, start)


def _raise_unavailable(outcome: Outcome | None) -> None:
    if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
        raise SessionUnavailable(outcome)


async def _finish_anyway(cleanup: Any) -> None:
    """Run ``cleanup`` (a coroutine) to its end in a task of its own, even when the
    caller is being cancelled: a lock is released, not left for its TTL."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
