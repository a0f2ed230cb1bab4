"""The extension points, as Protocols: classifiers, matchers and sinks are plain callables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._event import Event
    from ._severity import Severity

__all__ = ["Classifier", "Matcher", "Sink"]


class Classifier(Protocol):
    """Gives an event its severity, or ``None`` to let the next classifier answer."""

    def __call__(self, event: Event, /) -> Severity | None: ...


class Matcher(Protocol):
    """Says whether an event matches; combine built-in ones with ``&``, ``|`` and ``~``."""

    def __call__(self, event: Event, /) -> bool: ...


class Sink(Protocol):
    """Receives each recorded event once its guard has closed."""

    def __call__(self, event: Event, /) -> None: ...
