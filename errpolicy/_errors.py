"""The exception tree: one root, each error also the builtin it resembles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._event import Event
    from ._report import Report


class ErrpolicyError(Exception):
    """Root of every exception errpolicy raises."""


class ConfigurationError(ErrpolicyError, ValueError):
    """Bad configuration or a bad policy string.

    ``key`` names the configuration entry (``None`` for a bare string),
    ``text`` and ``position`` locate the offending token when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        text: str | None = None,
        position: int | None = None,
    ) -> None:
        self.reason = message
        self.key = key
        self.text = text
        self.position = position
        full = f"{key}: {message}" if key else message
        if text is not None and position is not None:
            full += f"\n    {text}\n    {' ' * position}^"
        super().__init__(full)

    def for_key(self, key: str) -> ConfigurationError:
        """The same error, attributed to a configuration ``key``."""
        return ConfigurationError(self.reason, key=key, text=self.text, position=self.position)


class MissingDependency(ErrpolicyError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it.

    ``name`` is the missing module (as on any ImportError), ``extra`` the
    ``errpolicy[...]`` extra that installs it.
    """

    def __init__(self, name: str, extra: str, needed_for: str = "") -> None:
        why = f" ({needed_for})" if needed_for else ""
        super().__init__(
            f"{name} is not installed: pip install 'errpolicy[{extra}]'{why}", name=name
        )
        self.extra = extra


class LoggedEvent(ErrpolicyError):
    """Stands for a captured log record or structlog event inside a :class:`PolicyViolation`.

    Warnings are raised as themselves; log events have no exception of their own,
    so they travel as this, with the :class:`Event` in ``event``.
    """

    def __init__(self, event: Event) -> None:
        self.event = event
        where = event.logger or event.source
        super().__init__(f"[{event.severity.name}] {where}: {event.message}")


class PolicyViolation(ExceptionGroup[Exception], ErrpolicyError):
    """The events a guard's policy decided to raise, raised at once.

    A subclass of :class:`ExceptionGroup`, so ``except* RuntimeWarning`` works.
    ``report`` is the guard's :class:`Report`.
    """

    report: Report

    def __new__(
        cls, message: str, exceptions: Sequence[Exception], report: Report
    ) -> PolicyViolation:
        self = super().__new__(cls, message, exceptions)
        self.report = report
        return self

    def __init__(self, message: str, exceptions: Sequence[Exception], report: Report) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> PolicyViolation:  # type: ignore[override]  # keeps the report on the parts of an except* split
        return PolicyViolation(self.message, excs, self.report)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PolicyViolation, (self.message, list(self.exceptions), self.report))
