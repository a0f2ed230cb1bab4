"""Fixtures shared by every test: errpolicy's configuration is restored after each test;
real memcached nodes and the store transports for the memcache and framework tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import errpolicy
import pytest
from errpolicy.testing import configured
from hypothesis import settings

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster, find_memcached

# Hypothesis's per-example deadline (200 ms) is a timing assertion: on a loaded machine
# one slow example fails a correct test as "flaky". Off for the whole suite.
settings.register_profile("errpolicy", deadline=None)
settings.load_profile("errpolicy")


@pytest.fixture(autouse=True)
def _restore_errpolicy_config() -> Iterator[None]:
    """Each test starts from the default configuration and leaves it so."""
    errpolicy.reset_defaults()
    yield
    errpolicy.reset_defaults()


@pytest.fixture(scope="session")
def memcached_binary() -> str:
    """The memcached binary; missing fails under CI=true, skips elsewhere."""
    binary = find_memcached()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("memcached is required under CI=true (apt-get install memcached)")
        pytest.skip("memcached not installed (apt-get install memcached)")
    return binary


def _running(size: int) -> Iterator[MemcachedCluster]:
    """``size`` fresh memcached nodes, stopped (even if killed or paused) afterwards."""
    nodes = MemcachedCluster(size, memory_mb=16)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()  # SIGKILLs every node: an idle memcached is slow to exit on SIGTERM


@pytest.fixture
def cluster(memcached_binary: str) -> Iterator[MemcachedCluster]:
    """Three fresh memcached nodes, stopped (even if killed or paused) after the test."""
    yield from _running(3)


@pytest.fixture
def pair(memcached_binary: str) -> Iterator[MemcachedCluster]:
    """Two fresh memcached nodes."""
    yield from _running(2)


@pytest.fixture(params=["pymemcache", "pipelined"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each transport in turn: every test that builds a store runs over both."""
    param: str = request.param
    return param


@pytest.fixture
def recorded() -> Iterator[list[errpolicy.Event]]:
    """Events that guards record (not raise), through a sink; the configuration is put back."""
    events: list[errpolicy.Event] = []
    with configured(sink=events.append):
        yield events


@pytest.fixture
def build_store(transport: str) -> Iterator[Callable[..., MemcacheSessionStore]]:
    """Build stores on a cluster or a list of addresses, with test-sized timeouts and
    the :func:`transport` fixture's transport unless given; all closed after the test.
    Each test directory's ``make_store`` adds its own settings (secret, hooks)."""
    made: list[MemcacheSessionStore] = []

    def build(nodes: MemcachedCluster | list[str], **options: Any) -> MemcacheSessionStore:
        servers = nodes.addresses if isinstance(nodes, MemcachedCluster) else nodes
        settings: dict[str, Any] = {
            "connect_timeout": 0.5,
            "timeout": 0.3,
            "retry_after": 60.0,
            "transport": transport,
            **options,
        }
        store = MemcacheSessionStore(servers, **settings)
        made.append(store)
        return store

    yield build
    for store in made:
        store.close()
