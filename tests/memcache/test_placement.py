"""Rendezvous hashing ranks every node for every key, stably."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._placement import node_seed, rank
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import PREFIX

NAMES = [f"127.0.0.1:{port}" for port in range(11211, 11217)]
SEEDS = [node_seed(n) for n in NAMES]


@given(st.text(min_size=1))
def test_rank_is_a_permutation(key: str) -> None:
    """Every node appears exactly once."""
    assert sorted(NAMES) == sorted(rank(NAMES, SEEDS, key))


@given(st.text(min_size=1))
def test_rank_is_deterministic(key: str) -> None:
    """The same key always ranks the nodes the same way."""
    assert rank(NAMES, SEEDS, key) == rank(NAMES, SEEDS, key)


@given(st.text(min_size=1), st.sampled_from(NAMES))
def test_removing_a_node_keeps_the_order_of_the_others(key: str, gone: str) -> None:
    """Only the removed node leaves the ranking; the others keep their relative order."""
    rest = [n for n in NAMES if n != gone]
    assert [n for n in rank(NAMES, SEEDS, key) if n != gone] == rank(
        rest, [node_seed(n) for n in rest], key
    )


def test_primaries_spread_over_the_nodes() -> None:
    """Over many keys every node is first for some of them."""
    firsts = {rank(NAMES, SEEDS, f"key-{i}")[0] for i in range(300)}
    assert set(NAMES) == firsts


def _closed_ports(count: int) -> list[str]:
    """Loopback addresses where nothing listens (ports bound, then released)."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return addresses


@pytest.mark.memcached
def test_a_store_over_seventy_servers_saves_and_reads(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """Every operation once raised ValueError above 64 servers (the C ranking); a
    session whose home is a live node saves and reads back."""
    live = cluster.servers[0].address
    servers = [live, *_closed_ports(69)]
    store = make_store(servers, replicas=1)
    seeds = [node_seed(s) for s in servers]
    session = store.new_session()
    while rank(servers, seeds, storage_key(PREFIX, session.id))[0] != live:
        session = store.new_session()
    session["a"] = 1
    store.save(session)
    assert {"a": 1} == dict(store.start(session.id))
