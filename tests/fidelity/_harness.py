"""Compare each suite's two runs on each interpreter and say what differs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._outcomes import Allowance, Difference, compare, table
from ._prepare import (
    Interpreter,
    Workspace,
    errpolicy_boot,
    probe,
    prune_runs,
    suite_venv,
    unpack,
    version_of,
)
from ._run import RunResult, RunSpec, run_suite
from ._suites import Suite


@dataclass(frozen=True, slots=True)
class Comparison:
    """One suite on one interpreter: both runs and their differences."""

    suite: str
    python: str  # "3.11"
    without: RunResult
    with_errpolicy: RunResult
    differences: tuple[Difference, ...]
    implementation: str = ""
    churn_expected: bool = True

    @property
    def problems(self) -> list[str]:
        """Everything that fails the comparison, one line each."""
        found = [f"{d.test_id}: {d.without.value} -> {d.with_errpolicy.value}"
                 for d in self.differences if not d.allowed]  # fmt: skip
        if not self.without.outcomes:
            found.append(f"the run without errpolicy reported no tests (see {self.without.log})")
        if not self.with_errpolicy.outcomes:
            found.append(
                f"the run with errpolicy reported no tests (see {self.with_errpolicy.log})"
            )
        churn = self.with_errpolicy.churn
        if self.churn_expected and churn.cycles == 0:
            found.append("the background guard thread never ran (errpolicy not installed?)")
        if churn.escaped:
            found.append(
                f"{churn.escaped} exceptions escaped the guard thread: {churn.first_escape}"
            )
        if self.with_errpolicy.leaked_lines:
            found.append(
                f"{len(self.with_errpolicy.leaked_lines)} lines of the guard thread's events "
                f"leaked into the output, first: {self.with_errpolicy.leaked_lines[0][:200]}"
            )
        return found

    def summary(self) -> str:
        w, e = self.without, self.with_errpolicy
        return (
            f"{self.suite} on {self.python}: {_counts(w)} without, {_counts(e)} with errpolicy "
            f"(errpolicy's {self.implementation} core); {len(self.differences)} differ "
            f"({sum(d.allowed for d in self.differences)} allowed); "
            f"{w.seconds:.0f} s + {e.seconds:.0f} s; guard thread: {e.churn.cycles} cycles "
            f"in {e.churn.processes} processes"
        )


def _counts(run: RunResult) -> str:
    tally: dict[str, int] = {}
    for outcome in run.outcomes.values():
        tally[outcome.value] = tally.get(outcome.value, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(tally.items())) or "nothing"


@dataclass(frozen=True, slots=True)
class Plan:
    """What to compare: suites, interpreters, the errpolicy tree, options."""

    suites: Sequence[Suite]
    interpreters: Sequence[Interpreter]
    tree: Path  # the errpolicy checkout under test (only read)
    cache: Path
    allowed: Sequence[Allowance] = ()
    ci_subset: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # set in both runs of every suite
    churn: bool = True
    out: Callable[[str], None] = field(default=print)


@contextlib.contextmanager
def _preparing(cache: Path) -> Iterator[None]:
    """One harness at a time downloads, unpacks and builds venvs: runs side by side
    (CI runs 3.14 and 3.15 at once) share the cache and would fill it twice at once."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def execute(plan: Plan) -> list[Comparison]:
    """Run every suite twice on every interpreter; print progress and the differences."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"  # runs at once keep apart
    comparisons = []
    for interpreter in plan.interpreters:
        workspace = Workspace.for_interpreter(interpreter, plan.cache)
        prune_runs(workspace)
        full_version = version_of(interpreter)
        python = ".".join(full_version.split(".")[:2])
        for suite in plan.suites:
            targets = suite.ci_targets if plan.ci_subset else suite.targets
            if not targets:
                continue
            settings = " ".join(f"{k}={v}" for k, v in plan.env.items())
            plan.out(
                f"fidelity: {suite.name} on Python {full_version} ({interpreter}) {settings}: "
                "preparing"
            )
            with _preparing(plan.cache):
                venv = suite_venv(suite, interpreter, plan.cache, workspace)
                boot = errpolicy_boot(plan.tree, interpreter, venv, workspace)
                implementation = probe(interpreter, venv, boot, workspace, plan.env)
                source = unpack(suite.source, plan.cache, workspace) if suite.source else None
            spec = RunSpec(
                suite=suite,
                targets=targets,
                interpreter=interpreter,
                workspace=workspace,
                venv=venv,
                boot=boot,
                folder=workspace.root / "runs" / stamp / f"{suite.name}-py{full_version}",
                source=source,
                deselect=suite.ci_deselect if plan.ci_subset else (),
                env=plan.env,
                churn=plan.churn,
            )
            without = run_suite(spec, "without")
            plan.out(f"fidelity: {suite.name} on {python}: without errpolicy done")
            with_errpolicy = run_suite(spec, "with")
            differences = compare(
                suite.name, python, without.outcomes, with_errpolicy.outcomes, plan.allowed
            )
            comparison = Comparison(
                suite.name, python, without, with_errpolicy, tuple(differences),
                implementation, plan.churn,
            )  # fmt: skip
            plan.out(comparison.summary())
            comparisons.append(comparison)
    return comparisons


def report(comparisons: Sequence[Comparison], out: Callable[[str], None] = print) -> bool:
    """Print the table of differences and every problem; True when there is none."""
    differences = [d for c in comparisons for d in c.differences]
    out("")
    out(table(differences))
    ok = True
    for comparison in comparisons:
        for problem in comparison.problems:
            ok = False
            out(f"FIDELITY {comparison.suite} on {comparison.python}: {problem}")
        if comparison.problems:
            out(f"  logs: {comparison.without.log}  {comparison.with_errpolicy.log}")
    out("fidelity: identical (modulo the allow-list)" if ok else "fidelity: outcomes DIFFER")
    return ok


def eprint(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
