"""The consistency rules of ``test_consistency.py`` through the asyncio driver, against
real memcached: strays written over, failover copies handed home, no new session while
a hung node may hold the only copy, and a copy seen acknowledged kept suspect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import errpolicy
import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import BreakerState, Outcome, Session
from errpolicy_memcache._envelope import decode, normalize_keys
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, SECRET, Ranked, hung

pytestmark = pytest.mark.memcached

Raw = Callable[[MemcachedServer], Client]
MakeAsync = Callable[..., AsyncMemcacheSessionStore]


@pytest.fixture
async def make_async(
    outcomes: list[Outcome], store_timeouts: dict[str, float]
) -> AsyncIterator[MakeAsync]:
    """Async stores with the sync tests' options (``make_store``, ``store_timeouts``);
    closed after the test."""
    made: list[AsyncMemcacheSessionStore] = []

    def make(nodes: MemcachedCluster, **options: Any) -> AsyncMemcacheSessionStore:
        settings: dict[str, Any] = {
            "failure_threshold": 2,
            "on_outcome": outcomes.append,
            **store_timeouts,
            **options,
        }
        store = AsyncMemcacheSessionStore(nodes.addresses, SECRET, **settings)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


async def _saved(store: AsyncMemcacheSessionStore, **data: object) -> Session:
    session = await store.start(None)
    session.update(data)
    await store.save(session)
    return session


def _open(store: AsyncMemcacheSessionStore, server: MemcachedServer) -> None:
    """Open ``store``'s breaker for ``server``, as after failed requests (it is skipped)."""
    breaker = next(n for n in store.nodes if n.address == server.address).breaker
    for _ in range(breaker.threshold):
        breaker.failure()


async def _until(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Yield to the loop until ``predicate`` holds or ``seconds`` pass; its last value."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.hangs
async def test_a_save_writes_over_the_stray_copies_its_read_found(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """A process that saved below home does not serve that copy over hung home nodes
    after another process saved a newer one at home (its save wrote over the stray)."""
    store = make_async(cluster)
    session = await store.start(None)
    first, second, third = ranked(cluster, session.id)
    _open(store, second)
    session["n"] = 1
    await store.save(session)  # lands on the first and third node
    other = make_async(cluster)
    theirs = await other.start(session.id)  # finds the copy on the third node
    theirs["n"] = 2
    await other.save(theirs)
    key = storage_key(PREFIX, session.id)
    assert raw(first).get(key) == raw(third).get(key)  # n=2 below home too
    first.kill()
    with hung(second), pytest.raises(errpolicy.PolicyViolation):
        await store.start(session.id)  # n=2 on the third node: possibly older than home's
    assert {"n": 2} == dict(await make_async(cluster).start(session.id))


@pytest.mark.hangs
async def test_a_copy_this_process_saved_is_not_vouched_for_on_another_node(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """This process's own version, found only on a node that never acknowledged it
    while the home nodes cannot answer, is possibly stale."""
    store = make_async(cluster)
    session = await _saved(store, n=1)
    first, second, third = ranked(cluster, session.id)
    key = storage_key(PREFIX, session.id)
    raw(third).set(key, raw(first).get(key), expire=60, noreply=False)  # a repair's copy
    other = make_async(cluster)
    theirs = await other.start(session.id)
    theirs["n"] = 2
    await other.save(theirs)
    first.kill()
    with hung(second), pytest.raises(errpolicy.PolicyViolation):
        await store.start(session.id)


@pytest.mark.hangs
async def test_a_copy_saved_below_home_is_handed_to_the_home_node_once_it_answers(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """A save that skipped a home node hands its copy there once it is back, so the
    session survives its other holders failing (one flushed, one hung)."""
    store = make_async(cluster)
    session = await store.start(None)
    first, second, third = ranked(cluster, session.id)
    _open(store, first)
    session["n"] = 1
    await store.save(session)  # lands on the second and third node
    handoff = store._handoff
    for node in store.nodes:
        node.breaker.reset()  # the first node is back
    await store.start(None)  # a request: what waits for a node that answers is handed over
    assert await _until(lambda: not handoff.waiting)  # in the handoff's own thread
    raw(second).flush_all(noreply=False)
    with hung(third):
        assert {"n": 1} == dict(await make_async(cluster).start(session.id))


@pytest.mark.hangs
async def test_a_copy_whose_holder_lost_its_memory_is_not_vouched_for(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """A holder of this process's own copy answers a miss (flushed) while a home node
    hangs: a newer save may have been lost with it, the copy is possibly stale."""
    store = make_async(cluster)
    session = await store.start(None)
    first, second, _third = ranked(cluster, session.id)
    _open(store, first)
    session["n"] = 1
    await store.save(session)  # lands on the second and third node
    for node in store.nodes:
        node.breaker.reset()
    await store.start(session.id)  # repairs the first node
    other = make_async(cluster)
    theirs = await other.start(session.id)
    theirs["n"] = 2
    await other.save(theirs)  # the first and second node
    raw(second).flush_all(noreply=False)
    with hung(first), pytest.raises(errpolicy.PolicyViolation):
        await store.start(session.id)  # n=1 on the third node, n=2 on the hung first


@pytest.mark.hangs
async def test_no_new_session_while_a_hung_node_below_home_may_hold_the_only_copy(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """A failover save left the copy below home; both home nodes lost theirs (one
    restarted, one flushed) while that node hangs: partial_miss, not a new session."""
    store = make_async(cluster)
    session = await store.start(None)
    first, second, third = ranked(cluster, session.id)
    second.kill()
    session["n"] = 1
    await store.save(session)  # the first and third node
    await store.aclose()  # the process is gone, and with it what it would hand over
    second.restart()
    raw(first).flush_all(noreply=False)
    with hung(third), pytest.raises(errpolicy.PolicyViolation):
        await make_async(cluster).start(session.id)
    assert {"n": 1} == dict(await make_async(cluster).start(session.id))


@pytest.mark.hangs
async def test_a_copy_on_a_node_back_since_it_was_seen_is_possibly_stale_while_others_fail(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """A home node hung while another process saved past it; back, it holds the older
    copy while that save's two nodes fail: possibly stale, not served."""
    store = make_async(cluster, retry_after=0.05, max_retry_after=0.1)
    session = await _saved(store, n=1)  # the first and second node
    first, second, third = ranked(cluster, session.id)
    with hung(second):
        for _ in range(2):
            await store.start(session.id)  # the second's breaker opens
        other = make_async(cluster)
        _open(other, second)
        theirs = await other.start(session.id)
        theirs["n"] = 2
        await other.save(theirs)  # the first and third node; the second keeps n=1
    back = next(n for n in store.nodes if n.address == second.address).breaker
    assert await _until(lambda: back.state is BreakerState.CLOSED)  # the prober found it
    await asyncio.sleep(0.2)  # past the prober's grace: only what this process saw tells
    third.pause()
    first.kill()
    try:
        with pytest.raises(errpolicy.PolicyViolation):
            await store.start(session.id)  # n=1 on the second node, n=2 on the hung third
    finally:
        third.resume()


@pytest.mark.hangs
async def test_a_node_back_from_a_hang_is_suspect_for_a_session_this_process_never_saw(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """A node the reader saw come back holds the older copy while the newer save's two
    nodes fail: possibly stale, though the reader never read the session."""
    store = make_async(cluster)
    session = await _saved(store, n=1)  # the first and second node
    first, second, third = ranked(cluster, session.id)
    reader = make_async(cluster, retry_after=0.05, max_retry_after=0.1)
    with hung(second):
        _open(reader, second)
        _open(store, second)
        theirs = await store.start(session.id)
        theirs["n"] = 2
        await store.save(theirs)  # the first and third node; the second keeps n=1
    back = next(n for n in reader.nodes if n.address == second.address).breaker
    assert await _until(lambda: back.state is BreakerState.CLOSED)  # the prober found it
    await asyncio.sleep(0.2)  # past the prober's grace
    third.pause()
    first.kill()
    try:
        with pytest.raises(errpolicy.PolicyViolation):
            await reader.start(session.id)  # n=1 on the second node, n=2 on the hung third
    finally:
        third.resume()


def _held(raw: Raw, server: MemcachedServer, sid: str) -> object:
    """The session data ``server`` holds for ``sid`` (verified with the tests' secret)."""
    key = storage_key(PREFIX, sid)
    blob = raw(server).get(key)
    assert blob is not None
    return decode(blob, key, normalize_keys(SECRET)).data


async def test_a_home_node_that_a_save_skipped_gets_the_newer_copy_over_its_older_one(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """Issue 10: a home node skipped by a save keeps its older copy no more once it is
    back: the handed-over copy replaces it (an ``add`` alone would not)."""
    store = make_async(cluster)
    session = await _saved(store, n=1)  # on the first and second node
    _, second, _ = ranked(cluster, session.id)
    _open(store, second)
    session["n"] = 2
    await store.save(session)  # lands on the first and third node
    handoff = store._handoff
    for node in store.nodes:
        node.breaker.reset()  # the second node is back
    await store.start(None)  # a request: what waits for a node that answers is handed over
    assert await _until(lambda: not handoff.waiting)  # in the loop's recovery task
    assert {"n": 2} == _held(raw, second, session.id)


async def test_a_handed_over_copy_leaves_a_newer_one_in_place(
    make_async: MakeAsync, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """A skipped home node that another process has since given a newer copy keeps it:
    the handover never writes an older copy over a newer one."""
    store = make_async(cluster)
    session = await _saved(store, n=1)
    _, second, _ = ranked(cluster, session.id)
    _open(store, second)
    session["n"] = 2
    await store.save(session)  # lands on the first and third node; the second waits for it
    handoff = store._handoff
    for node in store.nodes:
        node.breaker.reset()
    with handoff._lock:  # as a handover in progress: nothing is handed over yet
        other = make_async(cluster)
        theirs = await other.start(session.id)
        theirs["n"] = 3
        await other.save(theirs)  # on the first and second node
    await store.start(None)
    assert await _until(lambda: not handoff.waiting)
    assert {"n": 3} == _held(raw, second, session.id)
