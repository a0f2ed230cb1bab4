"""Fixtures for the framework glue: a store on the three memcached nodes of `cluster`
(tests/conftest.py)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import errpolicy
import pytest

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.testing import MemcachedCluster

SECRET = "frameworks-test-secret-0123456789"


_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this directory's tests that start real memcached nodes with ``memcached``."""
    for item in items:
        if item.path.is_relative_to(_HERE) and "memcached_binary" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.memcached)


@pytest.fixture
def make_store(
    cluster: MemcachedCluster,
    recorded: list[errpolicy.Event],
    build_store: Callable[..., MemcacheSessionStore],
) -> Callable[..., MemcacheSessionStore]:
    """Build stores on ``cluster`` (see ``build_store`` in tests/conftest.py), signed with
    this directory's secret; recorded events go to ``recorded``."""

    def make(**options: Any) -> MemcacheSessionStore:
        return build_store(cluster, **{"secret_key": SECRET, **options})

    return make


@pytest.fixture
def store(make_store: Callable[..., MemcacheSessionStore]) -> MemcacheSessionStore:
    """A store with two replicas on the three nodes."""
    return make_store()


@pytest.fixture
def stored_ttls(cluster: MemcachedCluster) -> Callable[[str], list[int]]:
    """``ttls(sid)``: the seconds left before memcached expires each copy of session
    ``sid`` (default prefix), one per node holding one, read with a meta get."""

    def ttls(sid: str) -> list[int]:
        key = storage_key("errpolicy:session:", sid)
        left = []
        for server in cluster.servers:
            with socket.create_connection((server.host, server.port), timeout=5) as conn:
                conn.sendall(f"mg {key} t\r\n".encode())
                reply = conn.makefile("rb").readline().decode().split()
            if reply[0] == "HD":
                left.append(int(reply[1].removeprefix("t")))
        return sorted(left)

    return ttls
