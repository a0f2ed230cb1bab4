"""Live progress on stderr (one redrawn line on a terminal, plain lines otherwise)
and the summary table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

from ._explain import explain_503s
from ._stats import PhaseStats


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _line(index: int, total: int, stats: PhaseStats) -> str:
    return (
        f"[{index}/{total} {stats.name}] {stats.duration_s:5.1f}s "
        f"requests {stats.requests:5d}  kept {stats.sessions_kept}/{stats.users}  "
        f"503 {stats.unavailable:4d}  errors {stats.errors}  notices {stats.notices:4d}  "
        f"p50 {_ms(stats.p50_ms)} ms  p99 {_ms(stats.p99_ms)} ms"
    )


class Progress:
    """Shows each phase while it runs; redraws in place only on a terminal."""

    def __init__(self, stream: TextIO, total: int, *, interactive: bool | None = None) -> None:
        self.stream = stream
        self.total = total
        self.interactive = stream.isatty() if interactive is None else interactive
        self._last_plain = 0.0

    def say(self, text: str) -> None:
        """A line of its own (setup, phase changes)."""
        if self.interactive:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def phase_started(self, index: int, name: str, title: str) -> None:
        """Announce a phase and the fault just applied."""
        self.say(f"-- phase {index}/{self.total} {name}: {title}")
        self._last_plain = time.monotonic()

    def update(self, index: int, stats: PhaseStats) -> None:
        """Live figures: redrawn on a terminal, a plain line every 5 s otherwise."""
        if self.interactive:
            self.stream.write("\r\x1b[2K" + _line(index, self.total, stats))
            self.stream.flush()
        elif time.monotonic() - self._last_plain >= 5.0:
            self._last_plain = time.monotonic()
            self.say(_line(index, self.total, stats))

    def phase_finished(self, index: int, stats: PhaseStats) -> None:
        """The phase's final figures and any failed check."""
        verdict = "ok" if stats.passed else "FAILED"
        self.say(_line(index, self.total, stats) + f"  {verdict}")
        for check in stats.checks:
            if not check.passed:
                self.say(f"   FAILED: {check.name}. {check.detail}".rstrip())


_COLUMNS = (
    ("phase", "<", 11),
    ("what happened", "<", 54),
    ("requests", ">", 8),
    ("kept", ">", 6),
    ("lost", ">", 4),
    ("503s", ">", 5),
    ("errors", ">", 6),
    ("notices", ">", 7),
    ("p50 ms", ">", 7),
    ("p99 ms", ">", 7),
    ("max ms", ">", 7),
    ("check", "<", 6),
)


def table(phases: Sequence[PhaseStats]) -> str:
    """The summary table, one row per phase."""
    rows = [[name for name, _, _ in _COLUMNS]]
    for stats in phases:
        rows.append(
            [
                stats.name,
                stats.title,
                str(stats.requests),
                f"{stats.sessions_kept}/{stats.users}",
                str(stats.lost),
                str(stats.unavailable),
                str(stats.errors),
                str(stats.notices),
                _ms(stats.p50_ms),
                _ms(stats.p99_ms),
                _ms(stats.max_ms),
                "ok" if stats.passed else "FAILED",
            ]
        )
    lines = []
    for row in rows:
        cells = [
            f"{cell:{align}{width}}" for cell, (_, align, width) in zip(row, _COLUMNS, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def explanations(phases: Sequence[PhaseStats]) -> list[str]:
    """One line per phase whose 503s passed its checks: why the store refused, and when
    every user was served again."""
    return [
        explain_503s(s.name, s.unavailable, s.refusals, s.served_again_s)
        for s in phases
        if s.unavailable and s.passed
    ]
