"""The simulation of ``test_simulation.py`` through the asyncio driver: the same
schedules, faults and checker, with each process an :class:`AsyncMemcacheSessionStore`
whose I/O is pointed at the simulated nodes (one event loop per schedule)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import settings

from errpolicy_memcache import Session
from errpolicy_memcache._node import Claim, Reply, exchanged, settle
from errpolicy_memcache.aio import AsyncMemcacheSessionStore

from .helpers import SECRET
from .simnodes import ADDRESSES, Cluster
from .test_simulation import (
    _SETTINGS,
    DoubleFaultSimulation,
    LockSimulation,
    RollingSimulation,
    StoreSimulation,
    node_failed_below_the_threshold,
)
from .test_simulation_probes import DoubleFaultProbes, SingleFaultProbes

# CPU-bound searches (tens of seconds alone); the suite's 120 s limit is there to catch
# hangs, and a machine busy with other work must not trip it.
pytestmark = pytest.mark.timeout(900)

T = TypeVar("T")

# Fewer schedules than the sync driver's run by default (the decisions are the same
# functions; this checks the driver's steps): SIMULATION_EXAMPLES sets both.
_ASYNC_SETTINGS = settings(
    _SETTINGS, max_examples=int(os.environ.get("SIMULATION_EXAMPLES", "300"))
)


class _Driven:
    """An async store run to completion call by call, for the simulation's rules."""

    def __init__(self, store: AsyncMemcacheSessionStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.nodes = store.nodes
        # The rules probe (``_prober.probe_due()``) and hand over (``_hand_over()``):
        # the async store's own, on its loop.
        self._prober = self
        self._asks: Callable[[Any], list[Reply]] | None = None
        self._nodes_exchange = store._exchange

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def probe_due(self) -> bool:
        return self._run(self.store._recovery.probe_due())

    # The probes-in-flight rules (test_simulation_probes) claim probes and answer them
    # later through ``_prober``: here the async store's schedule and probe body, and
    # what its probe task's end does (the claim released, a handover if answered).
    def claim(self) -> list[Claim]:
        return self.store._recovery._probes.claim()

    def probe(self, claim: Claim) -> bool:
        recovery = self.store._recovery
        try:
            answered = self._run(recovery._answered(claim))
        finally:
            recovery._probes.ended(claim)
        if answered:
            self._hand_over()
        return answered

    @property
    def _execute(self) -> Callable[[Any], list[Reply]] | None:
        """What answers the probes instead of the simulated nodes (None: they do)."""
        return self._asks

    @_execute.setter
    def _execute(self, asks: Callable[[Any], list[Reply]] | None) -> None:
        if self._asks is None:
            self._nodes_exchange = self.store._exchange
        self._asks = asks
        if asks is None:
            self.store._exchange = self._nodes_exchange  # type: ignore[method-assign]
            return

        async def exchange(plan: Any, deadline: float = 0.0) -> list[Reply]:
            return asks(plan)

        self.store._exchange = exchange  # type: ignore[method-assign]

    def _hand_over(self) -> None:
        self._run(self.store._recovery.hand_over())

    def start(self, sid: str) -> Session:
        if self.store._handoff.waiting:  # before the read, as the sync store does
            self._hand_over()
        return self._run(self.store.start(sid))

    def save(self, session: Session) -> None:
        self._run(self.store.save(session))

    def destroy(self, session: Session) -> None:
        self._run(self.store.destroy(session))

    def release(self, session: Session) -> None:
        self._run(self.store.release(session))


def _attach(cluster: Cluster, store: AsyncMemcacheSessionStore) -> AsyncMemcacheSessionStore:
    """Point the async driver's I/O at the simulated nodes (its core was built on the
    simulated clocks)."""

    async def execute(plan: Any, deadline: float = 0.0) -> list[Reply]:
        answers = [cluster.nodes[node.address].answer(commands) for node, commands in plan]
        return settle(plan, answers, cluster.clock.now)

    async def exchange(plan: Any, deadline: float = 0.0) -> list[Reply]:  # the probes'
        answers = [cluster.nodes[node.address].answer(commands) for node, commands in plan]
        return exchanged(plan, answers, cluster.clock.now)

    async def agreed_gets(nodes: Any, command: Any, deadline: float = 0.0) -> Any:
        answers = [cluster.nodes[node.address].answer((command,)) for node in nodes]
        blobs = {None if a[1] is not None or a[0][0] is None else a[0][0][0] for a in answers}
        blob = blobs.pop() if len(blobs) == 1 else None
        return answers if blob is None else blob

    store._execute = execute  # type: ignore[method-assign]  # the simulated nodes
    store._exchange = exchange  # type: ignore[method-assign]  # likewise
    store._agreed_gets = agreed_gets  # type: ignore[method-assign]  # likewise

    async def sleep(seconds: float) -> None:
        cluster.clock.sleep(seconds)

    store._sleep = sleep
    # No task of its own: the rules probe and hand over, one schedule, one order.
    store._recovery._ensure = lambda *, asked: None  # type: ignore[method-assign]
    return store


class AsyncStoreSimulation(StoreSimulation):
    """:class:`StoreSimulation` with both processes on the asyncio driver."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()  # before the processes are made
        super().__init__()

    def process(self, failure_threshold: int = 1) -> Any:
        """An async store over the simulated nodes, driven call by call (the rules call
        start/save/destroy/release on it)."""
        store = AsyncMemcacheSessionStore(ADDRESSES, SECRET, **self.options(failure_threshold))
        return _Driven(_attach(self.cluster, store), self.loop)

    def teardown(self) -> None:
        self.loop.close()
        super().teardown()


TestAsyncSingleFaults = AsyncStoreSimulation.TestCase
TestAsyncSingleFaults.settings = _ASYNC_SETTINGS


class AsyncRollingSimulation(AsyncStoreSimulation, RollingSimulation):
    """The rolling faults (nothing read between them) through the asyncio driver."""


TestAsyncRollingFaults = AsyncRollingSimulation.TestCase
TestAsyncRollingFaults.settings = _ASYNC_SETTINGS


def test_a_node_that_failed_below_the_threshold_does_not_serve_its_older_copy() -> None:
    """The soak's stale read as a schedule (test_simulation.py), through the asyncio driver."""
    node_failed_below_the_threshold(AsyncRollingSimulation())


class AsyncDoubleFaultSimulation(AsyncStoreSimulation, DoubleFaultSimulation):
    """Two nodes of three faulty at once through the asyncio driver."""


TestAsyncDoubleFaults = AsyncDoubleFaultSimulation.TestCase
TestAsyncDoubleFaults.settings = _ASYNC_SETTINGS


class AsyncLockSimulation(AsyncStoreSimulation, LockSimulation):
    """The session lock (``_locks``' decisions) through the asyncio driver: no lock is
    left behind once each fault heals."""


TestAsyncLockFaults = AsyncLockSimulation.TestCase
TestAsyncLockFaults.settings = settings(
    _ASYNC_SETTINGS, max_examples=max(1, _ASYNC_SETTINGS.max_examples // 4)
)


class AsyncSingleFaultProbes(AsyncStoreSimulation, SingleFaultProbes):
    """The single faults with probes in flight, claimed and answered later in either
    order (test_simulation_probes), through the asyncio store's probes."""


class AsyncDoubleFaultProbes(AsyncStoreSimulation, DoubleFaultProbes):
    """The double faults (where a process vouches for copies) with probes in flight,
    through the asyncio store's probes."""


# As the sync driver's probes machines: a third of the schedules.
_FEWER = settings(_ASYNC_SETTINGS, max_examples=max(1, _ASYNC_SETTINGS.max_examples // 3))
TestAsyncSingleFaultProbes = AsyncSingleFaultProbes.TestCase
TestAsyncSingleFaultProbes.settings = _FEWER
TestAsyncDoubleFaultProbes = AsyncDoubleFaultProbes.TestCase
TestAsyncDoubleFaultProbes.settings = _FEWER
