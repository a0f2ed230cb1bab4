"""The pure mapping from events to telemetry attributes (errpolicy/_fields.py)."""

from __future__ import annotations

import warnings

import errpolicy
import pytest
from errpolicy import Policy, Severity
from errpolicy._fields import attributes, otel_severity, qualified_name, severity_name


class LateWarning(UserWarning):
    """A warning class of the application's own."""


@pytest.mark.parametrize(
    ("severity", "number"),
    [
        (Severity.NONE, 0),
        (Severity.DEBUG, 5),
        (Severity.NOTICE | Severity.DEBUG, 10),
        (Severity.DEPRECATED, 12),
        (Severity.WARNING | Severity.DEPRECATED, 13),
        (Severity.ALL, 21),
    ],
)
def test_a_mask_maps_by_its_highest_bit(severity: Severity, number: int) -> None:
    """The severity number is that of the highest severity in the mask."""
    assert number == otel_severity(severity)


def test_a_mask_is_named_by_its_parts() -> None:
    """A classifier's mask reads as the grammar writes it; a single flag by its name."""
    assert ("NOTICE | WARNING", "ERROR") == (
        severity_name(Severity.NOTICE | Severity.WARNING),
        severity_name(Severity.ERROR),
    )


def test_qualified_names() -> None:
    """Builtins bare, errpolicy's by their public name, others by module and qualname."""
    assert ["RuntimeWarning", "errpolicy.LoggedEvent", f"{__name__}.LateWarning"] == [
        qualified_name(RuntimeWarning),
        qualified_name(errpolicy.LoggedEvent),
        qualified_name(LateWarning),
    ]


def test_a_raised_warning_of_an_application_class() -> None:
    """A raised warning: category and exception.type name the application's class."""
    errpolicy.configure(sink=errpolicy.NullSink())
    with (
        pytest.raises(errpolicy.PolicyViolation) as raised,
        errpolicy.guard("t", policy=Policy(raise_on="WARNING")),
    ):
        warnings.warn("late", LateWarning)
    [event] = raised.value.report.raised
    found = attributes(event)
    assert (f"{__name__}.LateWarning", f"{__name__}.LateWarning", "late") == (
        found["errpolicy.category"],
        found["exception.type"],
        found["exception.message"],
    )


def test_a_recorded_event_has_no_exception_attributes() -> None:
    """exception.* are for raised events only."""
    errpolicy.configure(sink=errpolicy.NullSink())
    with errpolicy.guard("t", policy=Policy(raise_on="NONE", record="ALL")) as report:
        warnings.warn("late", LateWarning)
    [event] = report.events
    assert [] == [k for k in attributes(event) if k.startswith("exception.")]
