"""What the demo explains: why the store answered 503, when users were served again,
and how many notices were recorded over time. Values in, values out: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._traffic import KEPT, LOGIN, UNAVAILABLE, Sample

#: The outcome kinds a default policy raises, so the user gets a 503: what each means.
REFUSAL_REASONS = {
    "possibly_stale": "a node that may hold a newer copy had not answered yet",
    "partial_miss": "no copy found while a node that may hold one did not answer",
    "unavailable": "no node could answer",
    "lock_timeout": "another request held the session's lock",
}


def refusals(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The 503-causing outcomes counted between two ``{kind: count}`` snapshots of the
    store's stats (summed over its operations), by kind; kinds with none are left out."""
    return {
        kind: after.get(kind, 0) - before.get(kind, 0)
        for kind in REFUSAL_REASONS
        if after.get(kind, 0) > before.get(kind, 0)
    }


def served_again_at(samples: Sequence[Sample]) -> float | None:
    """The time of the phase's last 503, after which every request was served; None if
    the phase had no 503 or ended without being served again."""
    last_refused = None
    for sample in samples:
        if sample.outcome == UNAVAILABLE:
            last_refused = sample.t
    if last_refused is None:
        return None
    after = [s for s in samples if s.t > last_refused]
    if not after or any(s.outcome not in (KEPT, LOGIN) for s in after):
        return None
    return last_refused


def explain_503s(
    phase: str, unavailable: int, reasons: Mapping[str, int], recovered_after: float | None
) -> str:
    """One line saying why a phase's 503s were allowed: the store's reasons, and when
    every user was served again (seconds into the phase)."""
    if reasons:
        why = "; ".join(
            f"{kind} {n}: {REFUSAL_REASONS[kind]}" for kind, n in sorted(reasons.items())
        )
    else:
        why = "the store's reasons were not counted"
    line = f"{phase}: {unavailable} clean 503s counted as ok ({why})"
    if recovered_after is not None:
        line += f"; every user served again {recovered_after:.1f} s into the phase"
    return line + "."


def rate(times: Sequence[float], start: float, end: float, width: float) -> list[tuple[float, int]]:
    """``(bin start, count)`` of ``times`` in bins of ``width`` seconds from ``start``
    to ``end``: the notices' rate for the plot."""
    if end <= start or width <= 0:
        return []
    bins = [0] * (int((end - start) / width) + 1)
    for t in times:
        if start <= t <= end:
            bins[int((t - start) / width)] += 1
    return [(start + i * width, n) for i, n in enumerate(bins)]
