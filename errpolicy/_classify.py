"""The default classifier, and the chain that runs custom classifiers before it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._severity import Severity

if TYPE_CHECKING:
    from ._event import Event
    from .typing import Classifier

_DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


class DefaultClassifier:
    """Warning categories and logging levels to severities.

    A warning category can declare its own severity with a class attribute
    ``__errpolicy_severity__``; otherwise deprecations are DEPRECATED and every
    other warning is a WARNING. Log events map by level, NOTICE being 25.
    """

    __slots__ = ()

    def __call__(self, event: Event, /) -> Severity:
        if event.category is not None:
            return self.for_category(event.category)
        if event.level is not None:
            return Severity.from_logging_level(event.level)
        return Severity.WARNING

    @staticmethod
    def for_category(category: type[Warning]) -> Severity:
        """The default severity of a warning category."""
        cached = _BY_CATEGORY.get(category)
        if cached is None:
            cached = _BY_CATEGORY[category] = _category_severity(category)
        return cached

    def __repr__(self) -> str:
        return "default"


# Warning categories are few and long-lived; their default severity is looked
# up on every captured warning.
_BY_CATEGORY: dict[type[Warning], Severity] = {}


def _category_severity(category: type[Warning]) -> Severity:
    declared = getattr(category, "__errpolicy_severity__", None)
    if isinstance(declared, Severity):
        return declared
    if issubclass(category, _DEPRECATIONS):
        return Severity.DEPRECATED
    return Severity.WARNING


default_classifier = DefaultClassifier()


def classify(event: Event, classifiers: Sequence[Classifier]) -> tuple[Severity, str]:
    """The first custom answer, else the default one, with who gave it."""
    for classifier in classifiers:
        answer = classifier(event)
        if answer is not None:
            return Severity(answer), name_of(classifier)
    return event.severity, "default"


def name_of(classifier: object) -> str:
    """A readable name: a function's qualified name, else the object's ``repr``."""
    qualname = getattr(classifier, "__qualname__", None)
    if isinstance(qualname, str) and callable(classifier) and not hasattr(classifier, "__self__"):
        return qualname
    return repr(classifier)
