"""Composable matchers and the rules built from them.

>>> from errpolicy import Severity, match
>>> dead = match.logger("pymemcache") & match.message("marking server .* as dead")
>>> rule = match.rule(Severity.WARNING, dead)
>>> rule
rule(WARNING, logger('pymemcache') & message('marking server .* as dead'))

Matchers combine with ``&``, ``|`` and ``~``; :func:`rule` turns one into a
classifier. Each has a readable ``repr``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._errors import ConfigurationError
from ._severity import Severity, logging_level

if TYPE_CHECKING:
    from ._event import Event, Source

__all__ = [
    "Matcher",
    "Rule",
    "category",
    "level",
    "logger",
    "message",
    "predicate",
    "rule",
    "severity",
    "source",
]


class Matcher:
    """Base of the built-in matchers: a callable ``(event) -> bool`` that composes."""

    __slots__ = ()

    def __call__(self, event: Event, /) -> bool:
        raise NotImplementedError

    def __and__(self, other: Matcher) -> Matcher:
        return _All((self, _check(other)))

    def __or__(self, other: Matcher) -> Matcher:
        return _Any((self, _check(other)))

    def __invert__(self) -> Matcher:
        return _Not(self)


def _check(other: object) -> Matcher:
    if not isinstance(other, Matcher):
        raise TypeError(f"can only combine matchers with matchers, not {other!r}")
    return other


@dataclass(frozen=True, slots=True, repr=False)
class _All(Matcher):
    parts: tuple[Matcher, ...]

    def __call__(self, event: Event, /) -> bool:
        return all(p(event) for p in self.parts)

    def __repr__(self) -> str:
        return " & ".join(_paren(p, _Any) for p in self.parts)


@dataclass(frozen=True, slots=True, repr=False)
class _Any(Matcher):
    parts: tuple[Matcher, ...]

    def __call__(self, event: Event, /) -> bool:
        return any(p(event) for p in self.parts)

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.parts)


@dataclass(frozen=True, slots=True, repr=False)
class _Not(Matcher):
    part: Matcher

    def __call__(self, event: Event, /) -> bool:
        return not self.part(event)

    def __repr__(self) -> str:
        return "~" + _paren(self.part, (_All, _Any))


def _paren(m: Matcher, kinds: type | tuple[type, ...]) -> str:
    return f"({m!r})" if isinstance(m, kinds) else repr(m)


@dataclass(frozen=True, slots=True, repr=False)
class _Category(Matcher):
    categories: tuple[type[Warning], ...]

    def __call__(self, event: Event, /) -> bool:
        return event.category is not None and issubclass(event.category, self.categories)

    def __repr__(self) -> str:
        return f"category({', '.join(c.__name__ for c in self.categories)})"


@dataclass(frozen=True, slots=True, repr=False)
class _Logger(Matcher):
    prefixes: tuple[str, ...]

    def __call__(self, event: Event, /) -> bool:
        name = event.logger
        if name is None:
            return False
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def __repr__(self) -> str:
        return f"logger({', '.join(map(repr, self.prefixes))})"


@dataclass(frozen=True, slots=True, repr=False)
class _Message(Matcher):
    pattern: re.Pattern[str]

    def __call__(self, event: Event, /) -> bool:
        return self.pattern.search(event.message) is not None

    def __repr__(self) -> str:
        return f"message({self.pattern.pattern!r})"


@dataclass(frozen=True, slots=True, repr=False)
class _Level(Matcher):
    low: int
    high: int
    text: str

    def __call__(self, event: Event, /) -> bool:
        return event.level is not None and self.low <= event.level <= self.high

    def __repr__(self) -> str:
        return f"level({self.text})"


@dataclass(frozen=True, slots=True, repr=False)
class _Source(Matcher):
    sources: tuple[str, ...]

    def __call__(self, event: Event, /) -> bool:
        return event.source in self.sources

    def __repr__(self) -> str:
        return f"source({', '.join(map(repr, self.sources))})"


@dataclass(frozen=True, slots=True, repr=False)
class _Severity(Matcher):
    mask: Severity

    def __call__(self, event: Event, /) -> bool:
        return bool(event.severity & self.mask)

    def __repr__(self) -> str:
        return f"severity({self.mask.describe()!r})"


@dataclass(frozen=True, slots=True, repr=False)
class _Predicate(Matcher):
    function: Callable[[Event], bool]
    name: str = field(default="")

    def __call__(self, event: Event, /) -> bool:
        return bool(self.function(event))

    def __repr__(self) -> str:
        return f"predicate({self.name or getattr(self.function, '__name__', repr(self.function))})"


def category(*categories: type[Warning]) -> Matcher:
    """Warnings of these categories or their subclasses."""
    if not categories or not all(
        isinstance(c, type) and issubclass(c, Warning) for c in categories
    ):
        raise ConfigurationError(f"category() takes Warning subclasses, not {categories!r}")
    return _Category(categories)


def logger(*names: str) -> Matcher:
    """Log events from these loggers or their children (``"a"`` matches ``"a.b"``)."""
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(f"logger() takes logger names, not {names!r}")
    return _Logger(names)


def message(pattern: str) -> Matcher:
    """Events whose message contains a match of the regular expression ``pattern``."""
    try:
        return _Message(re.compile(pattern))
    except (re.error, TypeError) as e:
        raise ConfigurationError(
            f"message() pattern {pattern!r} is not a valid regex: {e}"
        ) from None


def level(
    exactly: int | str | None = None, *, min: int | str | None = None, max: int | str | None = None
) -> Matcher:
    """Log events at a level: ``level("DEBUG")``, or a range ``level(min="WARNING")``."""
    if exactly is not None:
        if min is not None or max is not None:
            raise ConfigurationError("level() takes either a level or min/max, not both")
        n = _levelno(exactly)
        return _Level(n, n, repr(logging.getLevelName(n)))
    low = _levelno(min) if min is not None else 0
    high = _levelno(max) if max is not None else 1 << 30
    parts = [f"min={logging.getLevelName(low)!r}"] if min is not None else []
    parts += [f"max={logging.getLevelName(high)!r}"] if max is not None else []
    return _Level(low, high, ", ".join(parts))


def source(*sources: Source) -> Matcher:
    """Events from these capture sources: ``"warning"``, ``"logging"``, ``"structlog"``."""
    bad = [s for s in sources if s not in ("warning", "logging", "structlog")]
    if bad or not sources:
        raise ConfigurationError(f"source() takes 'warning', 'logging' or 'structlog', not {bad!r}")
    return _Source(tuple(sources))


def severity(mask: Severity | str) -> Matcher:
    """Events whose default severity is in ``mask``."""
    return _Severity(Severity.coerce(mask))


def predicate(function: Callable[[Event], bool], name: str = "") -> Matcher:
    """Any function of the event, made composable."""
    if not callable(function):
        raise ConfigurationError(f"predicate() takes a callable, not {function!r}")
    return _Predicate(function, name)


def _levelno(value: int | str) -> int:
    try:
        return logging_level(value)
    except ValueError as e:
        raise ConfigurationError(str(e)) from None


@dataclass(frozen=True, slots=True, repr=False)
class Rule:
    """A classifier: events that ``when`` matches get ``severity``; others get no answer."""

    severity: Severity
    when: Matcher

    def __call__(self, event: Event, /) -> Severity | None:
        return self.severity if self.when(event) else None

    def __repr__(self) -> str:
        return f"rule({self.severity.describe()}, {self.when!r})"


def rule(
    severity: Severity | str,
    when: Matcher | None = None,
    *,
    category: type[Warning] | tuple[type[Warning], ...] | None = None,
    logger: str | None = None,
    message: str | None = None,
    level: int | str | None = None,
    source: Source | None = None,
) -> Rule:
    """Build a classifier in one line.

    ``rule("WARNING", logger="pymemcache", level="DEBUG", message="dead")`` makes
    pymemcache's DEBUG "marking server as dead" a WARNING. Keyword conditions are
    combined with ``&``, together with ``when`` if given.
    """
    parts: list[Matcher] = [] if when is None else [_check(when)]
    if category is not None:
        parts.append(_category(*(category if isinstance(category, tuple) else (category,))))
    if logger is not None:
        parts.append(_logger(logger))
    if message is not None:
        parts.append(_message(message))
    if level is not None:
        parts.append(_level(level))
    if source is not None:
        parts.append(_source(source))
    if not parts:
        raise ConfigurationError("rule() needs a matcher or at least one condition")
    when_all = parts[0] if len(parts) == 1 else _All(tuple(parts))
    try:
        sev = Severity.coerce(severity)
    except ConfigurationError as e:
        raise e.for_key("rule.severity") from None
    return Rule(sev, when_all)


# rule() takes keywords named like the factories; keep the factories reachable.
_category, _logger, _message, _level, _source = category, logger, message, level, source
