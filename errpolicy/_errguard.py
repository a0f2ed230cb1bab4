"""The ``errguard`` fixture's object: assertions over what the running test raised."""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

from . import match as _match
from ._errors import ErrpolicyError

if TYPE_CHECKING:
    from ._event import Event
    from ._testrun import Invocation, TestPolicy
    from .typing import Matcher

#: The call of a test function running here (each thread of pytest-run-parallel,
#: and the tasks it starts, has its own).
CURRENT: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "errpolicy_test_invocation", default=None
)


class ErrGuard:
    """What the running test's own thread and tasks raised, and assertions on it.

    Events the test asserts (:meth:`assert_logged`, :meth:`assert_warned`) or
    declares (:meth:`expect`) do not fail it; the others in the test's
    ``fail_on`` and scope do, when the test function returns.
    """

    __slots__ = ("policy",)

    def __init__(self, policy: TestPolicy) -> None:
        #: The policy of this test (ini options, flags and marker applied).
        self.policy = policy

    def __repr__(self) -> str:
        return f"<errguard {self.policy.describe()}>"

    @property
    def events(self) -> tuple[Event, ...]:
        """Every warning, log record and structlog event raised so far, in order."""
        return self._invocation().events

    def assert_logged(
        self,
        match: str | None = None,
        *,
        logger: str | None = None,
        level: int | str | None = None,
    ) -> tuple[Event, ...]:
        """Assert that a log record (or structlog event) was emitted whose message
        matches the regex ``match`` (``re.search``), from ``logger`` or a child
        of it, at ``level``; return the matching events, which then do not fail
        the test."""
        parts = [_match.source("logging", "structlog")]
        if match is not None:
            parts.append(_match.message(match))
        if logger is not None:
            parts.append(_match.logger(logger))
        if level is not None:
            parts.append(_match.level(level))
        return self._assert(_all(parts), "log record")

    def assert_warned(
        self, category: type[Warning] = Warning, *, match: str | None = None
    ) -> tuple[Event, ...]:
        """Assert that a warning of ``category`` (or a subclass) was raised whose
        message matches the regex ``match``; return the matching events, which
        then do not fail the test."""
        parts = [_match.category(category)]
        if match is not None:
            parts.append(_match.message(match))
        return self._assert(_all(parts), "warning")

    def expect(self, matcher: Matcher) -> None:
        """Declare that events ``matcher`` matches (an :mod:`errpolicy.match`
        matcher or any callable of an event) may happen: they do not fail the test,
        before or after this call."""
        if not callable(matcher):
            raise TypeError(f"expect() takes a matcher, not {matcher!r}")
        invocation = self._invocation()
        with invocation.lock:
            invocation.expected.append(matcher)

    def _assert(self, matcher: _match.Matcher, kind: str) -> tuple[Event, ...]:
        invocation = self._invocation()
        found = invocation.mark(matcher)
        if found:
            return found
        seen = invocation.seen
        lines = [f"no {kind} matched {matcher!r}; the test raised:"]
        lines += [f"  {invocation.line(s)}" for s in seen] or ["  nothing"]
        raise AssertionError("\n".join(lines))

    def _invocation(self) -> Invocation:
        invocation = CURRENT.get()
        if invocation is None or invocation.thread != threading.get_ident():
            raise NotInTest(
                "errguard is only usable while the test function runs, in its own "
                "thread or the tasks it starts (hand work to threads with errpolicy.carry)"
            )
        return invocation


class NotInTest(ErrpolicyError, RuntimeError):
    """``errguard`` was used outside the test function's own thread and tasks."""


def _all(parts: list[_match.Matcher]) -> _match.Matcher:
    combined = parts[0]
    for part in parts[1:]:
        combined = combined & part
    return combined
