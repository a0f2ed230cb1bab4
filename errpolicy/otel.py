"""OpenTelemetry sink: guard events as log records, and a counter of them.

Install with ``pip install 'errpolicy[otel]'``.

Importing this module without OpenTelemetry's API raises
:class:`~errpolicy.MissingDependency` naming the extra; ``import errpolicy`` never
imports it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import _fields
from ._event import Action
from ._optional import missing

try:
    from opentelemetry import _logs, trace
    from opentelemetry import metrics as _metrics
except ModuleNotFoundError as error:
    raise missing(error, "opentelemetry", "opentelemetry-api", "otel", "errpolicy.otel") from error

if TYPE_CHECKING:
    from ._errors import PolicyViolation
    from ._event import Event
    from ._report import Report

__all__ = ["EventCounter", "OTelSink"]

#: The instrumentation scope of errpolicy's loggers and meters.
SCOPE = "errpolicy"
#: The counter's name.
COUNTER = "errpolicy.events"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("errpolicy")
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        return ""


class EventCounter:
    """Counts every event a guard captured, raised, recorded or suppressed, kept or
    not, on the counter ``errpolicy.events`` with the attributes ``errpolicy.guard``,
    ``errpolicy.severity`` and ``errpolicy.action``.

    ``meter_provider`` defaults to the global one (set it at boot with
    ``opentelemetry.metrics.set_meter_provider``).
    """

    __slots__ = ("_counter",)

    def __init__(self, meter_provider: Any = None) -> None:
        meter = _metrics.get_meter(SCOPE, _version(), meter_provider=meter_provider)
        self._counter = meter.create_counter(
            COUNTER, unit="{event}", description="Events captured by errpolicy guards"
        )

    def __call__(self, event: Event, /) -> None:
        self._counter.add(1, _counted(event.guard or "", event.severity, event.action))

    def guard_closed(self, report: Report, violation: PolicyViolation | None, /) -> None:
        for (action, severity), count in report.counts.items():
            self._counter.add(count, _counted(report.name, severity, action))

    def __repr__(self) -> str:
        return "EventCounter()"


def _counted(guard: str, severity: Any, action: Action | None) -> dict[str, str]:
    return {
        "errpolicy.guard": guard,
        "errpolicy.severity": _fields.severity_name(severity),
        "errpolicy.action": action.value if action else "",
    }


class OTelSink:
    """Each raised and recorded event as an OpenTelemetry log record, and the
    ``errpolicy.events`` counter (see :class:`EventCounter`).

    Records are emitted when the guard closes, in the guard's own context: the
    active span's trace and span ids attach to them, and a guard that raises sets
    that span's status to error. The body is the event's message, the severity
    number errpolicy's severity (FATAL, ERROR, WARN, then INFO4 for DEPRECATED,
    INFO2 for NOTICE, INFO, DEBUG), the attributes the event's fields (see the
    how-to page "Send events to OpenTelemetry"). Suppressed events are counted only.

    ``logger_provider`` and ``meter_provider`` default to the global ones;
    ``metrics=False`` leaves the counter out, ``span_status=False`` the span alone.
    """

    __slots__ = ("_counter", "_logger", "_span_status")

    def __init__(
        self,
        *,
        logger_provider: Any = None,
        meter_provider: Any = None,
        metrics: bool = True,
        span_status: bool = True,
    ) -> None:
        self._logger = _logs.get_logger(SCOPE, _version(), logger_provider=logger_provider)
        self._counter = EventCounter(meter_provider) if metrics else None
        self._span_status = span_status

    def __call__(self, event: Event, /) -> None:
        """Emit one event as a log record (errpolicy calls :meth:`guard_closed` instead)."""
        number = _fields.otel_severity(event.severity)
        self._logger.emit(
            _logs.LogRecord(
                timestamp=int(event.time * 1e9),
                observed_timestamp=time.time_ns(),
                severity_text=_fields.severity_name(event.severity),
                severity_number=_logs.SeverityNumber(number) if number else None,
                body=event.message,
                attributes=_fields.attributes(event),
            )
        )

    def guard_closed(self, report: Report, violation: PolicyViolation | None, /) -> None:
        for event in report.events:  # in the order captured
            if event.action is not Action.SUPPRESS:
                self(event)
        if self._counter is not None:
            self._counter.guard_closed(report, violation)
        if violation is not None and self._span_status:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_status(trace.Status(trace.StatusCode.ERROR, violation.message))

    def __repr__(self) -> str:
        return f"OTelSink(metrics={self._counter is not None}, span_status={self._span_status})"
