"""The extension points, as Protocols: classifiers, matchers and sinks are plain callables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._errors import PolicyViolation
    from ._event import Event
    from ._report import Report
    from ._severity import Severity

__all__ = ["Classifier", "Matcher", "ReportSink", "Sink"]


class Classifier(Protocol):
    """Gives an event its severity, or ``None`` to let the next classifier answer."""

    def __call__(self, event: Event, /) -> Severity | None: ...


class Matcher(Protocol):
    """Says whether an event matches; combine built-in ones with ``&``, ``|`` and ``~``."""

    def __call__(self, event: Event, /) -> bool: ...


class Sink(Protocol):
    """Receives each recorded event once its guard has closed."""

    def __call__(self, event: Event, /) -> None: ...


class ReportSink(Sink, Protocol):
    """A sink that takes each guard's report whole: errpolicy calls ``guard_closed``
    (instead of the sink itself per recorded event) once for every guard exit that
    captured something, with the :class:`~errpolicy.PolicyViolation` the guard raises
    (before it is raised; in immediate mode, the one on its way out), else ``None``.

    The report has every event, raised, recorded and suppressed, and the counts of
    those not kept. Used by :mod:`errpolicy.otel` and :mod:`errpolicy.sentry`.
    """

    def guard_closed(self, report: Report, violation: PolicyViolation | None, /) -> None: ...
