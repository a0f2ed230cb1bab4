"""The usual save's own counters (``StoreMetrics.saved``) count what the general
``record`` counts: the same outcomes, node results and latency in ``stats()``."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from tests.threads import run_threads, switch_often

from errpolicy_memcache import (
    MemcacheSessionStore,
    NodeStatus,
    OutcomeKind,
    Session,
    _machine_write,
)
from errpolicy_memcache._ids import new_session_id
from errpolicy_memcache._metrics import LATENCY_BUCKETS, StoreMetrics, StoreStats
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import SECRET

Build = Callable[..., MemcacheSessionStore]
HOMES = frozenset({"a:1", "b:1"})
STORED = [("a:1", "set", NodeStatus.STORED, 0.0, ""), ("b:1", "set", NodeStatus.STORED, 0.0, "")]


def _counts(stats: StoreStats) -> tuple[Any, ...]:
    """Everything ``stats`` counts but the seconds' total (a float sum's rounding)."""
    latency = {op: h.counts for op, h in stats.latency.items()}
    return (dict(stats.outcomes), dict(stats.flags), dict(stats.node_results), latency)


@pytest.mark.parametrize("elapsed", [0.0, 0.00007, 0.0003, 0.004, 1.0, 9.0])
def test_a_counted_save_is_what_record_counts(elapsed: float) -> None:
    """saved() of two home nodes counts what record() of their two STORED results counts."""
    general, short = StoreMetrics(), StoreMetrics()
    general.record("session.save", OutcomeKind.OK, STORED, elapsed)
    short.saved(HOMES, elapsed)
    assert _counts(general.snapshot([])) == _counts(short.snapshot([]))


def test_counted_saves_add_to_recorded_ones() -> None:
    """Saves counted both ways add up in one snapshot, with the latency's total."""
    metrics = StoreMetrics()
    metrics.record("session.save", OutcomeKind.OK, STORED, 0.25)
    metrics.saved(HOMES, 0.5)
    metrics.saved(frozenset({"b:1", "c:1"}), 0.5)
    stats = metrics.snapshot([])
    expected = (3, {"a:1": 2, "b:1": 3, "c:1": 1}, 3, 1.25)
    assert expected == (
        stats.count("session.save", OutcomeKind.OK),
        {n: c for (n, s), c in stats.node_results.items() if s is NodeStatus.STORED},
        stats.latency["session.save"].count,
        stats.latency["session.save"].total,
    )


def test_saves_are_counted_exactly_under_threads() -> None:
    """Eight threads counting saves at once, switching every microsecond, lose no count."""
    metrics = StoreMetrics()

    def work(_: int) -> None:
        for _ in range(1000):
            metrics.saved(HOMES, 0.0001)

    with switch_often():
        run_threads(work, 8)
    stats = metrics.snapshot([])
    bucket = LATENCY_BUCKETS.index(0.0001)
    assert (8000, 8000, 8000, 8000) == (
        stats.count("session.save", OutcomeKind.OK),
        stats.node_results[("a:1", NodeStatus.STORED)],
        stats.node_results[("b:1", NodeStatus.STORED)],
        stats.latency["session.save"].counts[bucket],
    )


def _saves(
    build_store: Build, cluster: MemcachedCluster, sids: list[str], *, short: bool
) -> tuple[Any, ...]:
    store = build_store(cluster, secret_key=SECRET)
    sessions = [Session(sid) for sid in sids]
    with pytest.MonkeyPatch.context() as patch:
        if not short:  # the short save is taken only when every home breaker is CLOSED
            patch.setattr(_machine_write, "CLOSED", SimpleNamespace())
        for n, session in enumerate(sessions * 2):
            session["n"] = n
            store.save(session)
    stats = store.stats()
    latency = {op: h.count for op, h in stats.latency.items()}
    return (dict(stats.outcomes), dict(stats.flags), dict(stats.node_results), latency)


@pytest.mark.memcached
def test_the_short_save_counts_what_the_general_path_counts(
    build_store: Build, cluster: MemcachedCluster
) -> None:
    """Twelve saves counted by the short save's counters read as the general path's."""
    sids = [new_session_id() for _ in range(6)]
    general = _saves(build_store, cluster, sids, short=False)
    assert general == _saves(build_store, cluster, sids, short=True)
