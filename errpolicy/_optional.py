"""Optional dependencies of errpolicy.otel and errpolicy.sentry: a missing one names its extra."""

from __future__ import annotations

from ._errors import MissingDependency


def missing(
    error: ModuleNotFoundError, package: str, distribution: str, extra: str, needed_for: str
) -> ImportError:
    """What to raise for ``error``, met importing ``package``: :class:`MissingDependency`
    naming ``extra`` when ``package`` itself is missing, else ``error`` itself (the
    package is there but needs something missing: its own error says more)."""
    if error.name is None or error.name.partition(".")[0] != package:
        return error
    return MissingDependency(distribution, extra, needed_for)
