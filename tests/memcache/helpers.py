"""Helpers the memcache tests share (imported as ``from .helpers import ...``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from errpolicy_memcache import MemcacheSessionStore, NodeStatus, Outcome, Session
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

SECRET = "test-secret-key-0123456789abcdef"
PREFIX = "errpolicy:session:"

Ranked = Callable[[MemcachedCluster, str], list[MemcachedServer]]
TtlOf = Callable[[MemcachedServer, str], int | None]
Counters = Callable[[MemcachedServer], dict[str, int]]


def saved(store: MemcacheSessionStore, **data: object) -> Session:
    """A new session holding ``data``, saved."""
    session = store.start(None)
    session.update(data)
    store.save(session)
    return session


def statuses(outcome: Outcome, server: MemcachedServer) -> list[NodeStatus]:
    """The status of each of ``server``'s results in ``outcome``, in order."""
    return [r.status for r in outcome.results_for(server.address)]


def saved_before_outage(store: MemcacheSessionStore, cluster: MemcachedCluster) -> Session:
    """A session saved (``a=1``), then every node of ``cluster`` killed."""
    session = saved(store, a=1)
    for server in cluster.servers:
        server.kill()
    return session


@contextmanager
def hung(*servers: MemcachedServer) -> Iterator[None]:
    """``servers`` paused (SIGSTOP: they accept connections and never answer) inside the
    block, resumed after it whatever happens."""
    for server in servers:
        server.pause()
    try:
        yield
    finally:
        for server in servers:
            server.resume()
