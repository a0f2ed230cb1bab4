"""Sentry sink: recorded events as Sentry logs, violations as errors.

Install with ``pip install 'errpolicy[sentry]'``.

Importing this module without sentry-sdk raises :class:`~errpolicy.MissingDependency`
naming the extra; ``import errpolicy`` never imports it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import _fields
from ._optional import missing
from ._severity import Severity

try:
    import sentry_sdk as _sentry
except ModuleNotFoundError as error:
    raise missing(error, "sentry_sdk", "sentry-sdk", "sentry", "errpolicy.sentry") from error

_sentry_logger: Any
try:
    from sentry_sdk import logger as _sentry_logger  # Sentry logs, in recent releases
except ImportError:
    _sentry_logger = None

if TYPE_CHECKING:
    from ._errors import PolicyViolation
    from ._event import Event
    from ._report import Report

__all__ = ["SentrySink"]

# sentry_sdk.logger's function and the breadcrumb level for each severity (highest bit).
_LEVELS = (
    (Severity.CRITICAL, "fatal", "fatal"),
    (Severity.ERROR, "error", "error"),
    (Severity.WARNING | Severity.DEPRECATED, "warning", "warning"),
    (Severity.NOTICE | Severity.INFO, "info", "info"),
    (Severity.DEBUG, "debug", "debug"),
)


def _levels(severity: Severity) -> tuple[str, str]:
    for flags, log_function, breadcrumb_level in _LEVELS:
        if severity & flags:
            return log_function, breadcrumb_level
    return "debug", "debug"


def sentry_sees_guarded_records(client: Any) -> bool:
    """Whether Sentry's logging integration is on and its ``callHandlers`` patch wraps
    errpolicy's (Sentry initialised after errpolicy installed its hooks): then Sentry
    reports the log records that guards take by itself."""
    from . import _hooks

    layer = _hooks._layers.get("callHandlers")
    current = logging.Logger.callHandlers
    if layer is None or current is layer or not _hooks._reaches(current, layer):
        return False
    get_integration = getattr(client, "get_integration", None)
    return get_integration is not None and get_integration("logging") is not None


def logs_enabled(client: Any) -> bool:
    """Whether ``client`` sends Sentry logs (``enable_logs=True``, or the experiment
    of older releases) and this sentry-sdk has ``sentry_sdk.logger``."""
    options = getattr(client, "options", None) or {}
    enabled = options.get("enable_logs") or (options.get("_experiments") or {}).get("enable_logs")
    return bool(enabled) and _sentry_logger is not None


class SentrySink:
    """Recorded events as Sentry logs when the client has logs enabled, else as
    breadcrumbs (they travel with the next error); a guard's
    :class:`~errpolicy.PolicyViolation` through ``sentry_sdk.capture_exception``,
    once, tagged ``errpolicy.guard``. Suppressed events are left out.

    Sentry's logging integration reports what the ``errpolicy`` logger logs: with
    another sink that logs there (the default one), call
    ``sentry_sdk.integrations.logging.ignore_logger("errpolicy")`` (and
    ``ignore_logger_for_sentry_logs("errpolicy")`` with logs on), or each event
    reaches Sentry twice. When Sentry was initialised after errpolicy installed its
    hooks, Sentry's integration sees the log records guards take and reports them
    itself; this sink then leaves recorded log records out (see the how-to page
    "Send events to Sentry").
    """

    __slots__ = ()

    def __call__(self, event: Event, /) -> None:
        """Send one recorded event (errpolicy calls :meth:`guard_closed` instead)."""
        log_function, breadcrumb_level = _levels(event.severity)
        attributes = _fields.attributes(event)
        if logs_enabled(_sentry.get_client()):
            getattr(_sentry_logger, log_function)(event.message, attributes=attributes)
        else:
            _sentry.add_breadcrumb(
                type="log",
                category=event.logger or "errpolicy",
                level=breadcrumb_level,
                message=event.message,
                data=attributes,
                timestamp=datetime.fromtimestamp(event.time, UTC),
            )

    def guard_closed(self, report: Report, violation: PolicyViolation | None, /) -> None:
        recorded = report.recorded
        if recorded and sentry_sees_guarded_records(_sentry.get_client()):
            # Sentry's integration already reported these records, at its own levels.
            recorded = tuple(event for event in recorded if event.source != "logging")
        for event in recorded:
            self(event)
        if violation is None:
            return
        with _sentry.new_scope() as scope:
            scope.set_tag("errpolicy.guard", report.name)
            scope.set_context(
                "errpolicy",
                {
                    "guard": report.name,
                    "raise_on": report.policy.raise_on.describe(),
                    "events": [event.describe() for event in report.raised],
                },
            )
            _sentry.capture_exception(violation)

    def __repr__(self) -> str:
        return "SentrySink()"
