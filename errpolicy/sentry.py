"""Sentry sink: recorded events as Sentry logs, violations as errors.

Install with ``pip install 'errpolicy[sentry]'``.

Importing this module without sentry-sdk raises :class:`~errpolicy.MissingDependency`
naming the extra; ``import errpolicy`` never imports it.
"""

from __future__ import annotations

import logging
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import _capture, _fields
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


# The log records guards kept from the handlers (taken, raised on, or made only for
# guards). Weak: a record lives as long as its event does, no longer.
_kept: weakref.WeakSet[logging.LogRecord] = weakref.WeakSet()

# Where LoggingIntegration keeps its handlers (events, breadcrumbs, Sentry logs);
# each release has some of them.
_HANDLERS = ("_handler", "_breadcrumb_handler", "_sentry_logs_handler")


class _SkipKept(logging.Filter):
    """The filter on Sentry's logging handlers: a record a guard kept is not theirs
    to report (a guard decides, and this sink sends what it recorded or raised)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record not in _kept

    def __repr__(self) -> str:
        return "<errpolicy: skip the records guards kept>"


_SKIP = _SkipKept()


def _keep_from_sentry(record: logging.LogRecord) -> None:
    """Mark ``record`` as kept by a guard, and make sure the current client's logging
    integration skips marked records.

    Sentry initialised after errpolicy wraps errpolicy's ``Logger.callHandlers`` hook
    and hands its handlers every record after the hook returns; errpolicy calls this
    before it does (see ``errpolicy._capture.RECORDS_KEPT``). Sentry initialised
    first is wrapped by errpolicy's hook and never sees a kept record.
    """
    integration = _sentry.get_client().get_integration("logging")
    if integration is None:
        return
    for name in _HANDLERS:
        handler = getattr(integration, name, None)
        if isinstance(handler, logging.Handler) and _SKIP not in handler.filters:
            handler.addFilter(_SKIP)
    _kept.add(record)


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
    reaches Sentry twice. Sentry and errpolicy may be initialised in either order:
    once a ``SentrySink`` exists, the log records guards take (suppress, record or
    raise on) are kept from Sentry's logging integration (see the how-to page
    "Send events to Sentry").
    """

    __slots__ = ()

    def __init__(self) -> None:
        if _keep_from_sentry not in _capture.RECORDS_KEPT:
            _capture.RECORDS_KEPT.append(_keep_from_sentry)

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
        for event in report.recorded:
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
