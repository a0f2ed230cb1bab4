"""The timeline picture: each request's latency and outcome over time; each phase's
fault in words; the notices recorded per quarter second; when users were served again."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from ._explain import rate
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
    notices: Sequence[float] = (),
) -> None:
    """Write a PNG or SVG (by ``path``'s suffix) with matplotlib's Agg backend;
    ``notices``: when each notice was recorded (seconds, the samples' clock)."""
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"the plot must be a .png or .svg file, not {path.name!r}")
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # words stay text: searchable, smaller
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 6), layout="constrained")
    try:
        for index, ((start, end), stats) in enumerate(zip(spans, phases, strict=True)):
            ax.axvspan(start, end, color="0.93" if index % 2 else "0.86", zorder=0)
            fault = "\n".join(textwrap.wrap(stats.title, 24))
            ax.text(
                (start + end) / 2,
                1.01,
                f"{stats.name}\n{fault}",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=7,
            )
            if stats.served_again_s is not None:
                again = start + stats.served_again_s
                ax.axvline(again, color="tab:green", linestyle="--", linewidth=1, zorder=1)
                ax.text(
                    again,
                    0.02,
                    f" every user served again\n +{stats.served_again_s:.1f} s",
                    transform=ax.get_xaxis_transform(),
                    ha="left",
                    va="bottom",
                    fontsize=7,
                    color="tab:green",
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
        ax.set_title(
            "errpolicy failover demo: every request, by outcome, and the notices recorded",
            pad=48,
        )
        handles, labels = ax.get_legend_handles_labels()
        if spans:
            # Failovers recorded instead of raised: what tells one-killed from all-up.
            width = 0.25
            bins = rate(notices, spans[0][0], spans[-1][1], width)
            counts = ax.twinx()
            counts.step(
                [t for t, _ in bins],
                [n / width for _, n in bins],
                where="post",
                color="tab:olive",
                linewidth=1.2,
                label="notices recorded per second (failovers, repairs)",
            )
            counts.set_ylabel("notices recorded per second", color="tab:olive")
            counts.set_ylim(bottom=0)
            more, more_labels = counts.get_legend_handles_labels()
            handles, labels = handles + more, labels + more_labels
        ax.legend(handles, labels, loc="upper left", fontsize=8, markerscale=1.5)
        ax.grid(True, axis="y", alpha=0.3)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
