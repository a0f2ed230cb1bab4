"""Behind twemproxy: each server in the store's list is one pool behind its own proxy.

Real nutcracker processes in front of real memcached, all on loopback ports. A proxy
whose backend is down answers SERVER_ERROR: the store counts that as a failed node.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import errpolicy
import pytest

from errpolicy_memcache import BreakerState, MemcacheSessionStore, NodeStatus, Outcome, OutcomeKind
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import saved
from .twemproxy import Twemproxy, find_nutcracker


@pytest.fixture(scope="session")
def nutcracker_binary() -> str:
    """The nutcracker binary; missing fails under CI=true, skips elsewhere."""
    binary = find_nutcracker()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nutcracker is required under CI=true (apt-get install nutcracker)")
        pytest.skip("nutcracker not installed (apt-get install nutcracker)")
    return binary


@pytest.fixture
def proxies(
    nutcracker_binary: str, cluster: MemcachedCluster, tmp_path: Path
) -> Iterator[list[Twemproxy]]:
    """One twemproxy in front of each of the cluster's three memcached nodes."""
    started: list[Twemproxy] = []
    try:
        for server in cluster.servers:
            started.append(Twemproxy(nutcracker_binary, server.address, tmp_path).start())
        yield started
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture
def proxied(
    make_store: Callable[..., MemcacheSessionStore], proxies: list[Twemproxy]
) -> MemcacheSessionStore:
    """A store whose servers are the three proxies; its read timeout is longer than the
    proxies' own (300 ms), so a hung backend is the proxy's SERVER_ERROR, not ours."""
    return make_store([p.address for p in proxies], timeout=1.5, operation_timeout=6.0)


def node_of(store: MemcacheSessionStore, proxy: Twemproxy) -> BreakerState:
    (node,) = [n for n in store.nodes if n.address == proxy.address]
    return node.breaker.state


def statuses_of(outcomes: list[Outcome], proxy: Twemproxy) -> set[NodeStatus]:
    return {r.status for o in outcomes for r in o.results_for(proxy.address)}


def test_sessions_round_trip_through_proxies(proxied: MemcacheSessionStore) -> None:
    """Save, read, regenerate and destroy work through twemproxy as on memcached itself."""
    session = saved(proxied, user="ada")
    old = session.id
    proxied.regenerate(session)
    again = proxied.start(session.id)
    data = dict(again)
    proxied.destroy(again)
    assert ({"user": "ada"}, True, True) == (
        data,
        proxied.start(old).new,
        proxied.start(session.id).new,
    )


def test_locking_works_through_proxies(
    make_store: Callable[..., MemcacheSessionStore], proxies: list[Twemproxy]
) -> None:
    """The session lock (memcached add and delete) goes through the proxy too."""
    store = make_store([p.address for p in proxies], locking=True)
    session = saved(store, n=1)
    loaded = store.start(session.id)
    locked = loaded.locked
    loaded["n"] = 2
    store.save(loaded)
    assert (True, 2) == (locked, store.start(session.id)["n"])


def test_a_proxy_whose_backend_is_down_is_a_failed_node(
    proxied: MemcacheSessionStore,
    proxies: list[Twemproxy],
    cluster: MemcachedCluster,
    outcomes: list[Outcome],
) -> None:
    """The proxy's SERVER_ERROR is counted on its breaker: it opens, and sessions fail over."""
    sessions = [saved(proxied, n=i) for i in range(12)]
    cluster[0].kill()  # the memcached behind proxies[0]; the proxy itself still runs
    outcomes.clear()
    read = [proxied.start(s.id).get("n") for s in sessions]
    assert (list(range(12)), True, BreakerState.OPEN) == (
        read,
        NodeStatus.SERVER_ERROR in statuses_of(outcomes, proxies[0]),
        node_of(proxied, proxies[0]),
    )


@pytest.mark.hangs
def test_a_hung_backend_is_the_proxys_timeout(
    proxied: MemcacheSessionStore,
    proxies: list[Twemproxy],
    cluster: MemcachedCluster,
    outcomes: list[Outcome],
) -> None:
    """With an explicit proxy ``timeout``, a hung backend is a SERVER_ERROR, a failed node."""
    sessions = [saved(proxied, n=i) for i in range(6)]
    cluster[1].pause()
    outcomes.clear()
    try:
        read = [proxied.start(s.id).get("n") for s in sessions]
    finally:
        cluster[1].resume()
    failures = statuses_of(outcomes, proxies[1]) - {NodeStatus.HIT, NodeStatus.SKIPPED}
    assert (list(range(6)), {NodeStatus.SERVER_ERROR}) == (read, failures)


def test_every_backend_down_is_a_503_never_an_empty_session(
    proxied: MemcacheSessionStore, cluster: MemcachedCluster, outcomes: list[Outcome]
) -> None:
    """With every backend down, reads raise (the 503), and the outcome is unavailable."""
    session = saved(proxied, n=1)
    for server in cluster.servers:
        server.kill()
    with pytest.raises(errpolicy.PolicyViolation):
        proxied.start(session.id)
    assert OutcomeKind.UNAVAILABLE == outcomes[-1].kind
