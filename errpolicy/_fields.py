"""An event as flat attributes for telemetry backends (OpenTelemetry, Sentry): the
decisions of errpolicy.otel and errpolicy.sentry, apart from their I/O.

Attribute values are str, int, float or lists of str, as OpenTelemetry and Sentry
both accept. Names follow OpenTelemetry's semantic conventions where one exists
(``code.*``, ``thread.*``, ``exception.*``), else ``errpolicy.*``.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from ._errors import LoggedEvent
from ._event import Action
from ._severity import Severity

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["attributes", "exception_attributes", "otel_severity", "qualified_name", "severity_name"]

Value = str | int | float | list[str]

# OpenTelemetry's SeverityNumber for each errpolicy severity: the stdlib levels where
# OpenTelemetry's logging bridge puts them, NOTICE and DEPRECATED in between, in order.
_OTEL_SEVERITY = (
    (Severity.CRITICAL, 21),  # FATAL
    (Severity.ERROR, 17),  # ERROR
    (Severity.WARNING, 13),  # WARN
    (Severity.DEPRECATED, 12),  # INFO4
    (Severity.NOTICE, 10),  # INFO2
    (Severity.INFO, 9),  # INFO
    (Severity.DEBUG, 5),  # DEBUG
)


def otel_severity(severity: Severity) -> int:
    """OpenTelemetry's severity number for ``severity`` (its highest bit; 0 for NONE)."""
    for flag, number in _OTEL_SEVERITY:
        if severity & flag:
            return number
    return 0


def severity_name(severity: Severity) -> str:
    """``"WARNING"``; a mask that a classifier returned reads ``"NOTICE | WARNING"``."""
    return (severity.name if severity in _SINGLE else None) or severity.describe()


_SINGLE = frozenset(flag for flag, _ in _OTEL_SEVERITY)


def qualified_name(kind: type) -> str:
    """``"DeprecationWarning"``, ``"errpolicy.LoggedEvent"``, ``"shop.errors.Late"``."""
    module = kind.__module__
    if module == "builtins":
        return kind.__qualname__
    if module.startswith("errpolicy._"):  # our private modules: the public name
        return f"errpolicy.{kind.__qualname__}"
    return f"{module}.{kind.__qualname__}"


def attributes(event: Event) -> dict[str, Value]:
    """The event's fields; the store's outcome for store events; ``exception.*`` for
    raised ones."""
    found: dict[str, Value] = {
        "errpolicy.guard": event.guard or "",
        "errpolicy.action": event.action.value if event.action else "",
        "errpolicy.severity": severity_name(event.severity),
        "errpolicy.source": event.source,
        "errpolicy.classified_by": event.classified_by,
        "code.file.path": event.filename,
        "code.line.number": event.lineno,
        "thread.name": event.thread,
        "thread.id": event.thread_id,
    }
    if event.logger is not None:
        found["errpolicy.logger"] = event.logger
    if event.level is not None:
        found["errpolicy.level"] = event.level
    if event.category is not None:
        found["errpolicy.category"] = qualified_name(event.category)
    if event.task is not None:
        found["errpolicy.task"] = event.task
    found.update(_outcome_attributes(event))
    if event.action is Action.RAISE:
        found.update(exception_attributes(event))
    return found


def _outcome_attributes(event: Event) -> dict[str, Value]:
    # The memcache store attaches its Outcome to the record (extra={"outcome": ...});
    # read by shape, so the core never imports the adapter.
    outcome: Any = getattr(event.original, "outcome", None)
    if outcome is None or not all(
        hasattr(outcome, name) for name in ("operation", "kind", "flags", "nodes", "version")
    ):
        return {}
    found: dict[str, Value] = {
        "errpolicy.store.operation": str(outcome.operation),
        "errpolicy.store.outcome": str(getattr(outcome.kind, "value", outcome.kind)),
        "errpolicy.store.flags": sorted(str(getattr(f, "value", f)) for f in outcome.flags),
        "errpolicy.store.node_results": [str(result) for result in outcome.nodes],
    }
    if outcome.version is not None:
        found["errpolicy.store.version"] = int(outcome.version)
    served_by = getattr(outcome, "served_by", None)
    if served_by is not None:
        found["errpolicy.store.served_by"] = str(served_by)
    key = getattr(outcome, "key", None)
    if key is not None:
        found["errpolicy.store.key"] = str(key)
    return found


def exception_attributes(event: Event) -> dict[str, Value]:
    """``exception.type`` and ``exception.message`` of what stands for ``event`` in
    the guard's PolicyViolation: the warning, the logged exception (with its
    ``exception.stacktrace``), else a :class:`~errpolicy.LoggedEvent`."""
    original = event.original
    if event.source == "warning":
        warning = getattr(original, "message", None)
        if isinstance(warning, Warning):
            return {
                "exception.type": qualified_name(type(warning)),
                "exception.message": str(warning),
            }
    exc_info = getattr(original, "exc_info", None)
    if isinstance(exc_info, tuple) and isinstance(exc_info[1], BaseException):
        error = exc_info[1]
        return {
            "exception.type": qualified_name(type(error)),
            "exception.message": str(error),
            "exception.stacktrace": "".join(traceback.format_exception(error)),
        }
    return {
        "exception.type": qualified_name(LoggedEvent),
        "exception.message": str(LoggedEvent(event)),
    }
