"""Per-phase figures and the demo's own checks."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from errpolicy import Event, StdlibSink

from ._explain import served_again_at
from ._phases import Phase
from ._traffic import ERROR, KEPT, LOGIN, LOST, STALE, UNAVAILABLE, Sample


class EventCounter:
    """An errpolicy sink: counts the events the store's guards recorded, per phase,
    and logs each on the stdlib logger ``errpolicy`` (the demo sends that to its log file).
    ``notice_times``: when each NOTICE came, in seconds since ``epoch`` (for the plot)."""

    _MAX_TIMES = 200_000

    def __init__(self, epoch: float | None = None) -> None:
        self._lock = threading.Lock()
        self.phase = "setup"
        self.epoch = time.monotonic() if epoch is None else epoch
        self._counts: dict[str, Counter[str]] = {}
        self.examples: dict[str, str] = {}
        self.notice_times: list[float] = []
        self._log = StdlibSink()

    def __call__(self, event: Event, /) -> None:
        name = event.severity.name or str(event.severity)
        with self._lock:
            self._counts.setdefault(self.phase, Counter())[name] += 1
            self.examples.setdefault(name, f"{event.guard}: {event.message}")
            if name == "NOTICE" and len(self.notice_times) < self._MAX_TIMES:
                self.notice_times.append(time.monotonic() - self.epoch)
        self._log(event)

    def counts(self, phase: str) -> dict[str, int]:
        """Recorded events of ``phase`` by severity name."""
        with self._lock:
            return dict(self._counts.get(phase, Counter()))


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation of one phase, and whether it held."""

    phase: str
    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PhaseStats:
    """What happened in one phase, as shown in the table and written to JSON."""

    name: str
    title: str
    duration_s: float
    users: int
    requests: int
    served: int
    kept: int
    logins: int
    lost: int
    stale: int
    unavailable: int
    errors: int
    notices: int
    recorded: dict[str, int]
    sessions_kept: int
    sessions_lost: int
    recovered: bool
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    #: Items (session copies) the node the phase takes down held just before; None if
    #: it takes none down.
    down_node_copies: int | None = None
    #: The store's reasons for the phase's 503s: outcome kind -> count (see _explain).
    refusals: Mapping[str, int] = field(default_factory=dict)
    #: Seconds into the phase of its last 503, after which every request was served.
    served_again_s: float | None = None
    checks: tuple[Check, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """True when every check of the phase held."""
        return all(check.passed for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        data = asdict(self)
        data["passed"] = self.passed
        return data


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return round(ordered[int(rank) - 1], 2)


def recovered(samples: Sequence[Sample], users: Sequence[str]) -> bool:
    """True when each user's latest request of the phase was served."""
    last: dict[str, str] = {}
    for sample in samples:
        last[sample.user] = sample.outcome
    return all(last.get(user) in (KEPT, LOGIN) for user in users)


def phase_stats(
    phase: Phase,
    samples: Sequence[Sample],
    users: Sequence[str],
    recorded: dict[str, int],
    duration: float,
    down_node_copies: int | None = None,
    *,
    refusals: Mapping[str, int] | None = None,
    started: float = 0.0,
) -> PhaseStats:
    """Figures and checks for one phase's samples; ``down_node_copies``: the session
    copies the node the phase takes down held just before (None: none is taken down);
    ``refusals``: the store's 503 reasons; ``started``: the phase's start on the
    samples' clock."""
    again = served_again_at(samples)
    outcomes = Counter(sample.outcome for sample in samples)
    lost_users = {s.user for s in samples if s.outcome in (LOST, STALE)}
    latencies = [sample.latency_ms for sample in samples]
    stats = PhaseStats(
        name=phase.name,
        title=phase.title,
        duration_s=round(duration, 2),
        users=len(users),
        requests=len(samples),
        served=outcomes[KEPT] + outcomes[LOGIN],
        kept=outcomes[KEPT],
        logins=outcomes[LOGIN],
        lost=outcomes[LOST],
        stale=outcomes[STALE],
        unavailable=outcomes[UNAVAILABLE],
        errors=outcomes[ERROR],
        notices=recorded.get("NOTICE", 0),
        recorded=recorded,
        sessions_kept=len(users) - len(lost_users),
        sessions_lost=len(lost_users),
        recovered=recovered(samples, users),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=round(max(latencies), 2) if latencies else None,
        down_node_copies=down_node_copies,
        refusals=dict(refusals or {}),
        served_again_s=None if again is None else round(again - started, 2),
    )
    checks = _checks(phase, stats, samples)
    return PhaseStats(**{**_fields(stats), "checks": checks})


def _fields(stats: PhaseStats) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in PhaseStats.__dataclass_fields__}


def _first(samples: Sequence[Sample], outcome: str) -> str:
    for sample in samples:
        if sample.outcome == outcome:
            status = sample.status if sample.status is not None else "no answer"
            return f"first: {sample.user} {sample.action} -> {status} {sample.detail}".strip()
    return ""


def _checks(phase: Phase, stats: PhaseStats, samples: Sequence[Sample]) -> tuple[Check, ...]:
    expect = phase.expect
    name = phase.name
    checks = [
        Check(name, "requests were made", stats.requests > 0, f"{stats.requests} requests"),
        Check(name, "no error other than a clean 503", stats.errors == 0, _first(samples, ERROR)),
        Check(
            name, "no stale session (newest copy wins)", stats.stale == 0, _first(samples, STALE)
        ),
    ]
    if not expect.lost:
        checks.append(Check(name, "no session lost", stats.lost == 0, _first(samples, LOST)))
    if expect.all_unavailable:
        checks.append(
            Check(
                name,
                "every request a clean 503, never a fresh empty session",
                stats.requests > 0 and stats.unavailable == stats.requests,
                f"{stats.unavailable} of {stats.requests} were 503",
            )
        )
    elif not expect.unavailable:
        checks.append(Check(name, "no 503", stats.unavailable == 0, _first(samples, UNAVAILABLE)))
    # A node that held no copy is asked by no read of a settled store: nothing fails over.
    if expect.notices and stats.down_node_copies != 0:
        checks.append(
            Check(
                name,
                "failover recorded as notices",
                stats.notices > 0,
                f"{stats.notices} notices recorded",
            )
        )
    if expect.recover:
        checks.append(Check(name, "every user served again by the end", stats.recovered, ""))
    return tuple(checks)
