"""AsyncMemcacheSessionStore against real memcached: the sync store's contract, faults
(kill, SIGSTOP, restart), a thousand tasks on one loop, and cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import errpolicy
import pytest

from errpolicy_memcache import (
    BreakerState,
    ConfigurationError,
    MemcacheSessionStore,
    NodeStatus,
    Outcome,
    OutcomeKind,
    Session,
    SessionUnavailable,
)
from errpolicy_memcache._envelope import Keyring, decode, normalize_keys
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import PREFIX, SECRET, Counters, Ranked, statuses

pytestmark = pytest.mark.memcached

MakeAsync = Callable[..., AsyncMemcacheSessionStore]


@pytest.fixture
async def make_async(
    outcomes: list[Outcome], store_timeouts: dict[str, float]
) -> AsyncIterator[MakeAsync]:
    """Build async stores on a cluster (``store_timeouts`` in tests/conftest.py,
    outcomes collected); all closed after the test."""
    made: list[AsyncMemcacheSessionStore] = []

    def make(nodes: MemcachedCluster, **options: Any) -> AsyncMemcacheSessionStore:
        settings: dict[str, Any] = {
            "failure_threshold": 2,
            "on_outcome": outcomes.append,
            **store_timeouts,
            "retry_after": 60.0,
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


async def _until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate`` holds (the suite's timeout bounds it)."""
    while not predicate():
        await asyncio.sleep(0.005)


def _held(store: AsyncMemcacheSessionStore, index: int) -> bool:
    """True while a task holds a connection to node ``index``."""
    pool = store._pool_of(store.nodes[index])
    return pool._slots._value < store._max_connections


async def test_a_saved_session_comes_back(cluster: MemcachedCluster, make_async: MakeAsync) -> None:
    """A saved session is loaded with its data, id and version."""
    store = make_async(cluster)
    session = await _saved(store, user_id=42)
    loaded = await store.start(session.id)
    assert ({"user_id": 42}, session.id, session.version, False) == (
        dict(loaded),
        loaded.id,
        loaded.version,
        loaded.new,
    )


async def test_both_drivers_read_each_others_sessions(
    cluster: MemcachedCluster, make_async: MakeAsync, make_store: Callable[..., Any]
) -> None:
    """The sync and the async store share one record format and placement."""
    sync_store: MemcacheSessionStore = make_store(cluster)
    async_store = make_async(cluster)
    from_async = await _saved(async_store, a=1)
    from_sync = sync_store.start(None)
    from_sync["b"] = 2
    sync_store.save(from_sync)
    assert ({"a": 1}, {"b": 2}) == (
        dict(sync_store.start(from_async.id)),
        dict(await async_store.start(from_sync.id)),
    )


async def test_a_settled_read_asks_each_home_node_once(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, counters: Counters
) -> None:
    """The usual read is one gets per home node (one round), and none to the others."""
    store = make_async(cluster)
    session = await _saved(store, a=1)
    order = ranked(cluster, session.id)
    before = [counters(server)["cmd_get"] for server in order]
    await store.start(session.id)
    after = [counters(server)["cmd_get"] for server in order]
    assert [1, 1, 0] == [a - b for a, b in zip(after, before, strict=True)]


async def test_a_killed_home_node_costs_the_same_outcome_in_both_drivers(
    cluster: MemcachedCluster,
    make_async: MakeAsync,
    make_store: Callable[..., Any],
    ranked: Ranked,
    outcomes: list[Outcome],
    raw: Callable[..., Any],
) -> None:
    """With a home node dead, both drivers serve the session with the same outcome."""
    async_store = make_async(cluster)
    session = await _saved(async_store, a=1)
    sync_store: MemcacheSessionStore = make_store(cluster)
    dead = ranked(cluster, session.id)[0]
    dead.kill()
    outcomes.clear()
    sync_store.start(session.id)
    from_sync = outcomes[-1]
    client = raw(ranked(cluster, session.id)[2])  # undo the sync read's repair
    client.delete(storage_key(PREFIX, session.id), noreply=False)  # done before the read
    client.close()
    loaded = await async_store.start(session.id)
    from_async = outcomes[-1]
    assert {"a": 1} == dict(loaded)
    assert (from_sync.kind, statuses(from_sync, dead)) == (
        from_async.kind,
        statuses(from_async, dead),
    ), f"{from_sync} / {from_async}"
    assert [NodeStatus.REFUSED] == statuses(from_async, dead)


async def test_no_node_raises_the_policy_violation(
    cluster: MemcachedCluster, make_async: MakeAsync
) -> None:
    """With every node dead, start raises under the default policy: never an empty session."""
    store = make_async(cluster)
    session = await _saved(store, a=1)
    for server in cluster.servers:
        server.kill()
    with pytest.raises(errpolicy.PolicyViolation):
        await store.start(session.id)


@pytest.mark.usefixtures("relaxed")
async def test_no_node_raises_session_unavailable_when_relaxed(
    cluster: MemcachedCluster, make_async: MakeAsync
) -> None:
    """A relaxed policy still gets no empty session: SessionUnavailable carries the outcome."""
    store = make_async(cluster)
    session = await _saved(store, a=1)
    for server in cluster.servers:
        server.kill()
    with pytest.raises(SessionUnavailable) as raised:
        await store.start(session.id)
    assert OutcomeKind.UNAVAILABLE == raised.value.outcome.kind


@pytest.mark.hangs
async def test_breakers_are_shared_by_every_task(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """Two tasks timing out on a paused node open its breaker; the next task skips it."""
    store = make_async(cluster)
    first = await _saved(store, a=1)
    second = await _saved(store, b=2)
    paused = ranked(cluster, first.id)[0]
    index = cluster.addresses.index(paused.address)
    # Both sessions need a copy on the paused node for both reads to wait on it.
    if paused not in ranked(cluster, second.id)[:2]:
        second = first
    paused.pause()
    try:
        loaded = await asyncio.gather(store.start(first.id), store.start(second.id))
        assert BreakerState.OPEN == store.nodes[index].breaker.state
        outcomes.clear()
        again = await store.start(first.id)
    finally:
        paused.resume()
    assert [{"a": 1}, dict(second)] == [dict(s) for s in loaded]
    assert {"a": 1} == dict(again)
    assert [NodeStatus.SKIPPED] == statuses(outcomes[-1], paused)


@pytest.mark.hangs
async def test_a_paused_node_times_out(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """A stopped home node costs a timeout; the other copy is served."""
    store = make_async(cluster)
    session = await _saved(store, a=1)
    paused = ranked(cluster, session.id)[0]
    paused.pause()
    try:
        loaded = await store.start(session.id)
    finally:
        paused.resume()
    assert {"a": 1} == dict(loaded)
    assert NodeStatus.TIMEOUT in statuses(outcomes[-1], paused)


async def test_a_busy_loop_does_not_blame_the_nodes(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """Replies that arrived while the loop was blocked past the node timeout are read:
    the loop's lateness is not the nodes' failure."""
    store = make_async(cluster, timeout=0.2)
    session = await _saved(store, a=1)
    await store.start(session.id)  # pools a connection to each home node
    home = [cluster.addresses.index(s.address) for s in ranked(cluster, session.id)[:2]]
    task = asyncio.ensure_future(store.start(session.id))
    await asyncio.sleep(0)  # its first step: requests sent, awaiting the replies
    assert all(_held(store, index) for index in home)
    time.sleep(0.5)  # the loop is blocked (a CPU-bound handler) past the node timeout
    loaded = await task
    assert {"a": 1} == dict(loaded)
    assert [OutcomeKind.OK, BreakerState.CLOSED] == [
        outcomes[-1].kind,
        store.nodes[home[0]].breaker.state,
    ]


async def test_a_restarted_node_is_asked_on_a_fresh_connection(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """A pooled connection the restart closed is retried at once: a miss, then repaired."""
    store = make_async(cluster)
    session = await _saved(store, a=1)
    await store.start(session.id)  # pools a connection to each home node
    restarted = ranked(cluster, session.id)[0]
    restarted.restart()
    loaded = await store.start(session.id)
    assert {"a": 1} == dict(loaded)
    assert [NodeStatus.MISS, NodeStatus.STORED] == statuses(outcomes[-1], restarted)


@pytest.mark.hangs
async def test_a_logout_a_node_missed_is_handed_over_when_it_answers(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, raw: Callable[..., Any]
) -> None:
    """The tombstone a hung node missed reaches it once it answers again, so the old
    copy it holds cannot bring the session back."""
    store = make_async(cluster, failure_threshold=1)
    session = await _saved(store, a=1)
    sid = session.id
    paused = ranked(cluster, sid)[0]
    breaker = store.nodes[cluster.addresses.index(paused.address)].breaker
    paused.pause()
    try:
        await store.start(sid)  # times out: the breaker opens
        await store.destroy(session)  # the node is skipped: a hint is kept
    finally:
        paused.resume()
    breaker.reset()  # as a probe that found it back would (retry_after is long here)
    key = storage_key(PREFIX, sid)
    keys = Keyring(normalize_keys(SECRET))
    client = raw(paused)
    try:
        held = decode(client.get(key), key, keys)
        assert not held.tombstone  # the old copy, before the handoff
        for _ in range(400):  # the next request hands it over, in the background
            await store.start(None)  # (not a read of sid: its repair would write it too)
            held = decode(client.get(key), key, keys)
            if held.tombstone:
                break
            await asyncio.sleep(0.01)
    finally:
        client.close()
    assert held.tombstone
    assert (await store.start(sid)).new


async def test_a_thousand_tasks_keep_their_own_sessions(
    cluster: MemcachedCluster, make_async: MakeAsync
) -> None:
    """1,000 concurrent tasks on one loop each save and read back their own session."""
    # Generous timeouts: a busy machine must not turn this into a timeout test.
    store = make_async(cluster, timeout=10.0, operation_timeout=30.0, on_outcome=None)

    async def one(number: int) -> tuple[str, int]:
        session = await store.start(None)
        session["n"] = number
        await store.save(session)
        loaded = await store.start(session.id)
        return loaded.id, loaded["n"]

    results = await asyncio.gather(*(one(n) for n in range(1000)))
    assert list(range(1000)) == [n for _, n in results]
    assert 1000 == len({sid for sid, _ in results})


@pytest.mark.hangs
async def test_a_cancelled_read_closes_its_connection(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """A read cancelled while a node owes its reply: that connection is closed, not
    pooled, so the late reply is never read as the answer to a later request."""
    store = make_async(cluster, timeout=30.0, operation_timeout=60.0)
    session = await _saved(store, a=1)
    paused = ranked(cluster, session.id)[0]
    index = cluster.addresses.index(paused.address)
    paused.pause()
    task = asyncio.ensure_future(store.start(session.id))
    await _until(lambda: _held(store, index))
    await asyncio.sleep(0.05)  # into the read (the checks hold either way)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pool = store._pool_of(store.nodes[index])
    assert (0, False, 0) == (pool.idle, _held(store, index), store.nodes[index].breaker.failures)
    paused.resume()
    other = await _saved(store, b=2)  # every pooled connection is in step
    assert {"a": 1} == dict(await store.start(session.id))
    assert {"b": 2} == dict(await store.start(other.id))
    assert OutcomeKind.OK == outcomes[-1].kind


@pytest.mark.hangs
async def test_a_cancelled_save_leaves_no_half_written_state(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, raw: Callable[..., Any]
) -> None:
    """A save cancelled while a node owes its reply: the session is unchanged (still
    modified, old version), every copy on the nodes is a whole valid record, and a read
    serves the old data or the new."""
    store = make_async(cluster, timeout=30.0, operation_timeout=60.0)
    session = await _saved(store, a=1)
    version = session.version
    paused = ranked(cluster, session.id)[0]
    index = cluster.addresses.index(paused.address)
    paused.pause()
    session["a"] = 2
    task = asyncio.ensure_future(store.save(session))
    await _until(lambda: _held(store, index))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (True, version) == (session.modified, session.version)
    assert 0 == store._pool_of(store.nodes[index]).idle
    paused.resume()
    key = storage_key(PREFIX, session.id)
    keys = Keyring(normalize_keys(SECRET))
    for server in ranked(cluster, session.id)[:2]:
        client = raw(server)
        blob = client.get(key)
        client.close()
        assert blob is not None
        assert decode(blob, key, keys).data in ({"a": 1}, {"a": 2})
    assert (await store.start(session.id))["a"] in (1, 2)


@pytest.mark.hangs
async def test_a_cancelled_save_releases_the_lock(
    cluster: MemcachedCluster, make_async: MakeAsync, ranked: Ranked, raw: Callable[..., Any]
) -> None:
    """With locking, a save cancelled halfway frees the session's lock: the caller may
    never get to release it."""
    store = make_async(
        cluster, locking=True, timeout=30.0, lock_timeout=1.0, operation_timeout=60.0
    )
    session = await _saved(store, a=1)
    locked = await store.start(session.id)
    order = ranked(cluster, session.id)
    lock_key = storage_key(PREFIX, session.id) + ":lock"
    client = raw(order[0])  # the lock is taken on the first home node
    assert client.get(lock_key) is not None
    paused = order[1]
    index = cluster.addresses.index(paused.address)
    paused.pause()
    try:
        locked["a"] = 2
        task = asyncio.ensure_future(store.save(locked))
        await _until(lambda: _held(store, index))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (None, False) == (client.get(lock_key), locked.locked)
    finally:
        paused.resume()
        client.close()


async def test_a_task_waiting_for_the_lock_does_not_block_the_loop(
    cluster: MemcachedCluster, make_async: MakeAsync
) -> None:
    """With locking, a second request waits for the lock on the loop; the first saves,
    and the second then loads what it saved."""
    store = make_async(cluster, locking=True, lock_timeout=10.0, operation_timeout=20.0)
    session = await _saved(store, n=0)
    first = await store.start(session.id)
    assert first.locked
    waiting = asyncio.ensure_future(store.start(session.id))
    ticks = 0
    while ticks < 5:  # the loop runs while the second request polls the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert not waiting.done()
    first["n"] = 1
    await store.save(first)
    second = await waiting
    assert (1, True) == (second["n"], second.locked)
    await store.release(second)


async def test_aclose_closes_the_pooled_connections(
    cluster: MemcachedCluster, make_async: MakeAsync
) -> None:
    """aclose() closes this loop's idle connections; the store reconnects when used."""
    store = make_async(cluster)
    session = await _saved(store, a=1)
    pools = list(store._pools[asyncio.get_running_loop()].values())
    assert any(pool.idle for pool in pools)
    await store.aclose()
    assert [0] * len(pools) == [pool.idle for pool in pools]
    assert {"a": 1} == dict(await store.start(session.id))


@pytest.mark.parametrize(
    "options",
    [{"transport": "pipelined"}, {"max_connections": 0}, {"replicas": 4}, {"timeout": -1}],
)
def test_bad_options_raise_configuration_error(options: dict[str, Any]) -> None:
    """The sync store's checks, and the async store's own, before any I/O."""
    with pytest.raises(ConfigurationError):
        AsyncMemcacheSessionStore(["127.0.0.1:1", "127.0.0.1:2"], SECRET, **options)


def test_the_async_store_needs_no_pymemcache() -> None:
    """The async store and the ASGI middleware import and build without the client."""
    from .test_missing_extra import _run

    result = _run(
        """
        import json, sys
        from errpolicy_memcache.aio import AsyncMemcacheSessionStore
        from errpolicy_memcache.asgi import SessionMiddleware
        AsyncMemcacheSessionStore(["127.0.0.1:1", "127.0.0.1:2"], "s" * 32)
        print(json.dumps({"pymemcache": "pymemcache" in sys.modules}))
        """
    )
    assert {"pymemcache": False} == result


async def test_a_session_read_whole_after_the_last_fault_reads_its_home_again(
    cluster: MemcachedCluster, make_async: MakeAsync, outcomes: list[Outcome]
) -> None:
    """As the sync store: after a fault the first read of a session asks every node, the
    next asks its home alone, and a session not read since still asks every node."""
    store = make_async(cluster)
    session = await _saved(store, a=1)
    other = await _saved(store, b=2)
    store.nodes[0].breaker.reset()  # marks the fault clock, as an operator's reset does
    counts = []
    for sid in (session.id, session.id, other.id):
        await store.start(sid)
        counts.append(len([r for r in outcomes[-1].nodes if r.command == "gets"]))
    assert [3, 2, 3] == counts
