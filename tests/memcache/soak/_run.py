"""One soak run: nodes, two stores, eight workers, the nemesis; then the checker."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import errpolicy

from errpolicy_memcache import MemcacheSessionStore

from . import _archive
from ._checker import VIOLATIONS, Report, Verdict, check
from ._history import NodeEvent, Op, Probe, Recorder, Timeline, thaw
from ._load import Collection, Sample, Sampler
from ._nemesis import Nodes
from ._probes import held_open, watch
from ._recovery import Recovery, median, recoveries, slowest
from ._scenarios import SCENARIOS
from ._workload import Outcomes, Worker

SECRET = "soak-secret-key-0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Result:
    """A scenario's history, the checker's report and the recovery windows;
    ``recovered`` is False if some session was still unreadable when the final sweep
    gave up."""

    scenario: str
    seconds: float
    report: Report
    recovered: bool
    windows: tuple[Recovery, ...]
    ops: tuple[Op, ...]
    events: tuple[NodeEvent, ...]
    t0: float
    nodes: tuple[str, ...] = ()
    evicting: frozenset[str] = frozenset()
    samples: tuple[Sample, ...] = ()
    collections: tuple[Collection, ...] = ()
    probes: tuple[Probe, ...] = ()

    def row(self) -> list[str]:
        """The scenario's line in the table."""
        report = self.report
        refused = sum(report.refused.values())
        worst, middle = slowest(self.windows), median(self.windows)
        recovery = "-"
        if worst is not None and middle is not None:
            recovery = f"{middle:.2f} / {worst.seconds:.2f} s ({len(self.windows)})"
        if not self.recovered:
            recovery += " (not recovered)"
        healthy = sum(window.refused + window.timed_out for window in self.windows)
        timed_out = sum(window.timed_out for window in self.windows)
        waited = max((window.waited for window in self.windows), default=0.0)
        return [
            self.scenario,
            str(len(self.ops)),
            str(len(self.events)),
            str(refused),
            str(healthy),
            f"{timed_out} ({waited:.2f} s)" if timed_out else "0",
            str(report.unknown_writes),
            str(report.ghost_reads),
            *(str(report.count(v)) for v in VIOLATIONS),
            str(report.count(Verdict.UNPROVED_STALE) + report.count(Verdict.UNPROVED_RESURRECTED)),
            str(report.count(Verdict.ALLOWED_LOSS)),
            recovery,
        ]


HEADER = [
    "scenario",
    "ops",
    "faults",
    "refused",
    "refused, all up",
    "of which timed out (slowest)",
    "unknown writes",
    "ghost reads",
    *(v.value for v in VIOLATIONS),
    "unproved",
    "allowed loss",
    "recovery: median / slowest (windows)",
]


def table(results: list[Result]) -> str:
    """A Markdown table, one row per scenario."""
    rows = [HEADER, ["---"] * len(HEADER), *(result.row() for result in results)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def run(
    scenario: str,
    seconds: float,
    *,
    seed: int = 0,
    workers: int = 8,
    transport: str = "pymemcache",
    sweep_limit: float = 10.0,
) -> Result:
    """Run ``scenario`` for ``seconds`` of faults, then a recovery sweep of at most
    ``sweep_limit`` seconds, and check the history."""
    spec = SCENARIOS[scenario]
    recorder = Recorder()
    previous = errpolicy.get_config()
    errpolicy.configure(sink=errpolicy.NullSink())  # one notice per failover: keep them quiet
    try:
        with Nodes(recorder, spec.nodes, spec.evicting) as nodes:
            outcomes = {"A": Outcomes(), "B": Outcomes()}
            stores = {
                name: MemcacheSessionStore(
                    nodes.addresses,
                    SECRET,
                    replicas=2,
                    transport=transport,
                    on_outcome=outcomes[name],
                )
                for name in outcomes
            }
            for name, store in stores.items():
                watch(store, name, recorder)
            crew = [Worker(i, stores, outcomes, recorder, seed=seed) for i in range(workers)]
            healed = threading.Event()
            stop = threading.Event()
            threads = [
                threading.Thread(target=w.run, args=(healed, stop), daemon=True) for w in crew
            ]
            sampler = Sampler().start()
            t0 = time.monotonic()
            for thread in threads:
                thread.start()
            deadline = t0 + seconds

            def wait(delay: float) -> bool:
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                return time.monotonic() >= deadline

            try:
                spec.schedule(nodes, random.Random(seed), wait)
            finally:
                nodes.heal()
                healed_at = time.monotonic()
                healed.set()
                end = healed_at + sweep_limit
                for thread in threads:
                    thread.join(timeout=max(0.0, end - time.monotonic()))
                stop.set()
                for thread in threads:
                    thread.join()
                samples, collections = sampler.stop()
                for store in stores.values():
                    store.close()
            recovered = all(sid in worker.ready for worker in crew for sid in worker.live)
            evicting = nodes.evicted()
    finally:
        errpolicy.configure(sink=previous.sink)
        thaw()
    ops, events = tuple(recorder.ops()), tuple(recorder.events())
    nodes_ = tuple(nodes.addresses)
    return judge(
        scenario,
        seconds,
        ops,
        events,
        nodes_,
        evicting,
        recovered,
        t0,
        samples,
        collections,
        tuple(recorder.probes()),
    )


def judge(
    scenario: str,
    seconds: float,
    ops: tuple[Op, ...],
    events: tuple[NodeEvent, ...],
    nodes: tuple[str, ...],
    evicting: frozenset[str],
    recovered: bool,
    t0: float,
    samples: tuple[Sample, ...] = (),
    collections: tuple[Collection, ...] = (),
    probes: tuple[Probe, ...] = (),
) -> Result:
    """Check a history and measure its recovery windows."""
    timeline = Timeline(events, evicting)
    windows = tuple(recoveries(ops, timeline, nodes, held_open(events, probes)))
    report = check(ops, timeline)
    return Result(
        scenario,
        seconds,
        report,
        recovered,
        windows,
        ops,
        events,
        t0,
        nodes,
        evicting,
        samples,
        collections,
        probes,
    )


def save_history(result: Result, path: Path, **extra: Any) -> None:
    """Write ``result``'s history to ``path`` (gzipped JSON lines), with ``extra`` in
    its header (the seed, the commit...)."""
    header = {
        "scenario": result.scenario,
        "seconds": result.seconds,
        "recovered": result.recovered,
        "t0": result.t0,
        "nodes": list(result.nodes),
        "evicting": sorted(result.evicting),
        "samples": [[sample.at, sample.lag, sample.load] for sample in result.samples],
        "collections": [[c.at, c.generation, c.seconds] for c in result.collections],
        **extra,
    }
    _archive.save(path, header, result.ops, result.events, result.probes)


def load_history(path: Path) -> Result:
    """A history written by :func:`save_history`, judged again by the current checker."""
    header, ops, events, probes = _archive.load(path)
    return judge(
        header["scenario"],
        header["seconds"],
        ops,
        events,
        tuple(header["nodes"]),
        frozenset(header["evicting"]),
        header["recovered"],
        header["t0"],
        tuple(Sample(*sample) for sample in header.get("samples", ())),
        tuple(Collection(*found) for found in header.get("collections", ())),
        probes,
    )
