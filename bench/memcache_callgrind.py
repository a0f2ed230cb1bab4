"""``python -m bench.memcache_callgrind [--state S ...] [--json PATH]``: instructions per operation.

The timed ratios of :mod:`bench.memcache_bench` move with a loaded machine; the
instructions the Python process runs do not. For each state of
:mod:`bench.memcache_states` (default transport), each of the two operations (the
store's and raw pymemcache's) runs in a fresh interpreter under ``valgrind
--tool=callgrind`` with its own three memcached processes (not traced), twice (``n1``
and ``n2`` operations after the same set-up and warm-up); the difference divided by
``n2 - n1`` is the instructions (``Ir``) of one operation, set-up cancelled out, as in
:mod:`bench.callgrind`. The kernel's work (the system calls, the loopback) is not
counted: on the same network round, the ratio says how much more work this process
does than a raw client.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import errpolicy

from bench.callgrind import traced_instructions
from bench.memcache_states import NAMES, STATES, TARGETS, prepare
from errpolicy_memcache.testing import MemcachedCluster

ROOT = Path(__file__).resolve().parent.parent
_TRANSPORT = "pymemcache"


@dataclass(frozen=True, slots=True)
class Count:
    """One state's instructions per operation: the store's and the baseline's."""

    state: str
    name: str
    store_ir: float
    baseline_ir: float
    target: float | None

    @property
    def ratio(self) -> float:
        return self.store_ir / self.baseline_ir


def run_variant(state: str, which: str, n: int) -> None:
    """The body run under valgrind: set ``state`` up, warm up, run ``n`` operations."""
    previous = errpolicy.get_config()
    errpolicy.configure(sink=errpolicy.NullSink())  # as in the timed run
    try:
        with MemcachedCluster(3) as cluster:
            prepared = prepare(state, cluster, (_TRANSPORT,))
            try:
                op = prepared.ours[_TRANSPORT] if which == "store" else prepared.baseline
                for _ in range(200 + n):
                    op()
            finally:
                prepared.close()
    finally:
        errpolicy.configure(sink=previous.sink)


def _instructions(state: str, which: str, n: int, valgrind: str) -> int:
    return traced_instructions("bench.memcache_callgrind", (state, which, str(n)), valgrind)


def count_all(states: Sequence[str], *, n1: int, n2: int, valgrind: str, jobs: int) -> list[Count]:
    """Instructions per operation of the store and the baseline in every state."""
    runs = [(s, which, n) for s in states for which in ("store", "baseline") for n in (n1, n2)]

    def one(run: tuple[str, str, int]) -> int:
        return _instructions(run[0], run[1], run[2], valgrind)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = dict(zip(runs, pool.map(one, runs), strict=True))
    return [
        Count(
            s,
            NAMES[s][0],
            (totals[(s, "store", n2)] - totals[(s, "store", n1)]) / (n2 - n1),
            (totals[(s, "baseline", n2)] - totals[(s, "baseline", n1)]) / (n2 - n1),
            TARGETS[s],
        )
        for s in states
    ]


def table(counts: Sequence[Count]) -> str:
    """The counts as a Markdown table."""
    lines = [
        "| operation | store Ir/op | baseline Ir/op | Ir ratio | timed target |",
        "|---|---:|---:|---:|---|",
    ]
    for c in counts:
        lines.append(
            f"| {c.name} | {c.store_ir:,.0f} | {c.baseline_ir:,.0f} "
            f"| {c.ratio:.2f}x | {'-' if c.target is None else f'<= {c.target}x'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memcache_callgrind", description=__doc__)
    parser.add_argument("--state", action="append", default=[], choices=STATES)
    parser.add_argument("--json", metavar="PATH", help="also write the counts to PATH")
    parser.add_argument("--n1", type=int, default=200, help="operations of the short run")
    parser.add_argument("--n2", type=int, default=1200, help="operations of the long run")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at once")
    parser.add_argument(
        "--variant", nargs=3, metavar=("STATE", "WHICH", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.variant:
        state, which, n = args.variant
        run_variant(state, which, int(n))
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if not 0 <= args.n1 < args.n2:
        parser.error("--n1 must be below --n2")
    states = args.state or list(STATES)
    counts = count_all(states, n1=args.n1, n2=args.n2, valgrind=valgrind, jobs=max(1, args.jobs))
    print(
        f"memcache session store vs raw pymemcache under callgrind "
        f"(Python {sys.version.split()[0]}, transport {_TRANSPORT})"
    )
    print(table(counts))
    if args.json:
        payload = [{**asdict(c), "ratio": c.ratio} for c in counts]
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
