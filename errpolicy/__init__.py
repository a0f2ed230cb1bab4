"""errpolicy: per-call error policies.

Wrap a risky call in a guard; errpolicy captures the warnings, log records and
structlog events that call raises, classifies each by severity, and raises,
records or suppresses it by a PHP-style bitmask policy.

PYTEST_DONT_REWRITE: errpolicy registers a pytest plugin, and pytest warns that it
cannot rewrite the asserts of a plugin's package imported before it started.
"""

from __future__ import annotations

from . import match
from ._classify import default_classifier
from ._config import (
    Config,
    configure,
    configure_from_env,
    configure_from_mapping,
    get_config,
    reset_defaults,
)
from ._direct import log_direct
from ._errors import (
    ConfigurationError,
    ErrpolicyError,
    LoggedEvent,
    MissingDependency,
    PolicyViolation,
)
from ._event import Action, Event
from ._guard import Guard, guard
from ._hooks import install, installed, structlog_processor, uninstall
from ._policy import Policy
from ._report import Explanation, Report
from ._severity import NOTICE, Severity
from ._sinks import NullSink, ReplaySink, Sinks, StdlibSink, StructlogSink
from ._state import carry

__all__ = [
    "NOTICE",
    "Action",
    "Config",
    "ConfigurationError",
    "ErrpolicyError",
    "Event",
    "Explanation",
    "Guard",
    "LoggedEvent",
    "MissingDependency",
    "NullSink",
    "Policy",
    "PolicyViolation",
    "ReplaySink",
    "Report",
    "Severity",
    "Sinks",
    "StdlibSink",
    "StructlogSink",
    "carry",
    "configure",
    "configure_from_env",
    "configure_from_mapping",
    "default_classifier",
    "get_config",
    "guard",
    "install",
    "installed",
    "log_direct",
    "match",
    "reset_defaults",
    "structlog_processor",
    "uninstall",
]
