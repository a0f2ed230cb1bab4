"""What a guard captured: one frozen value per warning, log record or structlog event."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

from ._severity import Severity

Source = Literal["warning", "logging", "structlog"]


class Action(enum.Enum):
    """What the policy did with an event."""

    RAISE = "raise"
    RECORD = "record"
    SUPPRESS = "suppress"


@dataclass(frozen=True, slots=True)
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
