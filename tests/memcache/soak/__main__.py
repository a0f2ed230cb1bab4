"""``python -m tests.memcache.soak``: run scenarios, print the table, write reproductions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._checker import VIOLATIONS
from ._history import Kind, Status
from ._load import busiest
from ._probes import found_back, unanswered
from ._run import Result, load_history, run, save_history, table
from ._scenarios import SCENARIOS


def _reproductions(result: Result, limit: int) -> list[str]:
    lines: list[str] = []
    shown: dict[str, int] = {}
    for finding in result.report.findings:
        if finding.verdict not in VIOLATIONS:
            continue
        verdict = finding.verdict.value
        if shown.get(verdict, 0) >= limit:
            continue
        shown[verdict] = shown.get(verdict, 0) + 1
        lines.append(f"\n### {result.scenario}: {verdict} ({finding.op.sid[:8]}...)\n")
        lines.append("```")
        lines.extend(finding.reproduction(result.events, result.t0))
        lines.append("```")
    return lines


GOAL = 0.5  # seconds: every session readable this soon after every node is back


def _slow_windows(result: Result, limit: int) -> list[str]:
    """Each all-back window over the goal, with its refused reads (and what each node
    answered) and the slowest read the store served in it: how busy the machine was."""
    lines: list[str] = []
    reads = [op for op in result.ops if op.kind is Kind.READ]
    for window in result.windows:
        if max(window.seconds, window.waited) <= GOAL:
            continue
        inside = [op for op in reads if window.back <= op.start and op.end < window.until]
        served = [op.end - op.start for op in inside if op.status is Status.OK]
        refused = [op for op in inside if op.status is Status.FAIL]
        busy = busiest(result.samples, window.back, window.until)
        machine = (
            ""
            if busy is None
            else (f"; threads woke up to {busy.lag:.3f} s late (load {busy.load:.1f})")
        )
        lines.append(
            f"\n### {result.scenario}: all back at {window.back - result.t0:.3f} s, "
            f"next fault {window.until - result.t0:.3f} s: store {window.seconds:.2f} s "
            f"({window.refused} refused), timed out {window.waited:.2f} s "
            f"({window.timed_out}); {len(served)} reads served, slowest "
            f"{max(served, default=0.0):.3f} s{machine}\n"
        )
        lines.append("```")
        lines.extend(op.describe(result.t0) for op in refused[-limit:])
        lines.append("```")
        lines.extend(_probes(result, window.back, window.back + window.seconds))
    return lines


PROBES_BEFORE = 1.0  # seconds before all-back whose probes a slow window's report shows


def _probes(result: Result, back: float, last: float) -> list[str]:
    """The probes that ended after ``PROBES_BEFORE`` seconds before all-back and began
    before the last refused read ended: where the prober's time went."""
    shown = [
        probe
        for probe in result.probes
        if probe.end >= back - PROBES_BEFORE and probe.start <= last
    ]
    if not shown:
        return []
    shown.sort(key=lambda probe: (probe.process, probe.start))
    return ["", "Probes:", "```", *(probe.describe(result.t0) for probe in shown), "```"]


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios asked for; exit 1 if any violation was found."""
    parser = argparse.ArgumentParser(prog="python -m tests.memcache.soak")
    parser.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS), help="repeatable; default all"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="faults per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transport", default="pymemcache", choices=("pymemcache", "pipelined"))
    parser.add_argument("--examples", type=int, default=3, help="reproductions per verdict")
    parser.add_argument("--findings", type=Path, help="append the reproductions to this file")
    parser.add_argument(
        "--history", type=Path, help="save each run's history in this directory (.jsonl.gz)"
    )
    parser.add_argument(
        "--replay",
        type=Path,
        action="append",
        help="judge a saved history again instead of running (repeatable)",
    )
    args = parser.parse_args(argv)
    results: list[Result] = []
    for path in args.replay or ():
        results.append(load_history(path))
    for name in () if args.replay else args.scenario or sorted(SCENARIOS):
        print(f"scenario {name}: {SCENARIOS[name].title}, {args.seconds:.0f} s", flush=True)
        result = run(name, args.seconds, seed=args.seed, transport=args.transport)
        results.append(result)
        if args.history is not None:
            args.history.mkdir(parents=True, exist_ok=True)
            path = args.history / f"{name}-{args.seconds:.0f}s-seed{args.seed}.jsonl.gz"
            save_history(result, path, seed=args.seed, transport=args.transport)
            print(f"history: {path}", flush=True)
        print(table([result]).splitlines()[-1], flush=True)
    print()
    print(table(results))
    for result in results:
        times = " ".join(f"{w.seconds:.2f}" for w in result.windows)
        print(f"{result.scenario}: recovery after each all-back, in seconds: {times or '-'}")
        long = sorted(c.seconds for c in result.collections if c.generation == 2)
        if long:
            print(
                f"{result.scenario}: {len(long)} full garbage collections held the process "
                f"for {long[-1]:.3f} s at most"
            )
        lags = sorted(sample.lag for sample in result.samples)
        if lags:
            load = max(sample.load for sample in result.samples)
            print(
                f"{result.scenario}: threads woke up late by {lags[len(lags) // 2]:.3f} s "
                f"(median), {lags[-1]:.3f} s (most); load average up to {load:.1f}"
            )
        if result.probes:
            statuses: dict[str, int] = {}
            for probe in result.probes:
                statuses[probe.status] = statuses.get(probe.status, 0) + 1
            counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
            print(f"{result.scenario}: {len(result.probes)} probes ({counts})")
            slow = found_back(result.events, result.probes)[:3]
            if slow:
                found = "; ".join(
                    f"{f.seconds:.3f} s ({f.process}, {f.node} back at {f.back - result.t0:.3f} s)"
                    for f in slow
                )
                print(f"{result.scenario}: slowest from a node's return to its probe: {found}")
            late = unanswered(result.events, result.probes)
            if late:
                shown = ", ".join(probe.describe(result.t0) for probe in late[:5])
                print(
                    f"{result.scenario}: {len(late)} probes timed out although their node "
                    f"was back before they ended: {shown}"
                )
        waits = " ".join(f"{w.waited:.2f}" for w in result.windows if w.timed_out)
        if waits:
            print(f"{result.scenario}: reads that waited on a running node's timeout: {waits}")
    lines: list[str] = []
    for result in results:
        lines.extend(_reproductions(result, args.examples))
        lines.extend(_slow_windows(result, args.examples))
    print("\n".join(lines))
    if args.findings is not None:
        with args.findings.open("a") as out:
            out.write("\n" + table(results) + "\n" + "\n".join(lines) + "\n")
    return 1 if any(any(r.report.violations().values()) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
