"""``python -m bench.notice_callgrind [--case C ...] [--json PATH]``: one recorded notice's cost.

The memcache store reports a failover read with one ``errpolicy.log_direct`` NOTICE
inside its own guard (default policy: notices recorded, only its logger in scope).
Each case here runs in a fresh interpreter under ``valgrind --tool=callgrind``, twice
(``n1`` and ``n2`` iterations after the same warm-up), and the difference divided by
``n2 - n1`` is the instructions (``Ir``) of one iteration, as in :mod:`bench.callgrind`.
An iteration opens and closes that guard; the cases differ in what happens inside:

- ``empty``: nothing (the guard's own cost, the baseline of the others);
- ``notice``: one NOTICE through ``log_direct``, the store's call shape, ``NullSink``;
- ``notice-sink``: the same with a plain function sink that reads nothing;
- ``handle``: the same NOTICE through ``logger.handle(logger.makeRecord(...))``.

A notice's cost is its case's count minus ``empty``'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import errpolicy
from errpolicy import Policy, match

from bench.callgrind import traced_instructions

CASES = ("empty", "notice", "notice-sink", "handle")
_NAME = "bench.notice"
_POLICY = Policy(raise_on="WARNING | ERROR | CRITICAL", record="ALL", scope=match.logger(_NAME))


class _Outcome:
    """Stands for the store's outcome value: formatted with ``%s``, kept in ``extra``."""

    __slots__ = ()

    def __str__(self) -> str:
        return "failover: served by node-b"


def _discard(event: errpolicy.Event, /) -> None:
    return None


def loop(case: str) -> Callable[[int], None]:
    """``run(n)``: ``n`` iterations of ``case`` (errpolicy configured for it)."""
    logger = logging.getLogger(_NAME)
    logger.setLevel(logging.WARNING)  # as the store's: NOTICE passes only by log_direct
    logger.propagate = False
    guard = errpolicy.guard("session.start", default=_POLICY)
    outcome = _Outcome()
    log_direct = errpolicy.log_direct
    notice = errpolicy.NOTICE
    here = __file__
    sink: Any = _discard if case == "notice-sink" else errpolicy.NullSink()
    errpolicy.configure(sink=sink)

    def empty(n: int) -> None:
        for _ in range(n):
            with guard:
                pass

    def direct(n: int) -> None:
        for _ in range(n):
            with guard:
                extra = {"outcome": outcome}
                log_direct(logger, notice, "%s", (outcome,), pathname=here, extra=extra)

    def handle(n: int) -> None:
        for _ in range(n):
            with guard:
                logger.handle(
                    logger.makeRecord(
                        _NAME, notice, here, 0, "%s", (outcome,), None, extra={"outcome": outcome}
                    )
                )

    return {"empty": empty, "notice": direct, "notice-sink": direct, "handle": handle}[case]


def run_variant(case: str, n: int) -> None:
    """The body run under valgrind: warm up, then ``n`` iterations."""
    run = loop(case)
    run(200)
    if n:
        run(n)


def count_all(
    cases: Sequence[str], *, n1: int, n2: int, valgrind: str, jobs: int
) -> dict[str, float]:
    """Instructions per iteration of every case."""
    runs = [(c, n) for c in cases for n in (n1, n2)]

    def one(run: tuple[str, int]) -> int:
        return traced_instructions("bench.notice_callgrind", (run[0], str(run[1])), valgrind)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = dict(zip(runs, pool.map(one, runs), strict=True))
    return {c: (totals[(c, n2)] - totals[(c, n1)]) / (n2 - n1) for c in cases}


def table(counts: dict[str, float]) -> str:
    """The counts as a Markdown table, each beside its cost over ``empty``."""
    base = counts.get("empty")
    lines = ["| case | Ir/iter | over empty |", "|---|---:|---:|"]
    for case, ir in counts.items():
        over = "-" if base is None or case == "empty" else f"{ir - base:,.0f}"
        lines.append(f"| {case} | {ir:,.0f} | {over} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notice_callgrind", description=__doc__)
    parser.add_argument("--case", action="append", default=[], choices=CASES)
    parser.add_argument("--json", metavar="PATH", help="also write the counts to PATH")
    parser.add_argument("--n1", type=int, default=500, help="iterations of the short run")
    parser.add_argument("--n2", type=int, default=2500, help="iterations of the long run")
    parser.add_argument("--jobs", type=int, default=1, help="valgrind runs at once")
    parser.add_argument("--variant", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        case, n = args.variant
        run_variant(case, int(n))
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if not 0 <= args.n1 < args.n2:
        parser.error("--n1 must be below --n2")
    counts = count_all(
        args.case or CASES, n1=args.n1, n2=args.n2, valgrind=valgrind, jobs=max(1, args.jobs)
    )
    print(f"one recorded notice under callgrind (Python {sys.version.split()[0]})")
    print(table(counts))
    if args.json:
        Path(args.json).write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
