"""store.stats(): outcomes per operation and node, breakers, latency; the Prometheus export."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from tests.threads import run_threads, switch_often

from errpolicy_memcache import (
    BreakerState,
    MemcacheSessionStore,
    MissingDependency,
    NodeStatus,
    OutcomeKind,
)
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import SECRET, Ranked, saved

Build = Callable[..., MemcacheSessionStore]


@pytest.fixture
def plain(build_store: Build, cluster: MemcachedCluster) -> MemcacheSessionStore:
    """A store with no ``on_outcome``: reads take the fast path that builds no outcome."""
    return build_store(cluster, secret_key=SECRET, failure_threshold=2)


def test_a_new_store_has_counted_nothing(plain: MemcacheSessionStore) -> None:
    """Before any operation every count is empty and every breaker closed."""
    stats = plain.stats()
    assert ({}, {}, {}, {BreakerState.CLOSED}) == (
        dict(stats.outcomes),
        dict(stats.node_results),
        dict(stats.latency),
        set(stats.breakers.values()),
    )


def test_fast_reads_and_saves_are_counted(plain: MemcacheSessionStore) -> None:
    """A save and three reads of it count one ok save and three ok starts."""
    session = saved(plain, a=1)
    for _ in range(3):
        plain.start(session.id)
    stats = plain.stats()
    assert (1, 3) == (
        stats.outcomes[("session.save", OutcomeKind.OK)],
        stats.outcomes[("session.start", OutcomeKind.OK)],
    )


def test_each_home_node_counts_its_hits(plain: MemcacheSessionStore) -> None:
    """Three reads with two replicas count six hits over the nodes."""
    session = saved(plain, a=1)
    for _ in range(3):
        plain.start(session.id)
    hits = {n: c for (n, s), c in plain.stats().node_results.items() if s is NodeStatus.HIT}
    assert (6, 2) == (sum(hits.values()), len(hits))


def test_latency_counts_every_operation(plain: MemcacheSessionStore) -> None:
    """Each operation's histogram holds as many operations as its outcome counts."""
    session = saved(plain, a=1)
    for _ in range(4):
        plain.start(session.id)
    stats = plain.stats()
    expected = {op: stats.count(op) for op in ("session.save", "session.start")}
    assert expected == {op: h.count for op, h in stats.latency.items()}


def test_a_killed_node_shows_as_failovers_refusals_and_an_open_breaker(
    plain: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """With one node killed, failovers are counted, the node's refusals, and its breaker opens."""
    sessions = [saved(plain, n=i) for i in range(12)]
    # 12 sessions x 2 home nodes over 3 nodes: some node is home to at least 8 of them.
    homes = Counter(s.address for session in sessions for s in ranked(cluster, session.id)[:2])
    dead = homes.most_common(1)[0][0]
    next(server for server in cluster.servers if server.address == dead).kill()
    for session in sessions:
        plain.start(session.id)
    stats = plain.stats()
    assert (True, True, BreakerState.OPEN) == (
        stats.flagged("session.start", OutcomeKind.FAILOVER) >= 1,
        stats.node_results.get((dead, NodeStatus.REFUSED), 0) >= 2,
        stats.breakers[dead],
    )


def test_a_failover_that_repairs_counts_under_both_flags(
    plain: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """A read served by the second home node that also copies the session to the third
    node is one ``repaired`` outcome, flagged both ``failover`` and ``repaired``."""
    session = saved(plain, a=1)
    ranked(cluster, session.id)[0].kill()
    plain.start(session.id)
    stats = plain.stats()
    start = "session.start"
    assert (1, 1, 1, 0) == (
        stats.count(start, OutcomeKind.REPAIRED),
        stats.flagged(start, OutcomeKind.FAILOVER),
        stats.flagged(start, OutcomeKind.REPAIRED),
        stats.count(start, OutcomeKind.FAILOVER),
    )


def test_reported_outcomes_are_counted_too(build_store: Build, cluster: MemcachedCluster) -> None:
    """With ``on_outcome`` set, the same reads are counted once each."""
    seen: list[object] = []
    store = build_store(cluster, secret_key=SECRET, on_outcome=seen.append)
    session = saved(store, a=1)
    store.start(session.id)
    assert (1, 2) == (store.stats().count("session.start"), len(seen))


def test_prometheus_export_reads_the_stats(plain: MemcacheSessionStore) -> None:
    """The collector exposes operations, node results, breakers and latency by name."""
    from prometheus_client import CollectorRegistry, generate_latest

    from errpolicy_memcache.prometheus import register

    registry = CollectorRegistry()
    register(plain, registry, name="web")
    session = saved(plain, a=1)
    plain.start(session.id)
    text = generate_latest(registry).decode()
    expected = [
        'errpolicy_memcache_operations_total{operation="session.start",outcome="ok",'
        'store="web"} 1.0',
        'errpolicy_memcache_operation_seconds_count{operation="session.save",store="web"} 1.0',
        "errpolicy_memcache_breaker_open{",
        'status="hit",store="web"} 1.0',
    ]
    assert expected == [line for line in expected if line in text]


def test_prometheus_export_counts_flags(
    plain: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """A failover that repaired shows under the operation's flags, once per flag."""
    from prometheus_client import CollectorRegistry, generate_latest

    from errpolicy_memcache.prometheus import register

    registry = CollectorRegistry()
    register(plain, registry, name="web")
    session = saved(plain, a=1)
    ranked(cluster, session.id)[0].kill()
    plain.start(session.id)
    text = generate_latest(registry).decode()
    expected = [
        f'errpolicy_memcache_operation_flags_total{{flag="{flag}",operation="session.start",'
        'store="web"} 1.0'
        for flag in ("failover", "repaired")
    ]
    assert expected == [line for line in expected if line in text]


def test_prometheus_without_the_client_names_the_extra(
    plain: MemcacheSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without prometheus_client, the collector says which extra to install."""
    from errpolicy_memcache.prometheus import StoreCollector

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependency) as caught:
        StoreCollector(plain)
    assert ("prometheus", "prometheus_client") == (caught.value.extra, caught.value.name)


class _FakeNode:
    """What StoreMetrics reads of a node: its address."""

    def __init__(self, address: str) -> None:
        self.address = address


def test_counts_are_exact_under_threads() -> None:
    """Eight threads counting at once, switching every microsecond, lose no count."""
    from errpolicy_memcache._metrics import StoreMetrics

    metrics = StoreMetrics()
    home: list[Any] = [_FakeNode("a:1"), _FakeNode("b:1")]
    result = [("a:1", "gets", NodeStatus.HIT, 0.0, ""), ("b:1", "gets", NodeStatus.HIT, 0.0, "")]

    def work(_: int) -> None:
        for _ in range(1000):
            metrics.hit(home, 0.0001)
            metrics.record("session.start", OutcomeKind.OK, result, 0.0001)

    with switch_often():
        run_threads(work, 8)
    stats = metrics.snapshot([])
    assert (16000, 16000, 16000, 16000) == (
        stats.count("session.start", OutcomeKind.OK),
        stats.node_results[("a:1", NodeStatus.HIT)],
        stats.node_results[("b:1", NodeStatus.HIT)],
        stats.latency["session.start"].count,
    )


async def test_the_async_store_counts_and_exports_too(cluster: MemcachedCluster) -> None:
    """The asyncio store's stats() counts its operations, and the collector reads it."""
    from prometheus_client import CollectorRegistry, generate_latest

    from errpolicy_memcache.aio import AsyncMemcacheSessionStore
    from errpolicy_memcache.prometheus import register

    async with AsyncMemcacheSessionStore(cluster.addresses, SECRET, timeout=2.0) as store:
        registry = CollectorRegistry()
        register(store, registry, name="aio")
        session = await store.start(None)
        session["a"] = 1
        await store.save(session)
        await store.start(session.id)
        stats = store.stats()
        text = generate_latest(registry).decode()
    line = 'errpolicy_memcache_operations_total{operation="session.save",outcome="ok",store="aio"}'
    assert (1, 1, True) == (
        stats.count("session.save", OutcomeKind.OK),
        stats.count("session.start", OutcomeKind.OK),
        f"{line} 1.0" in text,
    )
