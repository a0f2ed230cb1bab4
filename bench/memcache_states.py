"""The store's states that issue 10 sets a target for, each against its raw pymemcache call.

Used by :mod:`bench.memcache_bench` (timed, every transport interleaved with the
baseline) and by its callgrind mode (instructions of one operation, one transport).
Each :func:`prepare` sets a state up on a running cluster and returns the store's
operation per transport, the baseline operation and a ``close`` that undoes the state:

- ``start``, ``start-4k``, ``start-16k``, ``start-64k``: ``start()`` of a saved session
  (about 400 bytes, 4, 16 and 64 KiB stored) vs one raw ``get`` of the same bytes from
  its primary node; every node healthy.
- ``outage``: the session's primary hangs (SIGSTOP) and its breaker is open, in a store
  with the default options; vs one raw ``get`` of the same bytes from its second node.
- ``recovered``: the primary hung, its breaker opened, it came back and the prober
  closed the breaker again; vs one raw ``get`` from the primary.
- ``refault``: ``start()`` of a session as the first read after a fault: the store's
  fault clock is marked before each read (as any failure, rejoin or ``reset()`` marks
  it), so each read asks every node; vs one raw ``get`` from the primary. No target:
  it shows what the first read of each session after a fault costs, before that
  session settles (docs/memcache/index.md).
- ``save``: ``save()`` of the small session (two copies, one round) vs one raw ``set``
  of the same bytes.
"""

from __future__ import annotations

import base64
import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymemcache.client.base import Client

from errpolicy_memcache import BreakerState, MemcacheSessionStore
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._placement import node_seed, rank
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

SECRET = "bench-secret-0123456789abcdef-0123"
PREFIX = "errpolicy:session:"
SESSION: dict[str, Any] = {
    "user_id": 4242,
    "name": "Ada Lovelace",
    "roles": ["reader", "editor"],
    "csrf": "3f1c0d8e9a7b6c5d4e3f2a1b0c9d8e7f",
    "cart": [{"sku": f"SKU-{i:04d}", "qty": i % 3 + 1} for i in range(6)],
    "flash": [],
}

#: Stored sizes of the large-session rows.
SIZES = {"start-4k": 4096, "start-16k": 16384, "start-64k": 65536}
STATES = ("start", *SIZES, "outage", "recovered", "refault", "save")

#: Row names and baselines, by state.
NAMES = {
    "start": ("start() existing session, replicas=2", "raw pymemcache get, same bytes"),
    "start-4k": ("start() of a 4 KiB session", "raw pymemcache get, same bytes"),
    "start-16k": ("start() of a 16 KiB session", "raw pymemcache get, same bytes"),
    "start-64k": ("start() of a 64 KiB session", "raw pymemcache get, same bytes"),
    "outage": (
        "start() while the primary hangs, breaker open (default store)",
        "raw pymemcache get from the second node, same bytes",
    ),
    "recovered": (
        "start() after the primary hung and came back",
        "raw pymemcache get, same bytes",
    ),
    "refault": (
        "start() as the first read of a session after a fault (all nodes asked)",
        "raw pymemcache get, same bytes",
    ),
    "save": ("save() replicas=2", "raw pymemcache set, same bytes"),
}
TARGETS: dict[str, float | None] = {
    state: 2.0 if state == "save" else None if state == "refault" else 1.5 for state in STATES
}


@dataclass(frozen=True, slots=True)
class Prepared:
    """A state set up: the store's operation per transport, the baseline, and the undo."""

    ours: dict[str, Callable[[], object]]
    baseline: Callable[[], object]
    close: Callable[[], None]


def store(cluster: MemcachedCluster, transport: str, **options: Any) -> MemcacheSessionStore:
    """A store over ``cluster`` with ``replicas=2`` and the benchmark's secret and prefix."""
    return MemcacheSessionStore(
        cluster.addresses, SECRET, replicas=2, prefix=PREFIX, transport=transport, **options
    )


def raw_client(server: MemcachedServer) -> Client:
    """A pymemcache client as an application would make one, on ``server`` (generous
    timeouts: under valgrind on a busy machine a reply can take over 0.5 s, and the
    timeout costs a raw call nothing until it is hit)."""
    return Client(
        (server.host, server.port),
        connect_timeout=5.0,
        timeout=5.0,
        no_delay=True,
        default_noreply=False,
    )


def data_of(size: int | None) -> dict[str, Any]:
    """The benchmark's session data, padded so that its stored copy is about ``size``
    bytes (incompressible text, as a serialized cart or form state would be)."""
    data = dict(SESSION)
    if size:
        pad = size - 180 - len(str(SESSION))
        data["state"] = base64.b64encode(random.Random(size).randbytes(pad * 3 // 4)).decode()
    return data


def saved(target: MemcacheSessionStore, data: dict[str, Any] | None = None) -> str:
    """The id of a new session holding ``data`` (the benchmark's by default), saved."""
    session = target.start(None)
    session.update(SESSION if data is None else data)
    target.save(session)
    return session.id


def ranked_servers(cluster: MemcachedCluster, key: str) -> list[MemcachedServer]:
    """The cluster's servers in the store's ranking for ``key`` (home nodes first)."""
    return rank(cluster.servers, [node_seed(a) for a in cluster.addresses], key)


def _open_breaker(target: MemcacheSessionStore, server: MemcachedServer, sid: str) -> None:
    """Read until the hung ``server``'s breaker opens (each read pays its timeout)."""
    node = next(n for n in target.nodes if n.address == server.address)
    while node.breaker.state is not BreakerState.OPEN:
        target.start(sid)


def _wait_closed(target: MemcacheSessionStore, server: MemcachedServer) -> None:
    node = next(n for n in target.nodes if n.address == server.address)
    deadline = time.monotonic() + 30
    while node.breaker.state is not BreakerState.CLOSED:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the prober did not close {server.address}'s breaker")
        time.sleep(0.01)


def prepare(state: str, cluster: MemcachedCluster, transports: Sequence[str]) -> Prepared:
    """Set ``state`` up on ``cluster`` for each of ``transports`` (see the module doc)."""
    options: dict[str, Any] = {"retry_after": 3600.0} if state == "outage" else {}
    stores = {t: store(cluster, t, **options) for t in transports}
    first = stores[transports[0]]
    sid = saved(first, data_of(SIZES.get(state)))
    key = storage_key(PREFIX, sid)
    servers = ranked_servers(cluster, key)
    primary = servers[0]
    raw = raw_client(servers[1] if state == "outage" else primary)
    blob = raw.get(key)
    assert blob is not None, "the session should be on its home nodes"
    resume: Callable[[], None] = lambda: None  # noqa: E731 (a no-op undo)
    if state in ("outage", "recovered"):
        primary.pause()
        resume = primary.resume
        try:
            for target in stores.values():
                _open_breaker(target, primary, sid)
        finally:
            if state == "recovered":
                primary.resume()
        if state == "recovered":
            for target in stores.values():
                _wait_closed(target, primary)

    def close() -> None:
        resume()
        raw.close()
        for target in stores.values():
            target.close()

    if state == "save":
        session = first.start(sid)
        scratch = f"{PREFIX}bench-raw-set"
        return Prepared(
            {t: functools.partial(s.save, session) for t, s in stores.items()},
            lambda: raw.set(scratch, blob, expire=1800),
            close,
        )
    if state == "refault":
        return Prepared(
            {t: functools.partial(_after_a_fault, s, sid) for t, s in stores.items()},
            lambda: raw.get(key),
            close,
        )
    return Prepared(
        {t: functools.partial(s.start, sid) for t, s in stores.items()},
        lambda: raw.get(key),
        close,
    )


def _after_a_fault(target: MemcacheSessionStore, sid: str) -> object:
    """``start(sid)`` right after a fault mark: the session's first read since a fault."""
    target._core.faults.mark()
    return target.start(sid)
