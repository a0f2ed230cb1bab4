"""Stress: the store's shared state under heavy thread contention (16 threads, a thread
switch every microsecond), for what docs/design.md's free-threading audit calls safe:
the breakers, and a store's per-id memory while threads save and read.

Bounded by counts, not by time; each asserts exact outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from tests.threads import THREADS, run_threads, switch_often

from errpolicy_memcache import BreakerState, CircuitBreaker, MemcacheSessionStore, _machine
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import saved


@pytest.fixture(autouse=True)
def contention() -> Iterator[None]:
    """Switch threads as often as the interpreter allows."""
    with switch_often():
        yield


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_failure_of_16_threads_is_counted() -> None:
    """16 threads x 500 failures: the breaker opens, and counts all 8,000."""
    breaker = CircuitBreaker(5, backoff=2.0, max_backoff=2.0, clock=Clock())

    def fail(i: int) -> None:
        for _ in range(500):
            breaker.failure()

    run_threads(fail)
    assert (BreakerState.OPEN, 8000) == (breaker.state, breaker.failures)


def test_one_probe_per_backoff_among_16_threads() -> None:
    """100 times over: the backoff elapses, 16 threads ask to probe at once, exactly one
    gets the probe; its failure opens the breaker again."""
    clock = Clock()
    breaker = CircuitBreaker(1, backoff=2.0, max_backoff=2.0, clock=clock)
    breaker.failure()
    grants = []
    for _ in range(100):
        clock.now += 2.0
        allowed = run_threads(lambda i: breaker.probe())
        grants.append(allowed.count(True))
        breaker.failure()
    assert [1] * 100 == grants


def test_successes_racing_failures_leave_a_consistent_breaker() -> None:
    """8 threads failing and 8 succeeding 500 times each end in a state their counts allow;
    one success then closes the breaker and lets calls through."""
    breaker = CircuitBreaker(3, backoff=2.0, max_backoff=2.0, clock=Clock())

    def work(i: int) -> None:
        for _ in range(500):
            if i % 2:
                breaker.success()
            else:
                breaker.failure()

    run_threads(work)
    state, failures = breaker.state, breaker.failures
    assert (state is BreakerState.CLOSED and failures < 3) or (
        state is BreakerState.OPEN and failures >= 1
    ), (state, failures)
    breaker.success()
    assert (BreakerState.CLOSED, 0, True) == (breaker.state, breaker.failures, breaker.allow())


@pytest.mark.memcached
def test_the_per_id_memory_under_concurrent_saves_and_reads(
    cluster: MemcachedCluster,
    make_store: Callable[..., MemcacheSessionStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """16 threads save and read back their own sessions (the store remembers 8 ids, so
    they evict each other all the time) while one session, saved 60 times by one thread,
    is read by all: each thread reads exactly what it saved last, and never an older
    save of the shared session than it read before."""
    monkeypatch.setattr(_machine, "_VERIFIED_MAX", 8)
    store = make_store(cluster)
    shared = saved(store, n=0)

    def work(i: int) -> list[str]:
        wrong: list[str] = []
        own = [saved(store, who="") for _ in range(3)]
        last_n = 0
        for k in range(60):
            if i == 0:
                shared["n"] = k + 1
                store.save(shared)
            session = own[k % 3]
            session["who"] = f"{i}.{k}"
            store.save(session)
            read = store.start(session.id)
            if read.get("who") != f"{i}.{k}":
                wrong.append(f"{i}.{k} read {read.get('who')!r}")
            n = store.start(shared.id)["n"]
            if n < last_n:
                wrong.append(f"{i}.{k} read n={n} after n={last_n}")
            last_n = n
        return wrong

    assert [[]] * THREADS == run_threads(work)
    assert 60 == store.start(shared.id)["n"]


def test_the_longest_lifetime_wins_among_racing_threads(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """600 times over: 16 threads note copies of 16 lifetimes at once; how long reads stay
    careful after a fault is the longest of them, never a shorter one written last."""
    store = make_store(cluster)
    outcomes = []
    for _ in range(600):
        store._core._settle_after = 0.0
        run_threads(lambda i: store._core._note_lifetime(SimpleNamespace(ttl=1000 + i)))  # type: ignore[arg-type]
        outcomes.append(store._core._settle_after)
    assert [1015.0] * 600 == outcomes
