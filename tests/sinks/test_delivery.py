"""How a closed guard hands its events to the sink: report sinks, Sinks, failing sinks."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import errpolicy
import pytest
from errpolicy import Action, Policy, PolicyViolation, Report

RECORD_ALL = Policy(raise_on="NONE", record="ALL")
RAISE_WARNINGS = Policy(raise_on="WARNING", record="NOTICE")
log = logging.getLogger("t.sinks.delivery")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(logging.NullHandler())


class ReportList:
    """A report sink that keeps each guard's report and violation."""

    def __init__(self) -> None:
        self.closed: list[tuple[Report, PolicyViolation | None]] = []
        self.events: list[errpolicy.Event] = []

    def __call__(self, event: errpolicy.Event, /) -> None:
        self.events.append(event)

    def guard_closed(self, report: Report, violation: PolicyViolation | None, /) -> None:
        self.closed.append((report, violation))


def broken(event: errpolicy.Event, /) -> None:
    """A sink with a bug."""
    raise RuntimeError("sink bug")


def test_a_report_sink_gets_the_report_once_instead_of_each_event() -> None:
    """A sink with guard_closed gets one call with the whole report, and no per-event calls."""
    sink = ReportList()
    errpolicy.configure(sink=sink)
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        log.warning("one")
        log.info("two")
    assert [(report, None)] == sink.closed
    assert [] == sink.events


def test_a_report_sink_gets_the_violation_that_is_raised() -> None:
    """The violation handed to guard_closed is the very object the guard raises."""
    sink = ReportList()
    errpolicy.configure(sink=sink)
    with pytest.raises(PolicyViolation) as raised, errpolicy.guard("t", policy=RAISE_WARNINGS):
        log.warning("bad")
    [(_, violation)] = sink.closed
    assert raised.value is violation


def test_a_report_sink_gets_the_immediate_violation() -> None:
    """In immediate mode, guard_closed gets the violation raised inside the block."""
    sink = ReportList()
    errpolicy.configure(sink=sink)
    immediate = Policy(raise_on="WARNING", immediate=True)
    with pytest.raises(PolicyViolation) as raised, errpolicy.guard("t", policy=immediate):
        log.warning("bad")
        log.warning("not reached")
    [(report, violation)] = sink.closed
    assert raised.value is violation
    assert ["bad"] == [e.message for e in report.raised]


def test_a_report_sink_gets_no_violation_when_another_error_leaves() -> None:
    """When the block's own exception leaves the guard, there is no violation to report,
    and the raised events are notes on that exception."""
    sink = ReportList()
    errpolicy.configure(sink=sink)
    with pytest.raises(KeyError) as raised, errpolicy.guard("t", policy=RAISE_WARNINGS):
        log.warning("bad")
        raise KeyError("own")
    [(report, violation)] = sink.closed
    assert (None, ["bad"]) == (violation, [e.message for e in report.raised])
    assert any("bad" in note for note in raised.value.__notes__)


def test_a_plain_sink_still_gets_only_recorded_events(sink_events: list[errpolicy.Event]) -> None:
    """A sink without guard_closed gets each recorded event, not the raised ones."""
    with pytest.raises(PolicyViolation), errpolicy.guard("t", policy=RAISE_WARNINGS):
        log.warning("raised")
        log.log(25, "recorded")
        log.debug("suppressed")
    assert ["recorded"] == [e.message for e in sink_events]


@pytest.fixture
def sink_events() -> list[errpolicy.Event]:
    """A plain list sink, configured."""
    events: list[errpolicy.Event] = []
    errpolicy.configure(sink=events.append)
    return events


@pytest.mark.parametrize("policy", [RECORD_ALL, RAISE_WARNINGS])
def test_a_failing_sink_does_not_break_the_guarded_call(
    policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink that raises is logged on errpolicy.sinks; the guard returns (or raises its
    own violation) as if the sink had worked."""
    errpolicy.configure(sink=broken)
    with caplog.at_level(logging.ERROR, logger="errpolicy.sinks"):
        if policy is RECORD_ALL:
            with errpolicy.guard("t", policy=policy) as report:
                log.log(25, "kept")
            assert ["kept"] == [e.message for e in report.recorded]
        else:
            with pytest.raises(PolicyViolation), errpolicy.guard("t", policy=policy):
                log.log(25, "kept")
                log.warning("raised")
    [failure] = caplog.records
    assert ("errpolicy.sinks", RuntimeError) == (failure.name, failure.exc_info[0])  # type: ignore[index]


def test_a_failing_report_sink_does_not_break_the_guarded_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A guard_closed that raises is logged; the guard's violation is still raised."""

    class Broken(ReportList):
        def guard_closed(self, report: Report, violation: PolicyViolation | None, /) -> None:
            raise RuntimeError("report sink bug")

    errpolicy.configure(sink=Broken())
    with (
        caplog.at_level(logging.ERROR, logger="errpolicy.sinks"),
        pytest.raises(PolicyViolation) as raised,
        errpolicy.guard("t", policy=RAISE_WARNINGS),
    ):
        log.warning("raised")
    assert ["raised"] == [e.message for e in raised.value.report.raised]
    assert ["errpolicy.sinks"] == [r.name for r in caplog.records]


def test_what_a_failing_sink_logs_is_not_captured_by_an_enclosing_guard() -> None:
    """The sink-failure record is logged with capture off: the outer guard sees nothing."""
    errpolicy.configure(sink=broken)
    with (
        errpolicy.guard("outer", policy=RECORD_ALL) as outer,
        errpolicy.guard("inner", policy=RECORD_ALL),
    ):
        log.warning("w")
    assert () == outer.events


def test_sinks_hands_everything_to_each_sink_in_order() -> None:
    """Sinks gives plain sinks each recorded event and report sinks the report."""
    plain: list[str] = []
    reports = ReportList()
    errpolicy.configure(sink=errpolicy.Sinks(lambda e: plain.append(e.message), reports))
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        log.warning("one")
        warnings.warn("two", UserWarning)
    assert (["one", "two"], [(report, None)]) == (plain, reports.closed)


def test_sinks_goes_on_past_a_failing_sink(caplog: pytest.LogCaptureFixture) -> None:
    """One failing sink in Sinks does not keep the next from its events."""
    after: list[str] = []
    errpolicy.configure(sink=errpolicy.Sinks(broken, lambda e: after.append(e.message)))
    with (
        caplog.at_level(logging.ERROR, logger="errpolicy.sinks"),
        errpolicy.guard("t", policy=RECORD_ALL),
    ):
        log.warning("one")
    assert ["one"] == after
    assert 1 == len(caplog.records)


def test_sinks_refuses_what_is_not_callable() -> None:
    """Sinks(...) with a non-callable raises ConfigurationError."""
    with pytest.raises(errpolicy.ConfigurationError, match="must be callable"):
        errpolicy.Sinks(errpolicy.NullSink(), "log")  # type: ignore[arg-type]


def test_counts_reach_a_report_sink_for_dropped_and_suppressed_events() -> None:
    """The report a sink gets counts every event, kept or not."""
    sink = ReportList()
    errpolicy.configure(sink=sink, max_events=2)
    with errpolicy.guard("t", policy=Policy(raise_on="NONE", record="NONE")):
        for _ in range(5):
            log.warning("w")
    [(report, _)] = sink.closed
    assert 5 == report.count(Action.SUPPRESS)


@pytest.mark.parametrize(
    ("module", "extra"), [("errpolicy.otel", "otel"), ("errpolicy.sentry", "sentry")]
)
def test_without_the_extra_the_import_names_it(module: str, extra: str) -> None:
    """Importing a sink module without its dependency raises MissingDependency naming the extra."""
    blocked = "opentelemetry" if extra == "otel" else "sentry_sdk"
    script = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None\n"
        "import errpolicy\n"
        "try:\n"
        f"    import {module}\n"
        "except errpolicy.MissingDependency as e:\n"
        "    print(isinstance(e, ImportError), e.extra, e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert f"True {extra} " in result.stdout
    assert f"pip install 'errpolicy[{extra}]'" in result.stdout


def test_import_errpolicy_imports_no_sink_backend() -> None:
    """import errpolicy (and a guard) leaves OpenTelemetry and Sentry unimported."""
    script = (
        "import sys, errpolicy\n"
        "with errpolicy.guard('t'): pass\n"
        "names = ('opentelemetry', 'sentry_sdk', 'errpolicy.otel', 'errpolicy.sentry')\n"
        "print(sorted(m for m in sys.modules if m.startswith(names)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "[]" == result.stdout.strip()
