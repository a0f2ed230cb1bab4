"""Benchmarks of the errpolicy core, each a ratio against its stdlib baseline.

Every row times two variants, errpolicy's and the baseline, in the same process,
interleaved round by round (A B, then B A, ...), so that a noisy shared machine
slows both alike. The ratio of a row is the median of the per-round ratios, and
decides pass or fail; the best-of ratio (fastest round of each variant) and the
range of the per-round ratios are shown beside it.

Rows (issue 2, item 11, and issue 9's speed targets):

- ``guard enter/exit``: ``with errpolicy.guard(...)`` around nothing, against
  ``warnings.catch_warnings(record=True)`` + ``simplefilter("always")``.
  Target: at most 0.2x.
- ``guard enter/exit, object reused``: the same with one ``Guard`` object built
  before the loop and entered again each time (no target; it shows how much of
  the first row is building the guard).
- ``guard(name, policy=...)``: the first row with an inline policy, as a call
  site that brings its own policy writes it. Target: at most 0.3x.
- ``guard + 1 warning``: the same with one ``warnings.warn`` inside, recorded
  (``NullSink``: kept on the report only, as ``record=True`` keeps it in a list).
  Target: at most 1.0x.
- ``logger.warning, idle``: a ``logger.warning`` outside every guard, formatted
  into a ``StringIO``, with errpolicy installed against uninstalled.
  Target: at most 5 % slower.
- ``logger.debug below level, idle``: a ``logger.debug`` that the logger's level
  filters out, installed against uninstalled. Target: at most 5 % slower.
- ``logger.debug below level, capture_log_level``: the same with the opt-in
  ``configure(capture_log_level="DEBUG")``, reported apart (no target: it is
  documented to cost something on every call).
- ``warnings.warn outside guards``: a repeated warning that the calling module's
  ``__warningregistry__`` already suppresses, installed against uninstalled
  (no target; for the record, since ``warnings.warn`` itself is wrapped).
- ``warnings.warn under an ignore filter``: a warning that an ``ignore`` filter
  drops (CPython keeps no registry entry for it, so the filters run every time),
  installed against uninstalled. Target: at most 1.10x.

``python -m bench.callgrind`` counts the instructions of each row's two loops
under valgrind (see :mod:`bench.callgrind`); the rows are listed in ``ROWS``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import errpolicy
from errpolicy.testing import configured

Timer = Callable[[int], float]  # runs n iterations, returns ns per iteration


@dataclass(frozen=True, slots=True)
class Result:
    """One row: errpolicy's variant against its baseline."""

    name: str
    errpolicy_ns: float  # median ns per operation
    baseline_ns: float
    ratio: float  # median of the per-round ratios errpolicy / baseline
    best_ratio: float  # best (lowest) errpolicy time over best baseline time
    spread: tuple[float, float]  # lowest and highest per-round ratio
    target: str  # "<= 0.25x", "<= +5 %", or "" for no target
    passed: bool | None  # None when there is no target
    rounds: int
    iterations: int

    @property
    def shown_ratio(self) -> str:
        if self.target.startswith("<= +"):
            return f"{(self.ratio - 1) * 100:+.1f} %"
        return f"{self.ratio:.3f}x"


# -- the timed bodies -----------------------------------------------------------
# Each returns nanoseconds per iteration; the loop is inside so that calling the
# timer costs nothing per iteration. Both variants of a row pay the same loop.


def _guard_idle(n: int) -> float:
    guard = errpolicy.guard
    start = time.perf_counter_ns()
    for _ in range(n):
        with guard("bench"):
            pass
    return (time.perf_counter_ns() - start) / n


def _guard_reused(n: int) -> float:
    guard = errpolicy.guard("bench")
    start = time.perf_counter_ns()
    for _ in range(n):
        with guard:
            pass
    return (time.perf_counter_ns() - start) / n


_RECORD_ALL = errpolicy.Policy(raise_on="NONE", record="ALL")


def _guard_inline_policy(n: int) -> float:
    guard, policy = errpolicy.guard, _RECORD_ALL
    start = time.perf_counter_ns()
    for _ in range(n):
        with guard("bench", policy=policy):
            pass
    return (time.perf_counter_ns() - start) / n


def _stdlib_idle(n: int) -> float:
    catch, simplefilter = warnings.catch_warnings, warnings.simplefilter
    start = time.perf_counter_ns()
    for _ in range(n):
        with catch(record=True):
            simplefilter("always")
    return (time.perf_counter_ns() - start) / n


def _guard_one_warning(n: int) -> float:
    guard, warn, policy = errpolicy.guard, warnings.warn, _RECORD_ALL
    start = time.perf_counter_ns()
    for _ in range(n):
        with guard("bench", policy=policy) as report:
            warn("bench", UserWarning, stacklevel=1)
    elapsed = time.perf_counter_ns() - start
    assert len(report.recorded) == 1, report
    return elapsed / n


def _stdlib_one_warning(n: int) -> float:
    catch, simplefilter, warn = warnings.catch_warnings, warnings.simplefilter, warnings.warn
    start = time.perf_counter_ns()
    for _ in range(n):
        with catch(record=True) as caught:
            simplefilter("always")
            warn("bench", UserWarning, stacklevel=1)
    elapsed = time.perf_counter_ns() - start
    assert len(caught) == 1, caught
    return elapsed / n


def _make_logger() -> tuple[logging.Logger, io.StringIO]:
    """A logger as an application has one: level WARNING, a formatting handler."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    )
    logger = logging.getLogger("errpolicy.bench.app")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    return logger, stream


_LOGGER, _STREAM = _make_logger()


def _log_warning(n: int) -> float:
    log = _LOGGER.warning
    _STREAM.seek(0)
    _STREAM.truncate()
    start = time.perf_counter_ns()
    for i in range(n):
        log("cache miss for %s after %d tries", "user:42", i)
    return (time.perf_counter_ns() - start) / n


def _log_debug(n: int) -> float:
    log = _LOGGER.debug
    start = time.perf_counter_ns()
    for i in range(n):
        log("cache miss for %s after %d tries", "user:42", i)
    return (time.perf_counter_ns() - start) / n


class _BenchWarning(UserWarning):
    """Only these benchmarks raise it."""


def _warn_repeat(n: int) -> float:
    warn = warnings.warn
    start = time.perf_counter_ns()
    for _ in range(n):
        warn("deprecated spelling", _BenchWarning, stacklevel=1)
    return (time.perf_counter_ns() - start) / n


class _IgnoredBenchWarning(UserWarning):
    """Only the ignore-filter row raises it; an ``ignore`` filter drops it."""


IGNORE_FILTER = ("ignore", None, _IgnoredBenchWarning, None, 0)


def _warn_ignored(n: int) -> float:
    warn = warnings.warn
    start = time.perf_counter_ns()
    for _ in range(n):
        warn("dropped by a filter", _IgnoredBenchWarning, stacklevel=1)
    return (time.perf_counter_ns() - start) / n


def _first_warning_shown() -> None:
    """Let the first occurrence through (quietly), so the registry holds the repeats."""
    with contextlib.redirect_stderr(io.StringIO()):
        _warn_repeat(1)


def _installed(timer: Timer) -> Timer:
    def run(n: int) -> float:
        errpolicy.install()
        return timer(n)

    return run


def _uninstalled(timer: Timer) -> Timer:
    def run(n: int) -> float:
        errpolicy.uninstall()
        return timer(n)

    return run


# -- the harness ----------------------------------------------------------------


def _sample(timer: Timer, n: int) -> float:
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return timer(n)
    finally:
        if gc_was_on:
            gc.enable()


def _calibrate(timer: Timer, seconds: float) -> int:
    """Iterations that take about ``seconds`` (at least 10)."""
    n = 10
    while True:
        per = _sample(timer, n)
        if per * n >= seconds * 1e9 / 4 or n >= 10_000_000:
            return max(10, int(seconds * 1e9 / max(per, 1.0)))
        n *= 4


@dataclass(frozen=True, slots=True)
class Target:
    """A row's target: the highest median ratio that passes, and how it is shown."""

    label: str
    limit: float


FIFTH = Target("<= 0.2x", 0.2)
THREE_TENTHS = Target("<= 0.3x", 0.3)
PAR = Target("<= 1.0x", 1.0)
TEN_PERCENT = Target("<= 1.1x", 1.1)
FIVE_PERCENT = Target("<= +5 %", 1.05)


def compare(
    name: str,
    ours: Timer,
    baseline: Timer,
    *,
    rounds: int,
    seconds: float,
    target: Target | None = None,
) -> Result:
    """Time ``ours`` and ``baseline`` interleaved over ``rounds`` and compare them."""
    ours(100)  # warm up both (first calls fill caches, the logger's included)
    baseline(100)
    n = min(_calibrate(ours, seconds), _calibrate(baseline, seconds))
    ours_ns: list[float] = []
    base_ns: list[float] = []
    ratios: list[float] = []
    for i in range(rounds):
        if i % 2 == 0:
            a = _sample(ours, n)
            b = _sample(baseline, n)
        else:
            b = _sample(baseline, n)
            a = _sample(ours, n)
        ours_ns.append(a)
        base_ns.append(b)
        ratios.append(a / b)
    ratio = statistics.median(ratios)
    return Result(
        name=name,
        errpolicy_ns=statistics.median(ours_ns),
        baseline_ns=statistics.median(base_ns),
        ratio=ratio,
        best_ratio=min(ours_ns) / min(base_ns),
        spread=(min(ratios), max(ratios)),
        target="" if target is None else target.label,
        passed=None if target is None else ratio <= target.limit,
        rounds=rounds,
        iterations=n,
    )


@dataclass(frozen=True, slots=True)
class Row:
    """A benchmark: errpolicy's loop, the baseline's, its target, and its state.

    ``state`` names what must be set before the loops run (see :func:`prepared`):
    ``"plain"``, ``"repeat"`` (the first warning shown, so repeats hit the
    registry), ``"ignore"`` (an ignore filter) or ``"capture_level"``.
    """

    key: str
    name: str
    ours: Timer
    baseline: Timer
    target: Target | None = None
    state: str = "plain"


ROWS = (
    Row(
        "guard",
        "guard enter/exit vs catch_warnings(record=True)+always",
        _guard_idle,
        _stdlib_idle,
        FIFTH,
    ),
    Row(
        "guard-reused",
        "guard enter/exit, Guard object reused, vs the same stdlib block",
        _guard_reused,
        _stdlib_idle,
    ),
    Row(
        "guard-policy",
        "guard(name, policy=...) enter/exit vs the same stdlib block",
        _guard_inline_policy,
        _stdlib_idle,
        THREE_TENTHS,
    ),
    Row(
        "warning",
        "guard + 1 recorded warning vs catch_warnings equivalent",
        _guard_one_warning,
        _stdlib_one_warning,
        PAR,
    ),
    Row(
        "log-warning",
        "logger.warning outside guards, installed vs not",
        _installed(_log_warning),
        _uninstalled(_log_warning),
        FIVE_PERCENT,
    ),
    Row(
        "log-debug",
        "logger.debug below level, installed vs not",
        _installed(_log_debug),
        _uninstalled(_log_debug),
        FIVE_PERCENT,
    ),
    Row(
        "warn-repeat",
        "warnings.warn repeat outside guards, installed vs not",
        _installed(_warn_repeat),
        _uninstalled(_warn_repeat),
        state="repeat",
    ),
    Row(
        "warn-ignored",
        "warnings.warn under an ignore filter outside guards, installed vs not",
        _installed(_warn_ignored),
        _uninstalled(_warn_ignored),
        TEN_PERCENT,
        state="ignore",
    ),
    Row(
        "log-debug-capture",
        "logger.debug below level, capture_log_level=DEBUG (opt-in)",
        _installed(_log_debug),
        _uninstalled(_log_debug),
        state="capture_level",
    ),
)


@contextlib.contextmanager
def prepared(state: str) -> Iterator[None]:
    """errpolicy installed with a NullSink, plus what a row's ``state`` asks for;
    everything is restored on exit (configuration, install state, filters)."""
    was_installed = errpolicy.installed()
    filters: list[object] = warnings.filters  # type: ignore[assignment]  # a list in fact
    try:
        with configured(sink=errpolicy.NullSink(), capture_log_level=None):
            if state == "ignore":
                filters.insert(0, IGNORE_FILTER)
            errpolicy.install()
            if state == "repeat":
                _first_warning_shown()
            elif state == "capture_level":
                errpolicy.configure(capture_log_level="DEBUG")
            yield
    finally:
        while IGNORE_FILTER in filters:
            filters.remove(IGNORE_FILTER)
        if not was_installed:
            errpolicy.uninstall()


def run(*, quick: bool = False, keys: Sequence[str] = ()) -> list[Result]:
    """Run the core benchmarks (those of ``keys``, else all) and restore
    errpolicy's configuration and install state."""
    rounds, seconds = (3, 0.005) if quick else (31, 0.03)
    results: list[Result] = []
    for r in ROWS:
        if keys and r.key not in keys:
            continue
        with prepared(r.state):
            results.append(
                compare(r.name, r.ours, r.baseline, rounds=rounds, seconds=seconds, target=r.target)
            )
    return results


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| benchmark | errpolicy | baseline | ratio | best-of ratio | rounds' range "
        "| target | result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        verdict = "-" if r.passed is None else ("pass" if r.passed else "FAIL")
        low, high = r.spread
        lines.append(
            f"| {r.name} | {r.errpolicy_ns:,.0f} ns | {r.baseline_ns:,.0f} ns "
            f"| {r.shown_ratio} | {r.best_ratio:.3f}x | {low:.2f}-{high:.2f}x "
            f"| {r.target or '-'} | {verdict} |"
        )
    return "\n".join(lines)


def environment() -> dict[str, str]:
    """Where the numbers were taken."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "system": platform.system(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.core_bench [--quick] [--json PATH] [--strict]``.

    Returns 0; with ``--strict``, 1 when a target is missed (the table says FAIL either way).
    """
    parser = argparse.ArgumentParser(prog="python -m bench.core_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (for smoke tests)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--row", action="append", default=[], choices=[r.key for r in ROWS], help="only this row"
    )
    args = parser.parse_args(argv)
    results = run(quick=args.quick, keys=args.row)
    env = environment()
    print(f"errpolicy core benchmarks (Python {env['python']}, {env['machine']})")
    print(table(results))
    if args.json:
        payload = {
            "suite": "core",
            "quick": args.quick,
            "environment": env,
            "results": [asdict(r) for r in results],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
    missed = any(r.passed is False for r in results)
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
