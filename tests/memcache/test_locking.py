"""Optional per-session locking: memcached add, bounded waits, a WARNING on timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable

import errpolicy
import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import MemcacheSessionStore, Outcome, OutcomeKind
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, Ranked, saved

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes


@pytest.fixture
def locking(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> Callable[..., MemcacheSessionStore]:
    """Stores with locking on (two of them act as two processes)."""

    def make(**options: object) -> MemcacheSessionStore:
        settings: dict[str, object] = {"locking": True, "lock_timeout": 5.0}
        settings.update(options)
        return make_store(cluster, **settings)

    return make


def test_start_takes_the_lock(locking: Callable[..., MemcacheSessionStore]) -> None:
    """With locking on, a loaded session holds its lock."""
    store = locking()
    assert store.start(saved(store, n=0).id).locked


def test_a_held_lock_times_out_with_a_warning(
    locking: Callable[..., MemcacheSessionStore],
) -> None:
    """A second request that cannot get the lock in time raises (WARNING, default policy)."""
    first = locking()
    sid = saved(first, n=0).id
    first.start(sid)
    with pytest.raises(errpolicy.PolicyViolation):
        locking(lock_timeout=0.05).start(sid)


@pytest.mark.usefixtures("relaxed")
def test_a_lock_timeout_is_reported_and_the_session_is_unlocked(
    locking: Callable[..., MemcacheSessionStore], outcomes: list[Outcome]
) -> None:
    """Under a relaxed policy the session loads unlocked, and the outcome is LOCK_TIMEOUT."""
    first = locking()
    sid = saved(first, n=0).id
    first.start(sid)
    loaded = locking(lock_timeout=0.05).start(sid)
    assert (False, OutcomeKind.LOCK_TIMEOUT) == (loaded.locked, outcomes[-1].kind)


def test_save_releases_the_lock(locking: Callable[..., MemcacheSessionStore]) -> None:
    """After the holder saves, another request gets the lock at once."""
    first = locking()
    sid = saved(first, n=0).id
    held = first.start(sid)
    first.save(held)
    assert locking(lock_timeout=0.05).start(sid).locked


def test_release_frees_the_lock_without_saving(
    locking: Callable[..., MemcacheSessionStore],
) -> None:
    """release() lets the next request in without writing."""
    first = locking()
    sid = saved(first, n=0).id
    held = first.start(sid)
    first.release(held)
    assert (False, True) == (held.locked, locking(lock_timeout=0.05).start(sid).locked)


def test_concurrent_increments_are_not_lost(
    locking: Callable[..., MemcacheSessionStore],
) -> None:
    """4 threads x 25 read-increment-save cycles under the lock end at exactly 100."""
    store = locking()
    sid = saved(store, n=0).id
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                session = store.start(sid)
                session["n"] += 1
                store.save(session)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ([], 100) == (errors, store.start(sid)["n"])


@pytest.mark.usefixtures("strict_start")
def test_a_start_that_raises_releases_its_lock(
    locking: Callable[..., MemcacheSessionStore],
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Callable[[MemcachedServer], Client],
) -> None:
    """If the policy raises after the lock was taken, the lock is released."""
    store = locking()
    sid = saved(store, n=0).id
    primary, second, _ = ranked(cluster, sid)
    second.kill()
    with pytest.raises(errpolicy.PolicyViolation):
        store.start(sid)  # locked on the primary, then a failover notice, raised here
    assert None is raw(primary).get(storage_key(PREFIX, sid) + ":lock")


def test_an_error_during_the_read_releases_the_lock(
    locking: Callable[..., MemcacheSessionStore],
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Callable[[MemcachedServer], Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception between taking the lock and returning the session (here a failing
    judgement) releases the lock: the caller never got the session to release it."""
    store = locking()
    sid = saved(store, n=0).id
    primary = ranked(cluster, sid)[0]

    def broken(*args: object) -> None:
        raise RuntimeError("judging failed")

    monkeypatch.setattr(store._core, "_judge_read", broken)
    with pytest.raises(RuntimeError):
        store.start(sid)
    assert None is raw(primary).get(storage_key(PREFIX, sid) + ":lock")
