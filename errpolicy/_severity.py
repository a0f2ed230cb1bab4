"""Severities as bit flags, and the mask grammar that combines them."""

from __future__ import annotations

import enum
import logging

from ._grammar import parse_mask

#: The stdlib logging level errpolicy registers for NOTICE, between INFO and WARNING.
NOTICE = 25


def logging_level(value: int | str) -> int:
    """A stdlib logging level from a number or a name (``"NOTICE"`` is 25 even before
    errpolicy registers the name). Raises ``ValueError`` for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        name = value.strip().upper()
        if name == "NOTICE":
            return NOTICE
        number = logging.getLevelName(name)
        if isinstance(number, int):
            return number
    raise ValueError(f"unknown logging level {value!r}")


class Severity(enum.IntFlag):
    """How bad an event is. Masks combine severities: ``Severity.ALL & ~Severity.NOTICE``."""

    NONE = 0
    DEBUG = 1
    INFO = 2
    NOTICE = 4
    DEPRECATED = 8
    WARNING = 16
    ERROR = 32
    CRITICAL = 64
    ALL = 127

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse a mask such as ``"ALL & ~NOTICE"`` or ``"E_ALL ^ E_NOTICE"``.

        The grammar is on the docs page "Policy strings". Raises
        :class:`~errpolicy.ConfigurationError`, pointing at the bad token, for
        anything else, including a mask over 1,000 characters or with more than
        32 nested parentheses; never another exception, in time linear in the length.
        """
        return cls(parse_mask(text, _NAMES, int(cls.ALL)))

    @classmethod
    def coerce(cls, value: Severity | str | int) -> Severity:
        """Accept a :class:`Severity`, a mask string, or an int within ``ALL``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        from ._errors import ConfigurationError

        if isinstance(value, int) and not isinstance(value, bool):
            if value >= 0 and not value & ~int(cls.ALL):
                return cls(value)
            # str() of a huge int is slow, and refused past 4,300 digits.
            shown = str(value) if value.bit_length() <= 64 else f"of {value.bit_length()} bits"
            raise ConfigurationError(f"integer {shown} has bits outside ALL ({int(cls.ALL)})")
        raise ConfigurationError(
            f"a severity mask must be a Severity or a string, not {type(value).__name__}"
        )

    @classmethod
    def from_logging_level(cls, levelno: int) -> Severity:
        """The severity of a stdlib logging level (custom levels fall into the band below)."""
        if levelno >= logging.CRITICAL:
            return cls.CRITICAL
        if levelno >= logging.ERROR:
            return cls.ERROR
        if levelno >= logging.WARNING:
            return cls.WARNING
        if levelno >= NOTICE:
            return cls.NOTICE
        if levelno >= logging.INFO:
            return cls.INFO
        return cls.DEBUG

    def to_logging_level(self) -> int:
        """The stdlib logging level that stands for this severity (the highest bit set)."""
        for flag, level in _LOGGING_LEVELS:
            if self & flag:
                return level
        return logging.NOTSET

    def describe(self) -> str:
        """A canonical spelling that :meth:`parse` reads back: ``"NOTICE | WARNING"``."""
        if self == Severity.ALL:
            return "ALL"
        if self == Severity.NONE:
            return "NONE"
        return " | ".join(f.name for f in _SINGLE if self & f and f.name)


_SINGLE = (
    Severity.DEBUG,
    Severity.INFO,
    Severity.NOTICE,
    Severity.DEPRECATED,
    Severity.WARNING,
    Severity.ERROR,
    Severity.CRITICAL,
)

_LOGGING_LEVELS = (
    (Severity.CRITICAL, logging.CRITICAL),
    (Severity.ERROR, logging.ERROR),
    (Severity.WARNING, logging.WARNING),
    (Severity.DEPRECATED, logging.WARNING),
    (Severity.NOTICE, NOTICE),
    (Severity.INFO, logging.INFO),
    (Severity.DEBUG, logging.DEBUG),
)

# PHP's E_* spellings map onto the nearest severity; names are case-insensitive.
_PHP = {
    "E_ALL": Severity.ALL,
    "E_NOTICE": Severity.NOTICE,
    "E_USER_NOTICE": Severity.NOTICE,
    "E_STRICT": Severity.NOTICE,
    "E_DEPRECATED": Severity.DEPRECATED,
    "E_USER_DEPRECATED": Severity.DEPRECATED,
    "E_WARNING": Severity.WARNING,
    "E_USER_WARNING": Severity.WARNING,
    "E_CORE_WARNING": Severity.WARNING,
    "E_COMPILE_WARNING": Severity.WARNING,
    "E_ERROR": Severity.ERROR,
    "E_USER_ERROR": Severity.ERROR,
    "E_RECOVERABLE_ERROR": Severity.ERROR,
    "E_PARSE": Severity.CRITICAL,
    "E_CORE_ERROR": Severity.CRITICAL,
    "E_COMPILE_ERROR": Severity.CRITICAL,
}
_NAMES: dict[str, int] = {m.name: int(m) for m in Severity if m.name} | {
    "NONE": 0,
    "ALL": int(Severity.ALL),
    **{k: int(v) for k, v in _PHP.items()},
}
