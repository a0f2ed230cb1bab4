"""errpolicy_memcache: a replicated memcache session store that reports outcomes to errpolicy.

>>> from errpolicy_memcache import MemcacheSessionStore   # doctest: +SKIP

PYTEST_DONT_REWRITE: it ships in errpolicy's distribution, which registers a pytest
plugin (see errpolicy/__init__.py).
"""

from __future__ import annotations

from ._breaker import BreakerState, CircuitBreaker
from ._errors import (
    ConfigurationError,
    InvalidSessionId,
    MemcacheSessionError,
    MissingDependency,
    SessionDataError,
    SessionExists,
    SessionTooLarge,
    SessionUnavailable,
)
from ._ids import SESSION_ID_LENGTH, is_valid_session_id, new_session_id
from ._metrics import Histogram, StoreStats
from ._node import Node
from ._outcome import NodeResult, NodeStatus, Outcome, OutcomeKind, severity_of
from ._session import Session
from ._store import DEFAULT_POLICIES, LOGGER_NAME, OPERATIONS, MemcacheSessionStore

__all__ = [
    "DEFAULT_POLICIES",
    "LOGGER_NAME",
    "OPERATIONS",
    "SESSION_ID_LENGTH",
    "BreakerState",
    "CircuitBreaker",
    "ConfigurationError",
    "Histogram",
    "InvalidSessionId",
    "MemcacheSessionError",
    "MemcacheSessionStore",
    "MissingDependency",
    "Node",
    "NodeResult",
    "NodeStatus",
    "Outcome",
    "OutcomeKind",
    "Session",
    "SessionDataError",
    "SessionExists",
    "SessionTooLarge",
    "SessionUnavailable",
    "StoreStats",
    "is_valid_session_id",
    "new_session_id",
    "severity_of",
]
