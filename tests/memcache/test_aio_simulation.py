"""The simulation of ``test_simulation.py`` through the asyncio driver: the same
schedules, faults and checker, with each process an :class:`AsyncMemcacheSessionStore`
whose I/O is pointed at the simulated nodes (one event loop per schedule)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import settings

from errpolicy_memcache import Session
from errpolicy_memcache._node import Reply, settle
from errpolicy_memcache.aio import AsyncMemcacheSessionStore

from .helpers import SECRET
from .test_simulation import _SETTINGS, ADDRESSES, Cluster, StoreSimulation

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
        self._prober = store._s._prober

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def start(self, sid: str) -> Session:
        return self._run(self.store.start(sid))

    def save(self, session: Session) -> None:
        self._run(self.store.save(session))

    def destroy(self, session: Session) -> None:
        self._run(self.store.destroy(session))


def _attach(cluster: Cluster, store: AsyncMemcacheSessionStore) -> AsyncMemcacheSessionStore:
    """Point the async driver's I/O, and its shared state's, at the simulated nodes."""
    cluster.attach(store._s)  # clock, breakers, prober, and the handoff's I/O

    async def execute(plan: Any, deadline: float = 0.0) -> list[Reply]:
        answers = [cluster.nodes[node.address].answer(commands) for node, commands in plan]
        return settle(plan, answers, cluster.clock.now)

    store._execute = execute  # type: ignore[method-assign]  # the simulated nodes
    return store


class AsyncStoreSimulation(StoreSimulation):
    """:class:`StoreSimulation` with both processes on the asyncio driver."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.stores = [  # type: ignore[list-item]  # the rules call start/save/destroy
            _Driven(
                _attach(
                    self.cluster,
                    AsyncMemcacheSessionStore(
                        ADDRESSES,
                        SECRET,
                        replicas=2,
                        failure_threshold=1,
                        retry_after=1.0,
                        max_retry_after=2.0,
                        clock=self.cluster.clock,
                    ),
                ),
                self.loop,
            )
            for _ in range(2)
        ]

    def teardown(self) -> None:
        self.loop.close()
        super().teardown()


TestAsyncSingleFaults = AsyncStoreSimulation.TestCase
TestAsyncSingleFaults.settings = _ASYNC_SETTINGS


class AsyncRollingSimulation(AsyncStoreSimulation):
    """The rolling faults (nothing read between them) through the asyncio driver."""

    read_between = False


TestAsyncRollingFaults = AsyncRollingSimulation.TestCase
TestAsyncRollingFaults.settings = _ASYNC_SETTINGS
