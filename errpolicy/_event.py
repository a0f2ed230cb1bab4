"""What a guard captured: one frozen value per warning, log record or structlog event."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from . import _core
from ._severity import Severity

Source = Literal["warning", "logging", "structlog"]


class Action(enum.Enum):
    """What the policy did with an event."""

    RAISE = "raise"
    RECORD = "record"
    SUPPRESS = "suppress"

    # Members are compared by identity, so the identity hash is consistent; Enum's
    # own hashes the name in Python, and reports count by (action, severity).
    __hash__ = object.__hash__


# init=False: the dataclass __init__ sets 16 frozen fields one by one through
# object.__setattr__, a quarter of the cost of capturing a warning; ours fills
# them in one call (in C where it was built).
@dataclass(frozen=True, slots=True, init=False)
class Event:
    """One warning, log record or structlog event captured by a guard.

    ``severity`` and ``action`` are final once the guard has decided; classifiers
    see the event with ``severity`` set to the default classification and
    ``action`` still ``None``.
    """

    source: Source
    severity: Severity
    action: Action | None
    message: str
    #: The warning category, for ``source == "warning"``.
    category: type[Warning] | None
    #: The logger name, for log records and structlog events.
    logger: str | None
    #: The stdlib logging level number, for log records and structlog events.
    level: int | None
    filename: str
    lineno: int
    #: Seconds since the epoch, as ``time.time()``.
    time: float
    thread: str
    thread_id: int
    #: The asyncio task's name, or ``None`` outside a task.
    task: str | None
    #: The ``warnings.WarningMessage``, ``logging.LogRecord`` or structlog event dict.
    original: Any
    #: The name of the guard that decided, ``None`` while undecided.
    guard: str | None = None
    #: The ``repr`` of the classifier whose answer set ``severity``.
    classified_by: str = "default"

    def __init__(
        self,
        source: Source,
        severity: Severity,
        action: Action | None,
        message: str,
        category: type[Warning] | None,
        logger: str | None,
        level: int | None,
        filename: str,
        lineno: int,
        time: float,
        thread: str,
        thread_id: int,
        task: str | None,
        original: Any,
        guard: str | None = None,
        classified_by: str = "default",
    ) -> None:
        _fill(
            self,
            source,
            severity,
            action,
            message,
            category,
            logger,
            level,
            filename,
            lineno,
            time,
            thread,
            thread_id,
            task,
            original,
            guard,
            classified_by,
        )

    def as_dict(self) -> dict[str, Any]:
        """The event's fields as plain data, for structured logging (no ``original``)."""
        return {
            "guard": self.guard,
            "source": self.source,
            "severity": self.severity.name,
            "action": self.action.value if self.action else None,
            "message": self.message,
            "category": self.category.__name__ if self.category else None,
            "logger": self.logger,
            "level": self.level,
            "filename": self.filename,
            "lineno": self.lineno,
            "time": self.time,
            "thread": self.thread,
            "task": self.task,
            "classified_by": self.classified_by,
        }

    def describe(self) -> str:
        """One line: ``WARNING raise logging errpolicy_memcache: all replicas down``."""
        where = self.category.__name__ if self.category else self.logger or self.source
        action = self.action.value if self.action else "undecided"
        return f"{self.severity.name} {action} {self.source} {where}: {self.message}"


_FIELDS = tuple(f.name for f in fields(Event))
_DEFAULTS = (None, "default")  # guard, classified_by
_REQUIRED = len(_FIELDS) - len(_DEFAULTS)


# The slots' own setters, called in straight-line code: a loop over the names
# with object.__setattr__ cost more than the dataclass __init__ it replaces.
_setters = tuple(getattr(Event, name).__set__ for name in _FIELDS)


def _py_fill(
    event: Event,
    source: Any,
    severity: Any,
    action: Any,
    message: Any,
    category: Any,
    logger: Any,
    level: Any,
    filename: Any,
    lineno: Any,
    time: Any,
    thread: Any,
    thread_id: Any,
    task: Any,
    original: Any,
    guard: Any = None,
    classified_by: Any = "default",
    /,
) -> None:
    _setters[0](event, source)
    _setters[1](event, severity)
    _setters[2](event, action)
    _setters[3](event, message)
    _setters[4](event, category)
    _setters[5](event, logger)
    _setters[6](event, level)
    _setters[7](event, filename)
    _setters[8](event, lineno)
    _setters[9](event, time)
    _setters[10](event, thread)
    _setters[11](event, thread_id)
    _setters[12](event, task)
    _setters[13](event, original)
    _setters[14](event, guard)
    _setters[15](event, classified_by)


def _py_new_event(*values: Any) -> Event:
    given = len(values)
    if not _REQUIRED <= given <= len(_FIELDS):  # as the C version says it
        raise TypeError(f"an Event takes {_REQUIRED} to {len(_FIELDS)} fields, not {given}")
    event = Event.__new__(Event)
    _py_fill(event, *values)
    return event


_fill: Callable[..., None]
#: ``new_event(source, severity, action, message, category, logger, level, filename,
#: lineno, time, thread, thread_id, task, original[, guard[, classified_by]])``: an
#: Event from its fields in declaration order, the fast way to make one on a capture
#: path (in C: one allocation and 16 slot stores, no ``__init__`` call).
new_event: Callable[..., Event]
if _core.compiled is None:
    _fill, new_event = _py_fill, _py_new_event
else:
    _core.compiled.setup_event(Event, _FIELDS, _DEFAULTS, Action.RAISE)
    # log_direct's events hold what their record is made of until ``original`` is read.
    _core.compiled.lazy_original(Event)
    _fill, new_event = _core.compiled.fill_event, _core.compiled.new_event
