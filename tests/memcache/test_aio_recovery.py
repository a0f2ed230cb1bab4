"""The async store's recovery on its event loop, against real memcached: open breakers
probed and handed over to by one task per loop, over asyncio connections; no thread,
no blocking socket, and nothing left running after ``aclose()``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import pytest

from errpolicy_memcache import BreakerState, Session
from errpolicy_memcache._envelope import Keyring, decode, normalize_keys
from errpolicy_memcache._handover import decide
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._node import Node
from errpolicy_memcache._wire import delete
from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, SECRET, Ranked

MakeAsync = Callable[..., AsyncMemcacheSessionStore]
Raw = Callable[[MemcachedServer], Any]


@pytest.fixture
async def make_async(store_timeouts: dict[str, float]) -> AsyncIterator[MakeAsync]:
    """Async stores whose breakers open at the first failure and probe within 0.1 s
    (their nodes have no blocking transport: ``test_core_clocks`` checks no part of the
    store holds one); ``store_timeouts`` from tests/conftest.py."""
    made: list[AsyncMemcacheSessionStore] = []

    def make(nodes: MemcachedCluster, **options: Any) -> AsyncMemcacheSessionStore:
        settings: dict[str, Any] = {
            "failure_threshold": 1,
            "retry_after": 0.05,
            "max_retry_after": 0.1,
            **store_timeouts,
            **options,
        }
        store = AsyncMemcacheSessionStore(nodes.addresses, SECRET, **settings)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


def _recovery_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "errpolicy_memcache-recovery"]


def _store_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("errpolicy_memcache")]


async def _until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate`` holds (the suite's timeout bounds it)."""
    while not predicate():
        await asyncio.sleep(0.01)


def _breaker_of(store: AsyncMemcacheSessionStore, server: MemcachedServer) -> Any:
    return next(n for n in store.nodes if n.address == server.address).breaker


def _held(raw: Raw, server: MemcachedServer, sid: str) -> Any:
    """The record ``server`` holds for ``sid`` (None if nothing)."""
    key = storage_key(PREFIX, sid)
    client = raw(server)
    try:
        blob = client.get(key)
    finally:
        client.close()
    return None if blob is None else decode(blob, key, Keyring(normalize_keys(SECRET)))


async def _saved(store: AsyncMemcacheSessionStore, **data: object) -> Session:
    session = await store.start(None)
    session.update(data)
    await store.save(session)
    return session


@pytest.mark.memcached
async def test_a_killed_node_that_returns_gets_its_hinted_copy_from_the_loops_probe(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, raw: Raw
) -> None:
    """A home node killed during a save is probed by the loop's task once it is back:
    its breaker closes and the copy it missed is handed over, with no request, no thread."""
    store = make_async(cluster)
    session = await _saved(store, n=1)
    home = ranked(cluster, session.id)[0]
    home.kill()
    await store.start(session.id)  # refused: the breaker opens, the loop's task probes
    session["n"] = 2
    await store.save(session)  # skips the home node: an add of the copy is hinted there
    breaker = _breaker_of(store, home)
    # Open, or half-open while a probe is in flight.
    running = (breaker.state is BreakerState.CLOSED, len(_recovery_tasks()), _store_threads())
    home.restart()  # empty
    await _until(lambda: breaker.state is BreakerState.CLOSED)
    await _until(lambda: _held(raw, home, session.id) is not None)
    copy = _held(raw, home, session.id)
    assert (False, 1, []) == running
    assert (session.version, []) == (copy.version, _store_threads())


@pytest.mark.hangs
@pytest.mark.memcached
async def test_a_logout_a_returning_node_missed_is_handed_over_without_a_request(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, raw: Raw
) -> None:
    """The tombstone a paused node missed reaches it after the loop's probe finds it back."""
    store = make_async(cluster)
    session = await _saved(store, n=1)
    sid = session.id
    paused = ranked(cluster, sid)[0]
    paused.pause()
    try:
        await store.start(sid)  # times out: the breaker opens
        await store.destroy(session)  # the node is skipped: its tombstone is hinted
        before = _held(raw, ranked(cluster, sid)[1], sid)
    finally:
        paused.resume()
    await _until(lambda: _held(raw, paused, sid).tombstone)
    assert (True, False) == (before.tombstone, store._handoff.waiting)


@pytest.mark.memcached
async def test_the_recovery_task_ends_once_every_node_is_back(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked
) -> None:
    """The loop's task runs while a breaker is open and ends when the probe closed it."""
    store = make_async(cluster)
    session = await _saved(store)
    home = ranked(cluster, session.id)[0]
    home.kill()
    await store.start(session.id)
    task = _recovery_tasks()
    home.restart()
    await _until(lambda: all(t.done() for t in task))
    assert (1, [], None) == (len(task), _recovery_tasks(), task[0].exception())


@pytest.mark.memcached
async def test_aclose_leaves_no_task_and_no_thread(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked
) -> None:
    """aclose() cancels and awaits the loop's task while it probes a dead node; no
    thread was started for it."""
    threads = _store_threads()
    store = make_async(cluster)
    session = await _saved(store)
    ranked(cluster, session.id)[0].kill()
    await store.start(session.id)
    probing = _recovery_tasks()
    await store.aclose()
    assert (1, True, [], threads) == (
        len(probing),
        probing[0].cancelled(),
        _recovery_tasks(),
        _store_threads(),
    )


@pytest.mark.memcached
async def test_the_store_recovers_again_after_aclose(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked
) -> None:
    """A store used after aclose() starts a new task when a breaker opens again."""
    store = make_async(cluster)
    session = await _saved(store)
    home = ranked(cluster, session.id)[0]
    home.kill()
    await store.start(session.id)
    await store.aclose()
    breaker = _breaker_of(store, home)
    breaker.reset()
    await store.start(session.id)  # refused again: a new task
    home.restart()
    await _until(lambda: breaker.state is BreakerState.CLOSED)
    assert BreakerState.CLOSED == breaker.state


def _node(address: str) -> Node:
    return cast("Node", address)  # decide() only passes nodes through


def test_decide_hands_over_to_ready_nodes_and_drops_what_expired() -> None:
    """Live hints and locks go to the nodes that are back; expired ones are forgotten."""
    by_address = {a: _node(a) for a in ("a:1", "b:1")}
    hints: Sequence[Any] = [
        (("a:1", "k1"), (delete("k1"), 10.0)),
        (("b:1", "k1"), (delete("k1"), 10.0)),  # b is not back
        (("a:1", "k2"), (delete("k2"), 4.0)),  # expired
    ]
    abandoned: Sequence[Any] = [(("a:1", "L"), (b"t", 10.0)), (("b:1", "M"), (b"u", 1.0))]
    due = decide({"a:1"}, abandoned, hints, by_address, now=5.0)
    assert (
        ((_node("a:1"), "L", b"t"),),
        ((_node("a:1"), (delete("k1"),)),),
        ((("a:1", "k2"), delete("k2")),),
        (("b:1", "M"),),
    ) == (due.clears, due.writes, due.expired, due.stale)


@pytest.mark.memcached
async def test_stop_cancels_the_task_from_outside_a_coroutine(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked
) -> None:
    """stop() (Django's settings change drops the store) cancels the loop's task."""
    store = make_async(cluster)
    session = await _saved(store)
    ranked(cluster, session.id)[0].kill()
    await store.start(session.id)
    probing = _recovery_tasks()
    await asyncio.get_running_loop().run_in_executor(None, store._recovery.stop)
    await _until(lambda: all(t.done() for t in probing))
    assert (1, True) == (len(probing), probing[0].cancelled())


@pytest.mark.memcached
async def test_an_ended_task_leaves_no_reference_to_its_loop(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked
) -> None:
    """Once every node is back, the store keeps nothing of the loop (a process-wide
    store, as Django's, outlives many loops)."""
    store = make_async(cluster)
    session = await _saved(store)
    home = ranked(cluster, session.id)[0]
    home.kill()
    await store.start(session.id)
    running = len(store._recovery._workers)
    home.restart()
    await _until(lambda: not _recovery_tasks())
    assert (1, 0) == (running, len(store._recovery._workers))
