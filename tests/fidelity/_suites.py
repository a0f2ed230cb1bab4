"""The peer suites the harness runs: where their tests come from and how to run them.

Versions are pinned: the issue measured pytest 9.2.0 and structlog 26.1.0 (the
versions in the project's .venv). Their test dependencies are pinned too, so a
new release of one cannot move the baseline between two runs of the harness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Sdist:
    """A package whose sdist ships its tests; downloaded at run time, never vendored."""

    name: str
    version: str

    @property
    def folder(self) -> str:
        """The sdist's top folder: ``pytest-9.2.0``."""
        return f"{self.name}-{self.version}"


@dataclass(frozen=True, slots=True)
class Suite:
    """One peer suite: run by pytest inside its sdist, or by unittest from the stdlib."""

    name: str
    runner: Literal["pytest", "unittest"]
    targets: tuple[str, ...]  # paths inside the sdist, or module names for unittest
    ci_targets: tuple[str, ...]  # the subset CI runs; empty: the suite is left out of CI
    ci_deselect: tuple[str, ...] = ()  # pytest node ids CI leaves out (the slowest ones)
    sdists: tuple[Sdist, ...] = ()  # installed into the suite's venv; the first holds the tests
    requirements: tuple[str, ...] = ()  # more of the suite's venv, pinned
    pytest_args: tuple[str, ...] = ()

    @property
    def source(self) -> Sdist | None:
        """The sdist whose folder the tests run in (pytest suites)."""
        return self.sdists[0] if self.sdists else None


PYTEST = Sdist("pytest", "9.2.0")
STRUCTLOG = Sdist("structlog", "26.1.0")

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite(
            name="pytest",
            runner="pytest",
            targets=("testing/test_warnings.py", "testing/test_recwarn.py", "testing/logging"),
            ci_targets=("testing/test_warnings.py", "testing/test_recwarn.py", "testing/logging"),
            # A third of the suite's time: a subprocess under tracemalloc, and a wait.
            ci_deselect=(
                "testing/test_warnings.py::test_resource_warning",
                "testing/test_recwarn.py::TestWarns::test_keyboard_interrupt_within_warns",
            ),
            sdists=(PYTEST,),
            requirements=("packaging==26.4",),
        ),
        Suite(
            name="structlog",
            runner="pytest",
            targets=("tests",),
            ci_targets=("tests",),
            sdists=(STRUCTLOG, PYTEST),
            requirements=(
                "pytest-asyncio==1.5.0",
                "time-machine==3.6.0",
                "simplejson==4.3.0",
                "rich==15.0.0",
                "better-exceptions==0.3.3",
            ),
        ),
        Suite(
            name="cpython-warnings",
            runner="unittest",
            targets=("test.test_warnings",),
            ci_targets=("test.test_warnings",),
        ),
        Suite(
            name="cpython-logging",
            runner="unittest",
            targets=("test.test_logging",),
            ci_targets=(),  # about a minute per run and all equal today: make fidelity only
        ),
    )
}
