"""The timeline picture: each request's latency and outcome over time, phases marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._stats import PhaseStats
from ._traffic import ERROR, KEPT, LOGIN, LOST, STALE, UNAVAILABLE, Sample

_STYLE = {
    KEPT: ("tab:green", "o", "session kept"),
    LOGIN: ("tab:blue", "o", "login"),
    UNAVAILABLE: ("tab:orange", "s", "clean 503"),
    LOST: ("tab:red", "X", "session lost"),
    STALE: ("tab:purple", "X", "stale session"),
    ERROR: ("black", "X", "error"),
}


def write_plot(
    path: Path,
    samples: Sequence[Sample],
    phases: Sequence[PhaseStats],
    spans: Sequence[tuple[float, float]],
) -> None:
    """Write a PNG or SVG (by ``path``'s suffix) with matplotlib's Agg backend."""
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"the plot must be a .png or .svg file, not {path.name!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 5), layout="constrained")
    try:
        for index, ((start, end), stats) in enumerate(zip(spans, phases, strict=True)):
            ax.axvspan(start, end, color="0.93" if index % 2 else "0.86", zorder=0)
            ax.text(
                (start + end) / 2,
                1.01,
                stats.name,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        for outcome, (color, marker, label) in _STYLE.items():
            points = [(s.t, max(s.latency_ms, 0.01)) for s in samples if s.outcome == outcome]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            # Failures are rare among thousands of successes: draw them large and on top.
            ok = outcome in (KEPT, LOGIN)
            ax.scatter(
                xs,
                ys,
                s=6 if ok else (18 if outcome == UNAVAILABLE else 60),
                c=color,
                marker=marker,
                label=label,
                zorder=2 if ok else 3,
                alpha=0.7 if ok else 0.9,
            )
        ax.set_yscale("log")
        ax.set_xlabel("seconds since the demo started")
        ax.set_ylabel("request latency (ms, log scale)")
        ax.set_title("errpolicy failover demo: every request, by outcome", pad=18)
        ax.legend(loc="upper left", fontsize=8, markerscale=1.5)
        ax.grid(True, axis="y", alpha=0.3)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
