"""Fixtures: real memcached processes on free loopback ports, and stores wired to them."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import errpolicy
import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import OPERATIONS, MemcacheSessionStore, Outcome
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._placement import node_seed, rank
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, SECRET

# The soak's package (tests/memcache/soak/) is imported by test_soak.py; --doctest-modules
# would import it a second time as a top-level package and break the relative imports here.
collect_ignore = ["soak"]


@pytest.fixture
def outcomes() -> list[Outcome]:
    """Every outcome the stores of a test report, in order."""
    return []


@pytest.fixture
def make_store(
    build_store: Callable[..., MemcacheSessionStore], outcomes: list[Outcome]
) -> Callable[..., MemcacheSessionStore]:
    """Build stores on a cluster or address list (see ``build_store`` in tests/conftest.py),
    signed with the tests' secret, breakers opening after 2 failures, outcomes collected."""

    def make(nodes: MemcachedCluster | list[str], **options: Any) -> MemcacheSessionStore:
        settings: dict[str, Any] = {
            "secret_key": SECRET,
            "failure_threshold": 2,
            "on_outcome": outcomes.append,
            **options,
        }
        return build_store(nodes, **settings)

    return make


@pytest.fixture
def store(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> MemcacheSessionStore:
    """A store over the three-node cluster with replicas=2."""
    return make_store(cluster)


@pytest.fixture
def relaxed() -> Iterator[None]:
    """Configure every session operation to record, never raise; restores the configuration."""
    previous = errpolicy.get_config()
    policy = errpolicy.Policy(raise_on="NONE", record="ALL")
    errpolicy.configure(policies=dict.fromkeys(OPERATIONS, policy))
    yield
    errpolicy.configure(policies=previous.policies)


@pytest.fixture
def strict_start() -> Iterator[None]:
    """The app raises on notices too, for session.start; restores the configuration."""
    previous = errpolicy.get_config()
    errpolicy.configure(
        policies={"session.start": errpolicy.Policy(raise_on="NOTICE | WARNING | ERROR")}
    )
    yield
    errpolicy.configure(policies=previous.policies)


@pytest.fixture
def raw() -> Callable[[MemcachedServer], Client]:
    """Plain pymemcache clients for looking at (or tampering with) one node."""
    return _raw_client


@pytest.fixture
def ttl_of() -> Callable[[MemcachedServer, str], int | None]:
    """Seconds left before a key expires on a node (memcached meta get), None if absent."""
    return _remaining_ttl


@pytest.fixture
def counters() -> Callable[[MemcachedServer], dict[str, int]]:
    """A node's command counters (cmd_get, cmd_set, ...)."""
    return _counters


def _raw_client(server: MemcachedServer) -> Client:
    """A plain pymemcache client for looking at (or tampering with) one node. Its
    writes wait for the node's reply (pymemcache's default is ``noreply``): a tampering
    ``delete`` or ``set`` must have taken effect before the store's next read, which
    comes over another connection that memcached may serve first."""
    return Client(
        (server.host, server.port), connect_timeout=1.0, timeout=1.0, default_noreply=False
    )


def _remaining_ttl(server: MemcachedServer, key: str) -> int | None:
    """Seconds left before ``key`` expires on ``server`` (meta get ``t`` flag), None if absent."""
    with socket.create_connection((server.host, server.port), timeout=2.0) as sock:
        sock.sendall(f"mg {key} t\r\n".encode())
        line = sock.recv(1024).decode().strip()
    if line.startswith("EN"):
        return None
    flags = {part[0]: part[1:] for part in line.split()[1:]}
    return int(flags["t"])


def _counters(server: MemcachedServer) -> dict[str, int]:
    """The get/set/touch/delete counters of one node."""
    stats = server.stats()
    names = ("cmd_get", "cmd_set", "cmd_touch", "get_hits", "get_misses", "curr_items")
    return {name: int(stats[name]) for name in names}


@pytest.fixture
def ranked() -> Callable[[MemcachedCluster, str], list[MemcachedServer]]:
    """The cluster's servers in the order the store ranks them for a session id."""

    def servers_for(nodes: MemcachedCluster, sid: str) -> list[MemcachedServer]:
        key = storage_key(PREFIX, sid)
        return rank(nodes.servers, [node_seed(a) for a in nodes.addresses], key)

    return servers_for
