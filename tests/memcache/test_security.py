"""Security: hostile ids never reach the server, tampered records are rejected, size limits."""

from __future__ import annotations

from collections.abc import Callable

import errpolicy
import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import (
    MemcacheSessionStore,
    NodeStatus,
    Outcome,
    OutcomeKind,
    Session,
    SessionTooLarge,
)
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, Counters, Ranked, saved, statuses

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes


HOSTILE = [
    "a\r\nflush_all",
    "a\r\nflush_all\r\n",
    "x" * 10_000,
    "é" * 43,
    "ü" * 10,
    " " * 43,
    "\x00" * 43,
    "../../etc/passwd",
]


def totals(cluster: MemcachedCluster, counters: Counters) -> list[int]:
    return [sum(counters(s)[name] for s in cluster.servers) for name in ("cmd_get", "cmd_set")]


@pytest.mark.parametrize("sid", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_ids_give_a_new_session(store: MemcacheSessionStore, sid: str) -> None:
    """A malformed or hostile id yields a new session with a fresh id."""
    session = store.start(sid)
    assert (True, False) == (session.new, session.id == sid)


def test_hostile_ids_never_reach_the_server(
    store: MemcacheSessionStore, cluster: MemcachedCluster, counters: Counters
) -> None:
    """No get or set is sent for any hostile id, on any node."""
    before = totals(cluster, counters)
    for sid in HOSTILE:
        store.start(sid)
        store.exists(sid)
        store.delete(sid)
    assert before == totals(cluster, counters)


def test_an_injected_flush_all_does_not_run(
    store: MemcacheSessionStore, cluster: MemcachedCluster
) -> None:
    """After start("a\\r\\nflush_all"), existing sessions are still there."""
    session = saved(store, a=1)
    store.start("a\r\nflush_all")
    assert {"a": 1} == dict(store.start(session.id))


def test_the_raw_id_is_not_a_key_on_the_server(
    store: MemcacheSessionStore, cluster: MemcachedCluster, raw: Callable[[MemcachedServer], Client]
) -> None:
    """The id is stored only hashed: a get by the raw id finds nothing anywhere."""
    session = saved(store, a=1)
    assert [None, None, None] == [raw(s).get(session.id) for s in cluster.servers]


def tamper(server: MemcachedServer, key: str, raw: Callable[[MemcachedServer], Client]) -> None:
    client = raw(server)
    blob = bytearray(client.get(key))
    blob[-3] ^= 0x01  # inside the JSON, after the MAC
    client.set(key, bytes(blob), expire=600, noreply=False)


def tampered_everywhere(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Callable[[MemcachedServer], Client],
) -> Session:
    """A saved session whose copies on both of its home nodes were then tampered with."""
    session = saved(store, user_id=1)
    key = storage_key(PREFIX, session.id)
    for server in ranked(cluster, session.id)[:2]:
        tamper(server, key, raw)
    return session


def test_a_tampered_record_restarts_the_session(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Callable[[MemcachedServer], Client],
) -> None:
    """With every copy tampered with, start() gives a new session with a fresh id."""
    session = tampered_everywhere(store, cluster, ranked, raw)
    loaded = store.start(session.id)
    assert (True, 0, False) == (loaded.new, len(loaded), loaded.id == session.id)


def test_a_tampered_record_is_reported(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Callable[[MemcachedServer], Client],
    outcomes: list[Outcome],
) -> None:
    """The rejection is an INVALID outcome, a NOTICE, with each copy marked invalid
    (and the third node, asked because no home copy was valid, a miss)."""
    session = tampered_everywhere(store, cluster, ranked, raw)
    store.start(session.id)
    got = outcomes[-1]
    expected_nodes = [NodeStatus.INVALID, NodeStatus.INVALID, NodeStatus.MISS]
    assert (OutcomeKind.INVALID, errpolicy.NOTICE, expected_nodes) == (
        got.kind,
        got.level,
        [r.status for r in got.nodes],
    )


def test_one_tampered_copy_is_outvoted_and_repaired(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Callable[[MemcachedServer], Client],
    outcomes: list[Outcome],
) -> None:
    """With one copy tampered with, the valid copy serves and overwrites it."""
    session = saved(store, user_id=1)
    key = storage_key(PREFIX, session.id)
    primary = ranked(cluster, session.id)[0]
    tamper(primary, key, raw)
    loaded = store.start(session.id)
    assert ({"user_id": 1}, [NodeStatus.INVALID, NodeStatus.STORED]) == (
        dict(loaded),
        statuses(outcomes[-1], primary),
    )


def test_a_record_signed_with_another_secret_is_rejected(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """A store with a different secret cannot read (or forge) the sessions."""
    session = saved(make_store(cluster), user_id=1)
    other = make_store(cluster, secret_key="another-secret-0123456789abcdef")
    assert other.start(session.id).new


def test_key_rotation_keeps_sessions(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """Sessions signed with the old key load after the new key is put first."""
    old = "old-secret-0123456789abcdef-xyz"
    session = saved(make_store(cluster, secret_key=old), user_id=1)
    rotated = make_store(cluster, secret_key=["new-secret-0123456789abcdef-xyz", old])
    assert {"user_id": 1} == dict(rotated.start(session.id))


def test_oversize_session_is_a_typed_error(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """A record over max_size raises SessionTooLarge with its size and the limit."""
    store = make_store(cluster, max_size=1000)
    session = store.start(None)
    session["blob"] = "x" * 2000
    with pytest.raises(SessionTooLarge) as info:
        store.save(session)
    assert (True, 1000) == (info.value.size > 2000, info.value.limit)


def test_oversize_session_sends_nothing(
    cluster: MemcachedCluster,
    make_store: Callable[..., MemcacheSessionStore],
    counters: Counters,
) -> None:
    """The size is checked before sending: no node sees a set."""
    store = make_store(cluster, max_size=1000)
    session = store.start(None)
    session["blob"] = "x" * 2000
    before = totals(cluster, counters)
    with pytest.raises(SessionTooLarge):
        store.save(session)
    assert before == totals(cluster, counters)


def test_oversize_session_loses_nothing(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """After the refused save, the stored copy and the in-memory data are intact."""
    store = make_store(cluster, max_size=1000)
    session = saved(store, user_id=1)
    session["blob"] = "x" * 2000
    with pytest.raises(SessionTooLarge):
        store.save(session)
    assert (1, {"user_id": 1}) == (session["user_id"], dict(store.start(session.id)))


def test_the_default_limit_fits_memcached(store: MemcacheSessionStore) -> None:
    """A 200 kB session saves and loads with the default limit (256 KiB)."""
    session = saved(store, blob="y" * 200_000)
    assert 200_000 == len(store.start(session.id)["blob"])
