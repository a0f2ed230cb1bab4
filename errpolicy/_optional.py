"""Optional dependencies of errpolicy.otel and errpolicy.sentry: a missing one names its extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import MissingDependency


def require(module: str, distribution: str, extra: str, needed_for: str) -> ModuleType:
    """``import module``, or :class:`~errpolicy.MissingDependency` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.partition(".")[0]
        if exc.name is None or not (exc.name == top or module.startswith(exc.name)):
            raise  # it is there but needs something missing: its own error says more
        raise MissingDependency(distribution, extra, needed_for) from exc
