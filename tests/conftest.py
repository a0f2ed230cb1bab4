"""Fixtures shared by every test: errpolicy's configuration is restored after each test;
real memcached nodes and the store transports for the memcache and framework tests.

Store timeouts, the rule: no test may depend on the machine being idle. On a busy machine
(2 cores, 12 CPU-bound processes, the tests niced below them) a HEALTHY memcached was
measured answering a round trip in up to 1.4 s, one in 600 past 0.3 s: a short timeout
turns a healthy node into a failed one, and the test into a timeout test it was not
written to be.

* A test that never pauses a node, or only kills one (a refused connection costs no
  wait), gets :data:`STEADY_TIMEOUTS` (3 s, twice the worst measured): free, as only a
  hung node would wait them out.
* A test that hangs a node (SIGSTOP, :meth:`MemcachedServer.pause`) waits out a timeout
  on purpose: it is marked ``@pytest.mark.hangs`` and its stores get
  :data:`HANG_TIMEOUTS`, a read timeout short enough for the suite's time (each hung
  read waits it out; the suite runs serially in CI, several times). Such a test should
  save its set-up data with a store of steady timeouts where the test allows (as
  test_consistency's ``STEADY`` stores do) and assert nothing that needs the healthy
  nodes to answer within the short timeout beyond what the hang itself needs. While a
  node hangs, a healthy one stalled past 0.3 s still changes what these tests see: the
  exposure left, kept to the few seconds a node is hung.
  A test that pauses a node without the mark fails (:func:`_hangs_are_marked`).
* Every fixture or helper that builds a store takes its timeouts from
  :func:`store_timeouts` (``build_store``, the async ``make_async`` fixtures, the
  framework fixtures), so the rule lives here only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import errpolicy
import pytest
from errpolicy.testing import configured
from hypothesis import HealthCheck, settings

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer, find_memcached

# The connect timeout stays long in both: a paused memcached's kernel still completes the
# TCP handshake, so only reads wait on a hung node.
STEADY_TIMEOUTS: dict[str, float] = {"connect_timeout": 3.0, "timeout": 3.0}
HANG_TIMEOUTS: dict[str, float] = {"connect_timeout": 3.0, "timeout": 0.3}

# Hypothesis' per-example deadline and "too slow" check are timing assertions: on a busy
# CI machine they fail tests whose logic is right. Every property keeps its own example
# count; only the clock is taken out.
settings.register_profile("errpolicy", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("errpolicy")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hangs: the test pauses (SIGSTOP) a memcached node; short store timeouts"
    )


@pytest.fixture
def store_timeouts(request: pytest.FixtureRequest) -> dict[str, float]:
    """The store timeouts for this test: short only if it is marked ``hangs``."""
    hangs = request.node.get_closest_marker("hangs") is not None
    return dict(HANG_TIMEOUTS if hangs else STEADY_TIMEOUTS)


@pytest.fixture(autouse=True)
def _hangs_are_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that pauses a node must be marked ``hangs`` (see the module's docstring):
    else its stores' long timeouts would make each hung read cost seconds."""
    if request.node.get_closest_marker("hangs") is not None:
        return

    def unmarked_pause(self: MemcachedServer) -> None:
        pytest.fail(f"{request.node.nodeid} pauses {self.address}: mark it @pytest.mark.hangs")

    monkeypatch.setattr(MemcachedServer, "pause", unmarked_pause)


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
def build_store(
    transport: str, store_timeouts: dict[str, float]
) -> Iterator[Callable[..., MemcacheSessionStore]]:
    """Build stores on a cluster or a list of addresses, with :func:`store_timeouts` and
    the :func:`transport` fixture's transport unless given; all closed after the test.
    Each test directory's ``make_store`` adds its own settings (secret, hooks)."""
    made: list[MemcacheSessionStore] = []

    def build(nodes: MemcachedCluster | list[str], **options: Any) -> MemcacheSessionStore:
        servers = nodes.addresses if isinstance(nodes, MemcachedCluster) else nodes
        settings: dict[str, Any] = {
            **store_timeouts,
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
