"""Idle TTL with sliding renewal by touch, per-session TTL, and the absolute lifetime."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from errpolicy_memcache import MemcacheSessionStore, NodeStatus, Outcome
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, Ranked, TtlOf, saved

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes


class Clock:
    """Wall-clock time the test moves by hand (memcached keeps its own real clock)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore], clock: Clock
) -> MemcacheSessionStore:
    """A store with idle_ttl=600, absolute_ttl=3600 on the hand-moved clock."""
    return make_store(cluster, idle_ttl=600, absolute_ttl=3600, clock=clock)


def ttls(cluster: MemcachedCluster, ranked: Ranked, ttl_of: TtlOf, sid: str) -> list[int | None]:
    key = storage_key(PREFIX, sid)
    return [ttl_of(server, key) for server in ranked(cluster, sid)[:2]]


def test_save_sets_the_idle_ttl(
    timed: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked, ttl_of: TtlOf
) -> None:
    """Both copies expire after idle_ttl (600 s) on the server."""
    session = saved(timed, a=1)
    assert all(t is not None and 590 <= t <= 600 for t in ttls(cluster, ranked, ttl_of, session.id))


def test_save_with_ttl_sets_this_sessions_ttl(
    timed: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked, ttl_of: TtlOf
) -> None:
    """save(ttl=120) stores the copies for 120 s."""
    session = timed.start(None)
    timed.save(session, ttl=120)
    assert all(t is not None and 110 <= t <= 120 for t in ttls(cluster, ranked, ttl_of, session.id))


def test_a_sessions_ttl_is_remembered(timed: MemcacheSessionStore) -> None:
    """The per-session ttl comes back with the session."""
    session = timed.start(None)
    timed.save(session, ttl=120)
    assert 120 == timed.start(session.id).ttl


def test_no_touch_before_renew_after(
    timed: MemcacheSessionStore, clock: Clock, outcomes: list[Outcome]
) -> None:
    """A read before half the idle TTL has passed does not touch."""
    session = saved(timed, a=1)
    clock.now += 200
    timed.start(session.id)
    assert [] == [r for r in outcomes[-1].nodes if r.command == "touch"]


def test_touch_after_renew_after(
    timed: MemcacheSessionStore, clock: Clock, outcomes: list[Outcome]
) -> None:
    """A read after half the idle TTL touches both copies (no rewrite)."""
    session = saved(timed, a=1)
    clock.now += 400
    timed.start(session.id)
    touched = [r.status for r in outcomes[-1].nodes if r.command == "touch"]
    assert [NodeStatus.TOUCHED, NodeStatus.TOUCHED] == touched


def test_touch_renews_the_server_ttl(
    timed: MemcacheSessionStore,
    cluster: MemcachedCluster,
    clock: Clock,
    ranked: Ranked,
    ttl_of: TtlOf,
    raw: Callable[[MemcachedServer], object],
) -> None:
    """After the renewal the copies have a full idle TTL again."""
    session = saved(timed, a=1)
    key = storage_key(PREFIX, session.id)
    for server in ranked(cluster, session.id)[:2]:
        raw(server).touch(key, 50, noreply=False)  # type: ignore[attr-defined]
    clock.now += 400
    timed.start(session.id)
    assert all(t is not None and t > 500 for t in ttls(cluster, ranked, ttl_of, session.id))


def test_the_absolute_lifetime_ends_the_session(timed: MemcacheSessionStore, clock: Clock) -> None:
    """Past absolute_ttl since creation, start() gives a new session."""
    session = saved(timed, a=1)
    clock.now += 3601
    assert timed.start(session.id).new


def test_saves_keep_the_creation_time(timed: MemcacheSessionStore, clock: Clock) -> None:
    """Saving again does not extend the absolute lifetime."""
    session = saved(timed, a=1)
    clock.now += 3000
    loaded = timed.start(session.id)
    loaded["a"] = 2
    timed.save(loaded)
    clock.now += 601
    assert timed.start(session.id).new


def test_the_ttl_is_capped_by_the_absolute_lifetime(
    timed: MemcacheSessionStore,
    cluster: MemcachedCluster,
    clock: Clock,
    ranked: Ranked,
    ttl_of: TtlOf,
) -> None:
    """A save 3500 s into a 3600 s lifetime stores the copies for at most 100 s."""
    session = saved(timed, a=1)
    clock.now += 3500
    loaded = timed.start(session.id)
    loaded["a"] = 2
    timed.save(loaded)
    assert all(t is not None and t <= 100 for t in ttls(cluster, ranked, ttl_of, session.id))


def test_a_save_past_the_absolute_lifetime_stores_for_a_second(
    timed: MemcacheSessionStore,
    cluster: MemcachedCluster,
    clock: Clock,
    ranked: Ranked,
    ttl_of: TtlOf,
) -> None:
    """A session held past its absolute lifetime and saved expires at once (1 s)."""
    session = saved(timed, a=1)
    loaded = timed.start(session.id)
    clock.now += 3700
    loaded["a"] = 2
    timed.save(loaded)
    assert all(t is None or t <= 1 for t in ttls(cluster, ranked, ttl_of, session.id))
