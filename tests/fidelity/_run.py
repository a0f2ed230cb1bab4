"""Run one suite once, without or with errpolicy, and read back its outcomes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._outcomes import Outcome, parse_junit, parse_unittest_json
from ._prepare import UNITTEST_RUNNER, Interpreter, Workspace, clean_environment
from ._startup import MARKER
from ._suites import Suite

Mode = Literal["without", "with"]


@dataclass(frozen=True, slots=True)
class Churn:
    """What the background guard threads of one run did, summed over its processes."""

    processes: int = 0
    cycles: int = 0
    escaped: int = 0  # exceptions that left the thread's guarded calls
    first_escape: str = ""


@dataclass(frozen=True, slots=True)
class RunResult:
    """One run of one suite: outcomes per test id, and what to check beside them."""

    outcomes: dict[str, Outcome]
    returncode: int
    log: Path  # the run's whole output (host view)
    churn: Churn
    leaked_lines: tuple[str, ...]  # output lines naming the thread's marker
    seconds: float


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What to run, and where; shared by both modes of a comparison."""

    suite: Suite
    targets: tuple[str, ...]
    interpreter: Interpreter
    workspace: Workspace
    venv: Path  # host view
    boot: Path  # host view: errpolicy and the startup module
    folder: Path  # host view: this comparison's logs and reports
    source: Path | None  # host view: the sdist folder pytest suites run in
    deselect: tuple[str, ...] = ()  # pytest node ids to leave out
    env: Mapping[str, str] = field(default_factory=dict)  # for both runs: PYTHON_*, ...
    churn: bool = True
    timeout: float = 1800


def run_suite(spec: RunSpec, mode: Mode) -> RunResult:
    """Run ``spec``'s suite once in ``mode``; never raises for failing tests."""
    ws = spec.workspace
    folder = spec.folder / mode
    shutil.rmtree(folder, ignore_errors=True)
    churn_dir = folder / "churn"
    churn_dir.mkdir(parents=True)
    python = ws.inner(spec.venv / "bin" / "python")
    if spec.suite.runner == "pytest":
        assert spec.source is not None
        report = folder / "junit.xml"
        argv = [
            python, "-m", "pytest", *spec.targets, *spec.suite.pytest_args,
            "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-rfE",
            "-o", "junit_family=xunit2", f"--junitxml={ws.inner(report)}",
            f"--basetemp={ws.inner(folder / 'tmp')}",
            *(f"--deselect={node}" for node in spec.deselect),
        ]  # fmt: skip
        cwd = spec.source
    else:
        report = folder / "outcomes.json"
        runner = folder / UNITTEST_RUNNER.name
        shutil.copy2(UNITTEST_RUNNER, runner)
        argv = [python, ws.inner(runner), ws.inner(report), *spec.targets]
        cwd = folder / "cwd"
        cwd.mkdir()
    env = clean_environment(
        # One seed for both runs: structlog, for one, names parametrized tests by their
        # index in an iteration over a set, so ids only match with equal string hashes.
        PYTHONHASHSEED="0",
        ERRPOLICY_FIDELITY_BOOT=ws.inner(spec.boot),
        ERRPOLICY_FIDELITY_MODE=mode,
        ERRPOLICY_FIDELITY_CHURN="1" if spec.churn else "0",
        ERRPOLICY_FIDELITY_CHURN_DIR=ws.inner(churn_dir),
        **spec.env,
    )
    log = folder / "output.log"
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        try:
            returncode = subprocess.run(
                spec.interpreter.command(argv, ws.inner(cwd)),
                cwd=cwd if spec.interpreter.chroot is None else None,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=spec.timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            returncode = -1
            out.write(f"\nfidelity: timed out after {spec.timeout:.0f} s\n")
    seconds = time.monotonic() - started
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    if not text:
        outcomes: dict[str, Outcome] = {}
    elif spec.suite.runner == "pytest":
        outcomes = parse_junit(text)
    else:
        outcomes = parse_unittest_json(text)
    output = log.read_text(encoding="utf-8", errors="replace")
    leaked = tuple(line for line in output.splitlines() if MARKER in line)
    return RunResult(outcomes, returncode, log, _churn(churn_dir), leaked, seconds)


def _churn(folder: Path) -> Churn:
    processes = cycles = escaped = 0
    first = ""
    for path in sorted(folder.glob("churn-*.json")):
        counts = json.loads(path.read_text(encoding="utf-8"))
        processes += 1
        cycles += int(counts["cycles"])
        escaped += int(counts["escaped"])
        first = first or str(counts.get("first_escape", ""))
    return Churn(processes, cycles, escaped, first)
