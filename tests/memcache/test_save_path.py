"""The usual save's short path (one round to the home nodes) against the general write
path: the same stored records, acknowledgements, remembered state and outcomes,
healthy and under faults that make the short path fall back."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import MemcacheSessionStore, Outcome, Session, _machine_write
from errpolicy_memcache._core import Known
from errpolicy_memcache._envelope import Keyring, Record, decode, normalize_keys
from errpolicy_memcache._ids import new_session_id, storage_key
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, SECRET, Ranked

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes

MakeStore = Callable[..., MemcacheSessionStore]
# Faults between saves: (the session's ranked servers) -> None.
Step = Callable[[list[MemcachedServer]], None]
NOW = 1_700_000_000.0


def _kill_first(servers: list[MemcachedServer]) -> None:
    servers[0].kill()


def _pause_second(servers: list[MemcachedServer]) -> None:
    servers[1].pause()


def _nothing(servers: list[MemcachedServer]) -> None:
    return None


class Observer:
    """What one run left behind, with versions, writers and addresses made comparable
    across runs (versions by their order, nodes by their rank for the session)."""

    def __init__(self, servers: list[MemcachedServer]) -> None:
        self.servers = servers
        self.versions: list[int] = []

    def version(self, version: int | None) -> int | None:
        if version is None or version == 0:
            return version
        if version not in self.versions:
            self.versions.append(version)
            self.versions.sort()
        return self.versions.index(version) + 1

    def node(self, address: str | None) -> int | None:
        addresses = [server.address for server in self.servers]
        return None if address is None else addresses.index(address)

    def nodes(self, addresses: frozenset[str]) -> list[int]:
        return sorted(self.servers.index(s) for s in self.servers if s.address in addresses)

    def record(self, record: Record) -> tuple[Any, ...]:
        return (
            self.version(record.version),
            record.tombstone,
            record.created,
            record.written,
            record.ttl,
            record.payload,
        )

    def outcome(self, outcome: Outcome) -> tuple[Any, ...]:
        return (
            outcome.operation,
            outcome.kind,
            sorted(outcome.flags),
            self.node(outcome.served_by),
            [(self.node(r.node), r.command, r.status) for r in outcome.nodes],
            self.version(outcome.version),
        )

    def known(self, store: MemcacheSessionStore, known: Known) -> tuple[Any, ...]:
        acked = known.acked
        assert acked is not None
        assert 0 < acked.at <= store._core._faults.now()
        verified = None if known.verified is None else self.record(known.verified[1])
        return (
            (self.version(acked.version), acked.tombstone, self.nodes(acked.holders)),
            verified,
            self.nodes(known.strays),
        )

    def stored(self, key: str) -> list[tuple[Any, ...] | None]:
        keys = Keyring(normalize_keys(SECRET))
        copies: list[tuple[Any, ...] | None] = []
        for server in self.servers:
            if not server.running or server.paused:
                copies.append(None)
                continue
            client = Client((server.host, server.port), connect_timeout=2, timeout=2)
            try:
                blob = client.get(key)
            finally:
                client.close()
            copies.append(None if blob is None else self.record(decode(blob, key, keys)))
        return copies

    def hints(self, store: MemcacheSessionStore) -> list[tuple[Any, ...]]:
        hinted: list[tuple[Any, ...]] = []
        for (address, key), (command, _until) in store._handoff._hints.items():
            hinted.append((self.node(address), key, command.name, command.ttl))
        return sorted(hinted, key=repr)


def _run(
    make_store: MakeStore,
    cluster: MemcachedCluster,
    servers: list[MemcachedServer],
    sid: str,
    steps: list[Step],
    *,
    short: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> list[Any]:
    """Save the session once, then once after each step; what the run left behind."""
    for server in cluster.servers:
        server.restart()  # empty, running, answering
    outcomes: list[Outcome] = []
    store = make_store(cluster, on_outcome=outcomes.append, clock=lambda: NOW)
    if not short:  # the general path alone: the short path never sends its round
        # The short round is taken only when every home breaker is CLOSED: no state is.
        monkeypatch.setattr(_machine_write, "BreakerState", SimpleNamespace(CLOSED=object()))
    observe = Observer(servers)
    session = Session(sid, created=NOW)
    seen: list[Any] = []
    for n, step in enumerate([_nothing, *steps]):
        step(servers)
        session["n"] = n
        store.save(session)
        seen.append((session.new, session.modified, observe.version(session.version)))
    seen.append([observe.outcome(outcome) for outcome in outcomes])
    seen.append(observe.known(store, store._core._known[sid]))
    seen.append(observe.hints(store))
    seen.append(observe.stored(storage_key(PREFIX, sid)))  # a hung node's copy: None
    return seen


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([_nothing], id="healthy"),
        pytest.param([_kill_first], id="a home node killed"),
        pytest.param([_kill_first, _nothing, _nothing], id="a home node killed, breaker opens"),
        pytest.param([_pause_second], id="a home node hung", marks=pytest.mark.hangs),
    ],
)
def test_the_short_save_leaves_what_the_general_path_leaves(
    make_store: MakeStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    steps: list[Step],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The short save and the general path store, acknowledge, remember and report the same."""
    sid = new_session_id()
    servers = ranked(cluster, sid)
    try:
        general = _run(
            make_store, cluster, servers, sid, steps, short=False, monkeypatch=monkeypatch
        )
        monkeypatch.undo()
        short = _run(make_store, cluster, servers, sid, steps, short=True, monkeypatch=monkeypatch)
    finally:
        for server in servers:
            if server.paused:
                server.resume()
    assert general == short


def test_the_short_save_is_taken_when_the_home_nodes_are_healthy(
    make_store: MakeStore, cluster: MemcachedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save with its home nodes healthy writes them in one round, without the general path."""
    store = make_store(cluster)
    session = store.start(None)
    session["n"] = 1
    rounds: list[int] = []

    def general(op: Any, writes: Any) -> Any:
        rounds.append(len(writes))
        yield from ()

    monkeypatch.setattr(store._core, "_write", general)
    store.save(session)
    assert ([], False) == (rounds, session.new)
