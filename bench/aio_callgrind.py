"""``python -m bench.aio_callgrind [--json PATH]``: instructions per async operation.

The count beside :mod:`bench.aio_bench`'s timed ratios. Each operation (the async
store's ``start()``, the network floor's bare two-node round, aiomcache's ``get``, and
the 1,000-task batches of each) runs in
a fresh interpreter under ``valgrind --tool=callgrind`` with its own three memcached
processes (not traced), twice (``n1`` and ``n2`` operations after the same set-up and
warm-up); the difference divided by ``n2 - n1`` is the instructions (``Ir``) of one
operation, set-up cancelled out, as in :mod:`bench.memcache_callgrind`. A batch's
count is divided by its 1,000 tasks: instructions per session read. The kernel's
work (system calls, the loopback) is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import errpolicy

from bench.aio_bench import FLOOR, MANY, START, TASKS, bare_gets, operations, prepare
from bench.callgrind import traced_instructions
from errpolicy_memcache.testing import MemcachedCluster

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Pair:
    """A row's two operations, the runs' lengths, and the sessions one operation reads."""

    ours: str
    theirs: str
    n1: int
    n2: int
    sessions: int


# The operations that do not use the store (aiomcache's, the floor's): the store set
# their sessions up and is then closed, so that it leaves nothing on the loop (a store
# in use keeps one timer set for its nodes' deadlines, up to a read timeout after its
# last request; in a timed run both sides share the loop, and so that timer).
BASELINES = ("get", "many-get", "floor")

PAIRS = {
    START: Pair("start", "get", 200, 1200, 1),
    FLOOR: Pair("floor", "get", 200, 1200, 1),
    MANY: Pair("many-start", "many-get", 1, 3, TASKS),
}


def run_variant(which: str, n: int) -> None:
    """The body run under valgrind: set up, warm up, then ``n`` operations ``which``."""
    many = which.startswith("many-")

    async def body(cluster: MemcachedCluster) -> None:
        setup = await prepare(cluster, TASKS if many else 0)
        if which == "floor":
            op = await bare_gets(setup.home, setup.key)
        else:
            op = operations(setup)[which]
        if which in BASELINES:
            await setup.store.aclose()
        for _ in range(1 if many else 200):
            await op()
        for _ in range(n):
            await op()
        await setup.close()

    previous = errpolicy.get_config()
    errpolicy.configure(sink=errpolicy.NullSink())  # as in the timed run
    try:
        with MemcachedCluster(3) as cluster:
            asyncio.run(body(cluster))
    finally:
        errpolicy.configure(sink=previous.sink)


def instructions(which: str, n: int, valgrind: str) -> int:
    """The instructions of one traced run of ``run_variant(which, n)``."""
    return traced_instructions("bench.aio_callgrind", (which, str(n)), valgrind)


def count_all(
    rows: Sequence[str] = tuple(PAIRS), *, valgrind: str | None = None, jobs: int = 2
) -> dict[str, dict[str, float]]:
    """Per row: ``ours_ir`` and ``baseline_ir``, instructions per session read."""
    valgrind = valgrind or shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    runs = [
        (which, n)
        for pair in (PAIRS[row] for row in rows)
        for which in (pair.ours, pair.theirs)
        for n in (pair.n1, pair.n2)
    ]

    def one(run: tuple[str, int]) -> int:
        return instructions(run[0], run[1], valgrind)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        totals = dict(zip(runs, pool.map(one, runs), strict=True))
    counts = {}
    for row in rows:
        p = PAIRS[row]
        per = (p.n2 - p.n1) * p.sessions
        counts[row] = {
            "ours_ir": (totals[(p.ours, p.n2)] - totals[(p.ours, p.n1)]) / per,
            "baseline_ir": (totals[(p.theirs, p.n2)] - totals[(p.theirs, p.n1)]) / per,
        }
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aio_callgrind", description=__doc__)
    parser.add_argument("--json", metavar="PATH", help="also write the counts to PATH")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at once")
    parser.add_argument("--variant", nargs=2, metavar=("WHICH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        run_variant(args.variant[0], int(args.variant[1]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    counts = count_all(jobs=args.jobs)
    print(f"asyncio session store vs aiomcache under callgrind (Python {sys.version.split()[0]})")
    print("| operation | ours Ir/op | aiomcache Ir/op | Ir ratio |")
    print("|---|---:|---:|---:|")
    for row, c in counts.items():
        ratio = c["ours_ir"] / c["baseline_ir"]
        print(f"| {row} | {c['ours_ir']:,.0f} | {c['baseline_ir']:,.0f} | {ratio:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
