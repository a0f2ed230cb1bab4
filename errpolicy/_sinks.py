"""Where recorded events go once their guard closes.

The default is a structlog logger when structlog is installed, else the stdlib
logger ``errpolicy``. Sinks run with capture switched off, so what they log
is never captured again, not even by an enclosing guard, and in the guard's own
thread and context (the current span is the one around the guard). A sink that
raises is logged on ``errpolicy.sinks`` and never breaks the guarded call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ._errors import PolicyViolation
    from ._event import Event
    from ._report import Report
    from .typing import Sink

_failures = logging.getLogger("errpolicy.sinks")


def call_safely(sink: object, call: Callable[..., object], *args: Any) -> None:
    """``call(*args)``; if it raises, log that on ``errpolicy.sinks`` instead: a
    broken sink must not break the call it reports on."""
    try:
        call(*args)
    except Exception:
        _failures.exception("errpolicy sink %r failed; the guarded call goes on", sink)


class Sinks:
    """Several sinks as one: each gets every guard's events, in the order given;
    one that raises does not keep the others from theirs.

    A sink with a ``guard_closed`` method (see :class:`~errpolicy.typing.ReportSink`)
    gets the whole report, the others each recorded event.
    """

    __slots__ = ("sinks",)

    def __init__(self, *sinks: Sink) -> None:
        given: tuple[object, ...] = sinks  # as given: typing does not check at run time
        for sink in given:
            if not callable(sink):
                from ._errors import ConfigurationError

                raise ConfigurationError(f"must be callable, not {sink!r}", key="sinks")
        self.sinks = sinks

    def __call__(self, event: Event, /) -> None:
        for sink in self.sinks:
            call_safely(sink, sink, event)

    def guard_closed(self, report: Report, violation: PolicyViolation | None, /) -> None:
        recorded: tuple[Event, ...] | None = None
        for sink in self.sinks:
            closed = getattr(sink, "guard_closed", None)
            if closed is not None:
                call_safely(sink, closed, report, violation)
                continue
            if recorded is None:
                recorded = report.recorded
            for event in recorded:
                call_safely(sink, sink, event)

    def __repr__(self) -> str:
        return f"Sinks({', '.join(map(repr, self.sinks))})"


class StdlibSink:
    """Logs each recorded event on a stdlib logger, fields in ``extra["errpolicy"]``."""

    __slots__ = ("logger_name",)

    def __init__(self, logger_name: str = "errpolicy") -> None:
        self.logger_name = logger_name

    def __call__(self, event: Event, /) -> None:
        level = event.level if event.level is not None else event.severity.to_logging_level()
        logging.getLogger(self.logger_name).log(
            level, "%s: %s", event.guard, event.message, extra={"errpolicy": event.as_dict()}
        )

    def __repr__(self) -> str:
        return f"StdlibSink({self.logger_name!r})"


class StructlogSink:
    """Logs each recorded event on a structlog logger, fields as key/values."""

    __slots__ = ("logger_name",)

    _METHODS: ClassVar[dict[int, str]] = {
        50: "critical",
        40: "error",
        30: "warning",
        20: "info",
        10: "debug",
    }

    def __init__(self, logger_name: str = "errpolicy") -> None:
        self.logger_name = logger_name

    def __call__(self, event: Event, /) -> None:
        import structlog  # optional dependency, imported only when used

        level = event.level if event.level is not None else event.severity.to_logging_level()
        # structlog knows the five stdlib names only; NOTICE (25) is logged as info
        # and keeps its own name in the "severity" field.
        method = next((m for lv, m in self._METHODS.items() if level >= lv), "debug")
        fields: dict[str, Any] = event.as_dict()
        message = fields.pop("message")
        getattr(structlog.get_logger(self.logger_name), method)(message, **fields)

    def __repr__(self) -> str:
        return f"StructlogSink({self.logger_name!r})"


class ReplaySink:
    """Hands each recorded event back to where it was going: the record to its
    logger's handlers, the warning to the warnings module's display, the
    structlog event to a structlog logger."""

    __slots__ = ()

    def __call__(self, event: Event, /) -> None:
        from . import _hooks

        _hooks.replay(event)

    def __repr__(self) -> str:
        return "ReplaySink()"


class NullSink:
    """Keeps recorded events on the report only."""

    __slots__ = ()

    def __call__(self, event: Event, /) -> None:
        return None

    def __repr__(self) -> str:
        return "NullSink()"


def default_sink() -> StdlibSink | StructlogSink:
    """Structlog's logger when structlog is importable, else the stdlib one."""
    try:
        import structlog  # noqa: F401  # only probing whether it is installed
    except ImportError:
        return StdlibSink()
    return StructlogSink()
