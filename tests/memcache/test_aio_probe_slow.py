"""The asyncio store's recovery keeps the sync prober's slow-probe rule (docs/memcache/
index.md, circuit breaker): each probe in a task of its own, a second one beside a
slow one a backoff after it began, at most two of a node in flight, the first answer
closes the breaker, and ``aclose()``/``stop()`` cancel the probes in flight.

The slow node is test_hostile's ``FakeNode`` with test_probe_slow's ``SlowFirst`` (its
first connection unanswered until the test lets it go, every later one answered at
once: a real memcached cannot be made to do that); a hung node is a real memcached
stopped with SIGSTOP. The read timeout is long (10 s): time is asserted only as
"closed well before it", polled with a generous deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from errpolicy_memcache import BreakerState
from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import SECRET, hung
from .test_hostile import FakeNode
from .test_probe_slow import READ_TIMEOUT, WELL_BEFORE, SlowFirst, _opens


@pytest.fixture
def slow() -> Iterator[tuple[FakeNode, SlowFirst]]:
    behaviour = SlowFirst()
    node = FakeNode(behaviour)
    yield node, behaviour
    behaviour.release.set()
    node.close()


def _store(*addresses: str) -> AsyncMemcacheSessionStore:
    """An async store on ``addresses`` (one replica) whose breakers open at the first
    failure, with a long read timeout: only a second probe closes one sooner."""
    return AsyncMemcacheSessionStore(
        list(addresses), SECRET, 1, timeout=READ_TIMEOUT, failure_threshold=1
    )


def _store_tasks(name: str = "") -> list[asyncio.Task[Any]]:
    """The store's tasks on this loop (``name``: only the recovery's or the probes')."""
    prefix = f"errpolicy_memcache-{name}"
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix)]


async def _poll(done: Callable[[], bool], seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= ends:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_slow_probe_does_not_hold_a_returned_node_skipped(
    slow: tuple[FakeNode, SlowFirst],
) -> None:
    """The breaker opens; the first probe waits on the slow connection; the second,
    a backoff later on a new connection, is answered: closed well before the slow
    probe's read timeout, with that probe still waiting."""
    node, behaviour = slow
    store = _store(node.address)
    breaker = store.nodes[0].breaker
    try:
        breaker.failure()  # as a timed-out request records it: the loop's task probes
        closed = await _poll(lambda: breaker.state is BreakerState.CLOSED, WELL_BEFORE)
        seen = (closed, behaviour.connections >= 2, len(_store_tasks("probe")))
    finally:
        await store.aclose()
    assert (True, True, 1) == seen


async def test_the_slow_probes_late_failure_leaves_the_breaker_closed(
    slow: tuple[FakeNode, SlowFirst],
) -> None:
    """Once the second probe closed the breaker, the first fails (its connection
    closed): nothing is counted, the breaker never opens again, and the probe's task
    and the loop's task end."""
    node, behaviour = slow
    store = _store(node.address)
    breaker = store.nodes[0].breaker
    opened = _opens(breaker)
    try:
        breaker.failure()
        closed = await _poll(lambda: breaker.state is BreakerState.CLOSED, WELL_BEFORE)
        behaviour.release.set()
        ended = await _poll(lambda: not _store_tasks(), WELL_BEFORE)
        seen = (closed, ended, opened, breaker.state, breaker.failures)
    finally:
        await store.aclose()
    assert (True, True, [BreakerState.OPEN], BreakerState.CLOSED, 0) == seen


@pytest.mark.memcached
@pytest.mark.hangs  # its store sets its own timeouts (a 10 s read: the probes wait)
async def test_a_hung_nodes_probe_does_not_delay_another_nodes_recovery(
    pair: MemcachedCluster,
) -> None:
    """Both breakers open, one node hung (SIGSTOP): the other node's probe is answered
    and closes its breaker well before the hung node's probe times out, while that
    probe still waits."""
    stopped, running = pair.servers
    store = _store(stopped.address, running.address)
    waiting, back = (node.breaker for node in store.nodes)
    with hung(stopped):
        try:
            waiting.failure()
            back.failure()
            closed = await _poll(lambda: back.state is BreakerState.CLOSED, WELL_BEFORE)
            seen = (closed, waiting.state is BreakerState.CLOSED)
        finally:
            await store.aclose()  # before the node resumes: its probes are cancelled
    assert (True, False) == seen


async def _two_probes_waiting(store: AsyncMemcacheSessionStore) -> bool:
    """Open the breaker of ``store``'s first node (hung): True once two probes of it
    wait, each in its task."""
    store.nodes[0].breaker.failure()
    return await _poll(lambda: len(_store_tasks("probe")) == 2, WELL_BEFORE)


@pytest.mark.memcached
@pytest.mark.hangs  # its store sets its own timeouts (a 10 s read: the probes wait)
async def test_aclose_cancels_the_probes_in_flight(pair: MemcachedCluster) -> None:
    """A hung node has two probes waiting; aclose() cancels both and the loop's task,
    and waits for them: no task of the store is left, none is in flight, and the
    cancelled probes recorded nothing (the breaker is still not closed)."""
    server = pair.servers[0]
    store = _store(server.address)
    with hung(server):
        try:
            both = await _two_probes_waiting(store)
            probes = _store_tasks("probe")
        finally:
            await store.aclose()
        seen = (
            both,
            [task.cancelled() for task in probes],
            _store_tasks(),
            store._recovery._probes.in_flight,
            store.nodes[0].breaker.state is BreakerState.CLOSED,
        )
    assert (True, [True, True], [], {}, False) == seen


@pytest.mark.memcached
@pytest.mark.hangs  # its store sets its own timeouts (a 10 s read: the probes wait)
async def test_stop_cancels_the_probes_in_flight_from_outside_the_loop(
    pair: MemcachedCluster,
) -> None:
    """stop() from another thread (a dropped store) cancels the hung node's two probes
    and the loop's task."""
    server = pair.servers[0]
    store = _store(server.address)
    with hung(server):
        try:
            both = await _two_probes_waiting(store)
            tasks = _store_tasks()
            await asyncio.get_running_loop().run_in_executor(None, store._recovery.stop)
            ended = await _poll(lambda: all(task.done() for task in tasks), WELL_BEFORE)
            seen = (both, len(tasks), ended, [task.cancelled() for task in tasks])
        finally:
            await store.aclose()
    assert (True, 3, True, [True] * 3) == seen


@pytest.mark.memcached
async def test_a_killed_nodes_refused_probes_keep_its_breaker_open(
    pair: MemcachedCluster,
) -> None:
    """Each probe of a killed node is refused and counted as a failure of the breaker
    (the probe's task records its own answer): three probes later it is still open."""
    server = pair.servers[0]
    store = _store(server.address)
    breaker = store.nodes[0].breaker
    server.kill()
    try:
        breaker.failure()
        counted = await _poll(lambda: breaker.failures >= 4, WELL_BEFORE)
        seen = (counted, breaker.state is BreakerState.CLOSED, breaker.refused)
    finally:
        await store.aclose()
    assert (True, False, True) == seen
