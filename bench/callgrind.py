"""``python -m bench.callgrind [--row KEY ...] [--json PATH]``: instructions per iteration.

Wall-clock ratios move with a loaded machine; instruction counts do not. For every
row of :data:`bench.core_bench.ROWS` this runs each of the row's two loops in a
fresh interpreter under ``valgrind --tool=callgrind``, twice (``n1`` and ``n2``
iterations, after the same warm-up), and reports the difference divided by
``n2 - n1``: the instructions (callgrind's ``Ir``) of one iteration, with the
interpreter's start-up, imports and warm-up cancelled out. The ratio of the two
counts sits beside the timed ratio in docs/benchmarks.md.

Instructions are not time (a cache miss costs more than an add), so the timed
ratio decides pass or fail; the count says whether a change did less work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.core_bench import ROWS, Row, prepared

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Count:
    """One row's instructions per iteration, errpolicy's loop and the baseline's."""

    key: str
    name: str
    errpolicy_ir: float
    baseline_ir: float
    target: str

    @property
    def ratio(self) -> float:
        return self.errpolicy_ir / self.baseline_ir


def _row(key: str) -> Row:
    return next(r for r in ROWS if r.key == key)


def run_variant(key: str, which: str, n: int) -> None:
    """The body run under valgrind: warm up, then ``n`` iterations of one loop."""
    row = _row(key)
    timer = row.ours if which == "ours" else row.baseline
    with prepared(row.state):
        timer(200)
        if n:
            timer(n)


def traced_instructions(module: str, variant: Sequence[str], valgrind: str) -> int:
    """The instructions callgrind counts in one run of ``python -m module --variant
    *variant`` (the three callgrind benches' variants run this way)."""
    with tempfile.TemporaryDirectory(prefix="errpolicy-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
        proc = subprocess.run(
            [*command, "-m", module, "--variant", *variant],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=False,
            capture_output=True,
            text=True,
        )
        what = " ".join(variant)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed under valgrind:\n{proc.stderr[-2000:]}")
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no instruction total in callgrind's output for {what}")


def _instructions(key: str, which: str, n: int, valgrind: str) -> int:
    return traced_instructions("bench.callgrind", (key, which, str(n)), valgrind)


def count_all(rows: Sequence[Row], *, n1: int, n2: int, valgrind: str, jobs: int) -> list[Count]:
    """Instructions per iteration of both loops of every row (``jobs`` valgrind runs at once)."""
    runs = [(r.key, which, n) for r in rows for which in ("ours", "baseline") for n in (n1, n2)]

    def one(run: tuple[str, str, int]) -> int:
        return _instructions(run[0], run[1], run[2], valgrind)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = dict(zip(runs, pool.map(one, runs), strict=True))
    return [
        Count(
            r.key,
            r.name,
            (totals[(r.key, "ours", n2)] - totals[(r.key, "ours", n1)]) / (n2 - n1),
            (totals[(r.key, "baseline", n2)] - totals[(r.key, "baseline", n1)]) / (n2 - n1),
            "" if r.target is None else r.target.label,
        )
        for r in rows
    ]


def table(counts: Sequence[Count]) -> str:
    """The counts as a Markdown table."""
    lines = [
        "| benchmark | errpolicy Ir/iter | baseline Ir/iter | Ir ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for c in counts:
        lines.append(
            f"| {c.name} | {c.errpolicy_ir:,.0f} | {c.baseline_ir:,.0f} "
            f"| {c.ratio:.3f}x | {c.target or '-'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__)
    parser.add_argument("--row", action="append", default=[], choices=[r.key for r in ROWS])
    parser.add_argument("--json", metavar="PATH", help="also write the counts to PATH")
    parser.add_argument("--n1", type=int, default=1000, help="iterations of the short run")
    parser.add_argument("--n2", type=int, default=6000, help="iterations of the long run")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at once")
    parser.add_argument("--variant", nargs=3, metavar=("ROW", "WHICH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        key, which, n = args.variant
        run_variant(key, which, int(n))
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if not 0 <= args.n1 < args.n2:
        parser.error("--n1 must be below --n2")
    rows = [r for r in ROWS if not args.row or r.key in args.row]
    counts = count_all(rows, n1=args.n1, n2=args.n2, valgrind=valgrind, jobs=max(1, args.jobs))
    print(f"errpolicy core benchmarks under callgrind (Python {sys.version.split()[0]})")
    print(table(counts))
    if args.json:
        payload = [{**asdict(c), "ratio": c.ratio} for c in counts]
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
