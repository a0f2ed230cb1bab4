"""Fixtures for the framework glue: three real memcached nodes and a store on them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import errpolicy
import pytest
from errpolicy.testing import configured

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster, find_memcached

SECRET = "frameworks-test-secret-0123456789"


_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this directory's tests that start real memcached nodes with ``memcached``."""
    for item in items:
        if item.path.is_relative_to(_HERE) and "memcached_binary" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.memcached)


@pytest.fixture(scope="session")
def memcached_binary() -> str:
    """The memcached binary; missing fails under CI=true, skips elsewhere."""
    binary = find_memcached()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("memcached is required under CI=true (apt-get install memcached)")
        pytest.skip("memcached not installed (apt-get install memcached)")
    return binary


@pytest.fixture
def cluster(memcached_binary: str) -> Iterator[MemcachedCluster]:
    """Three fresh memcached nodes, stopped (even if killed or paused) after the test."""
    nodes = MemcachedCluster(3, memory_mb=16)
    try:
        nodes.start()
        yield nodes
    finally:
        # SIGKILL first: an idle memcached takes about a second to exit on SIGTERM.
        for server in nodes.servers:
            server.kill()
        nodes.stop()


@pytest.fixture
def recorded() -> Iterator[list[errpolicy.Event]]:
    """Events the store's guards recorded during the test (the sink is swapped for this)."""
    events: list[errpolicy.Event] = []
    with configured(sink=events.append):
        yield events


@pytest.fixture(params=["pymemcache", "pipelined"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each transport in turn: every test that builds a store runs over both."""
    param: str = request.param
    return param


@pytest.fixture
def make_store(
    cluster: MemcachedCluster, recorded: list[errpolicy.Event], transport: str
) -> Iterator[Callable[..., MemcacheSessionStore]]:
    """Build stores on ``cluster`` with test-sized timeouts; closed after the test.

    ``transport`` is the one of the :func:`transport` fixture unless given.
    """
    made: list[MemcacheSessionStore] = []

    def make(**options: Any) -> MemcacheSessionStore:
        settings: dict[str, Any] = {
            "secret_key": SECRET,
            "connect_timeout": 0.5,
            "timeout": 0.3,
            "retry_after": 60.0,
            "transport": transport,
        }
        settings.update(options)
        store = MemcacheSessionStore(cluster.addresses, **settings)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., MemcacheSessionStore]) -> MemcacheSessionStore:
    """A store with two replicas on the three nodes."""
    return make_store()
