"""What fails a comparison besides differing outcomes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tests.fidelity._harness import Comparison, report
from tests.fidelity._outcomes import Difference, Outcome
from tests.fidelity._prepare import Workspace, prune_runs
from tests.fidelity._run import Churn, RunResult

RAN = RunResult({"t::a": Outcome.PASSED}, 0, Path("log"), Churn(1, 50, 0), (), 1.0)


def _problems(with_errpolicy: RunResult, *differences: Difference) -> list[str]:
    return Comparison("pytest", "3.11", RAN, with_errpolicy, differences).problems


def test_identical_runs_with_a_busy_guard_thread_have_no_problem() -> None:
    """Same outcomes, the thread ran, nothing escaped or leaked: nothing to report."""
    assert [] == _problems(RAN)


def test_only_unexpected_differences_are_problems() -> None:
    """An allowed difference passes; an unexpected one is reported with both outcomes."""
    allowed = Difference("pytest", "3.11", "t::b", Outcome.PASSED, Outcome.FAILED, "kept")
    unexpected = Difference("pytest", "3.11", "t::c", Outcome.PASSED, Outcome.ERROR)
    assert ["t::c: passed -> error"] == _problems(RAN, allowed, unexpected)


def test_an_escape_a_leak_or_an_idle_thread_is_a_problem() -> None:
    """Exceptions out of the thread's guards, its events in the output, or no cycles fail."""
    escaped = replace(RAN, churn=Churn(1, 50, 3, "AttributeError('x')"))
    leaked = replace(RAN, leaked_lines=("UserWarning: errpolicy-fidelity-churn: warn",))
    idle = replace(RAN, churn=Churn())
    assert ["3 exceptions escaped the guard thread: AttributeError('x')"] == _problems(escaped)
    assert 1 == len(_problems(leaked))
    assert "leaked into the output" in _problems(leaked)[0]
    assert ["the background guard thread never ran (errpolicy not installed?)"] == _problems(idle)


def test_a_run_that_reported_no_tests_is_a_problem() -> None:
    """A crashed run compares as all-absent; it is reported as such, not as identical."""
    crashed = replace(RAN, outcomes={})
    assert any("reported no tests" in p for p in _problems(crashed))


def test_the_report_is_true_only_without_problems() -> None:
    """report() prints the table and returns whether everything matched."""
    lines: list[str] = []
    fine = Comparison("pytest", "3.11", RAN, RAN, ())
    bad = Comparison("pytest", "3.11", RAN, replace(RAN, churn=Churn()), ())
    assert True is report([fine], out=lines.append)
    assert False is report([fine, bad], out=lines.append)
    assert "fidelity: outcomes DIFFER" == lines[-1]


def test_only_the_newest_runs_are_kept(tmp_path: Path) -> None:
    """Old runs' folders go; the newest ones, named by start time, stay."""
    names = [f"20261130-1200{i:02d}-42" for i in range(5)]
    for name in names:
        (tmp_path / "runs" / name / "pytest-py3.11.7").mkdir(parents=True)
    prune_runs(Workspace(tmp_path), keep=2)
    assert names[-2:] == sorted(p.name for p in (tmp_path / "runs").iterdir())
