"""Export a store's counts to Prometheus (``pip install 'errpolicy[prometheus]'``).

:class:`StoreCollector` reads ``store.stats()`` when Prometheus scrapes, so the store's
requests pay nothing for the export::

    from errpolicy_memcache.prometheus import register
    register(store)            # on prometheus_client's default registry

Metrics (``store`` label: the name given, to tell several stores apart):

- ``errpolicy_memcache_operations_total{operation, outcome}``: counter (the decisive kind)
- ``errpolicy_memcache_operation_flags_total{operation, flag}``: counter (each flag an
  operation carried: a failover that also repaired counts under both)
- ``errpolicy_memcache_node_results_total{node, status}``: counter
- ``errpolicy_memcache_breaker_open{node}``: gauge, 1 while the node's breaker is
  open or half-open (the node is skipped), else 0
- ``errpolicy_memcache_operation_seconds{operation}``: histogram
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ._breaker import BreakerState
from ._errors import MissingDependency

if TYPE_CHECKING:
    from ._metrics import StoreStats


__all__ = ["Counted", "StoreCollector", "register"]

_PREFIX = "errpolicy_memcache"


class Counted(Protocol):
    """What the collector reads: a store's ``stats()`` (the sync and the async store)."""

    def stats(self) -> StoreStats: ...


def _core() -> Any:
    try:
        from prometheus_client import core
    except ModuleNotFoundError as exc:
        if exc.name != "prometheus_client":
            raise
        raise MissingDependency(
            "prometheus_client", "prometheus", "needed to export the store's metrics"
        ) from exc
    return core


def _bound(seconds: float) -> str:
    return "+Inf" if seconds == math.inf else repr(seconds)


class StoreCollector:
    """A prometheus_client collector for one store; see the module's docstring."""

    def __init__(self, store: Counted, name: str = "default") -> None:
        self._core = _core()
        self.store = store
        self.name = name

    def __repr__(self) -> str:
        return f"StoreCollector({self.store!r}, name={self.name!r})"

    def describe(self) -> list[Any]:
        """Nothing up front: the label values are known only at scrape time."""
        return []

    def _counter(
        self,
        name: str,
        documentation: str,
        label: str,
        rows: Iterable[tuple[str, str, int]],
        *,
        first: str = "operation",
    ) -> Any:
        """A counter family ``errpolicy_memcache_<name>_total`` with the labels ``store``,
        ``first`` and ``label``, one sample per ``(first, label, count)`` row."""
        family = self._core.CounterMetricFamily(
            f"{_PREFIX}_{name}", documentation, labels=["store", first, label]
        )
        for a, b, n in sorted(rows):
            family.add_metric([self.name, a, b], n)
        return family

    def collect(self) -> Iterator[Any]:
        """The store's counts now, as metric families."""
        core = self._core
        stats = self.store.stats()
        yield self._counter(
            "operations",
            "Logical store operations by outcome kind.",
            "outcome",
            ((op, kind.value, n) for (op, kind), n in stats.outcomes.items()),
        )
        yield self._counter(
            "operation_flags",
            "Logical store operations that carried each flag (failover, repaired, ...),"
            " whatever their decisive outcome.",
            "flag",
            ((op, flag.value, n) for (op, flag), n in stats.flags.items()),
        )
        yield self._counter(
            "node_results",
            "Each node's answers to the store's commands, by status.",
            "status",
            ((node, status.value, n) for (node, status), n in stats.node_results.items()),
            first="node",
        )
        breakers = core.GaugeMetricFamily(
            f"{_PREFIX}_breaker_open",
            "1 while the node's circuit breaker is open or half-open (the node is skipped).",
            labels=["store", "node"],
        )
        for node, state in stats.breakers.items():
            breakers.add_metric([self.name, node], 0 if state is BreakerState.CLOSED else 1)
        yield breakers
        latency = core.HistogramMetricFamily(
            f"{_PREFIX}_operation_seconds",
            "Time of each logical store operation.",
            labels=["store", "operation"],
        )
        for operation, histogram in sorted(stats.latency.items()):
            buckets = [(_bound(le), n) for le, n in histogram.cumulative()]
            latency.add_metric([self.name, operation], buckets, histogram.total)
        yield latency


def register(store: Counted, registry: Any = None, *, name: str = "default") -> StoreCollector:
    """Register a :class:`StoreCollector` for ``store`` on ``registry`` (prometheus_client's
    default ``REGISTRY`` when None) and return it; :class:`MissingDependency` names the
    ``prometheus`` extra when prometheus_client is not installed."""
    collector = StoreCollector(store, name)
    if registry is None:
        registry = collector._core.REGISTRY
    registry.register(collector)
    return collector
