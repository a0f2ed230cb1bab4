"""Records with a valid MAC but fields this store could never have written (a leaked
key, a bug in another version): each is rejected at decode like a bad MAC, so the
request gets a new session and an "invalid" event, and nothing in the process breaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import MemcacheSessionStore, NodeStatus, Outcome, OutcomeKind
from errpolicy_memcache._envelope import (
    MAX_TTL,
    MAX_VERSION,
    EnvelopeError,
    Record,
    decode,
    encode,
    normalize_keys,
)
from errpolicy_memcache._ids import new_session_id, storage_key
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, SECRET, saved

SKEY = storage_key(PREFIX, new_session_id())
(KEY,) = normalize_keys(SECRET)
NOW = 1_800_000_000.0


def signed(
    *,
    version: int = 7,
    created: float = NOW,
    written: float = NOW,
    ttl: int = 1800,
    payload: bytes | None = b'{"user":1}',
    key: str = SKEY,
) -> bytes:
    """A record signed with the real key, its fields as given (bad ones included)."""
    return encode(Record(version, "w1", created, written, ttl, payload), key, KEY)


BAD_FIELDS: dict[str, dict[str, Any]] = {
    "version-2**64-2": {"version": 2**64 - 2},
    "version-0": {"version": 0},
    "ttl-2**32-1": {"ttl": 2**32 - 1},
    "written-in-year-3000": {"written": 32_503_680_000.0},
    "payload-not-json": {"payload": b"{not json"},
    "payload-a-list": {"payload": b"[1, 2]"},
    "payload-nan": {"payload": b'{"a": NaN}'},
    "payload-too-deep": {"payload": b'{"a":' + b"[" * 40 + b"]" * 40 + b"}"},
    "payload-not-utf8": {"payload": b'{"a": "\xff"}'},
}


@pytest.mark.parametrize("fields", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_decode_rejects_a_signed_record_with_a_bad_field(fields: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        decode(signed(**fields), SKEY, [KEY])


@pytest.mark.parametrize(
    "fields",
    [{"version": MAX_VERSION}, {"ttl": MAX_TTL}, {"version": 1, "ttl": 0}],
    ids=["highest-version", "longest-ttl", "lowest"],
)
def test_decode_takes_the_limits_themselves(fields: dict[str, Any]) -> None:
    assert {"user": 1} == decode(signed(**fields), SKEY, [KEY]).data


# -- through the store, over real memcached -----------------------------------------------


def planted(
    cluster: MemcachedCluster, raw: Callable[[MemcachedServer], Client], sid: str, blob: bytes
) -> None:
    """``blob`` under the session's key on every node (where the store looks for it)."""
    for server in cluster.servers:
        assert raw(server).set(storage_key(PREFIX, sid), blob, noreply=False)


@pytest.mark.memcached
@pytest.mark.parametrize("fields", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_signed_record_with_a_bad_field_gives_a_new_session_and_an_event(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    raw: Callable[[MemcachedServer], Client],
    outcomes: list[Outcome],
    fields: dict[str, Any],
) -> None:
    """As for a bad MAC: a new session with a fresh id, and the read reports "invalid"."""
    sid = new_session_id()
    planted(cluster, raw, sid, signed(key=storage_key(PREFIX, sid), **fields))
    session = store.start(sid)
    assert (True, False, {}) == (session.new, session.id == sid, dict(session))
    assert OutcomeKind.INVALID in outcomes[-1].flags
    assert NodeStatus.INVALID in {result.status for result in outcomes[-1].nodes}


@pytest.mark.memcached
def test_a_huge_signed_version_does_not_break_later_saves(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    raw: Callable[[MemcachedServer], Client],
) -> None:
    """Version 2**64-2, served and saved twice, once made every later save of the process
    fail (struct.error): now it is not served, and the saves go on."""
    sid = new_session_id()
    planted(cluster, raw, sid, signed(key=storage_key(PREFIX, sid), version=2**64 - 2))
    session = store.start(sid)
    session["a"] = 1
    store.save(session)
    store.save(session)
    other = saved(store, b=2)
    assert ({"a": 1}, {"b": 2}) == (dict(store.start(session.id)), dict(store.start(other.id)))
