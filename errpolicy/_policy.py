"""A policy: which severities raise, which are recorded; the rest is suppressed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._event import Action, Event
from ._severity import Severity

if TYPE_CHECKING:
    from .typing import Matcher


@dataclass(frozen=True, slots=True, init=False)
class Policy:
    """Decides, per severity, whether an event is raised, recorded or suppressed.

    ``raise_on`` wins where both masks cover a severity. By default errors raise
    and everything else is recorded: nothing is suppressed unless you say so.

    ``immediate`` raises at the first event in ``raise_on`` instead of after the
    guarded call. ``scope``, a matcher, limits the guard to the events it
    matches; the others pass through as if the guard were not there.
    """

    raise_on: Severity
    record: Severity
    immediate: bool
    scope: Matcher | None
    # The action of each single severity, computed once: IntFlag arithmetic is
    # slow, and decide() runs for every captured event.
    _actions: dict[Severity, Action] = field(init=False, repr=False, compare=False)
    # The Guard that ``guard(name, policy=self)`` (``default=self``) hands out per
    # name: guards are stateless, and building one per call cost about twice the
    # guard's own enter and exit. Kept here, the cache dies with the policy.
    _guards: dict[str, Any] = field(init=False, repr=False, compare=False)
    _default_guards: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        raise_on: Severity | str = Severity.ERROR | Severity.CRITICAL,
        record: Severity | str = Severity.ALL,
        *,
        immediate: bool = False,
        scope: Matcher | None = None,
    ) -> None:
        if not isinstance(immediate, bool):
            raise ConfigurationError(f"immediate must be a bool, not {immediate!r}")
        if scope is not None and not callable(scope):
            raise ConfigurationError(f"scope must be a matcher (a callable), not {scope!r}")
        object.__setattr__(self, "raise_on", _mask("raise_on", raise_on))
        object.__setattr__(self, "record", _mask("record", record))
        object.__setattr__(self, "immediate", immediate)
        object.__setattr__(self, "scope", scope)
        object.__setattr__(self, "_actions", {s: self._decide(s) for s in Severity})
        object.__setattr__(self, "_guards", {})
        object.__setattr__(self, "_default_guards", {})

    def decide(self, severity: Severity) -> Action:
        """The action for an event of ``severity``."""
        action = self._actions.get(severity)
        return action if action is not None else self._decide(severity)

    def _decide(self, severity: Severity) -> Action:
        if severity & self.raise_on:
            return Action.RAISE
        if severity & self.record:
            return Action.RECORD
        return Action.SUPPRESS

    def takes(self, event: Event) -> bool:
        """Whether an event is within this policy's scope."""
        return self.scope is None or self.scope(event)

    @property
    def suppress(self) -> Severity:
        """The severities this policy suppresses."""
        return Severity.ALL & ~(self.raise_on | self.record)

    def describe(self) -> str:
        """``raise_on=ERROR | CRITICAL record=ALL``, for messages and notes."""
        text = f"raise_on={self.raise_on.describe()} record={self.record.describe()}"
        if self.immediate:
            text += " immediate"
        if self.scope is not None:
            text += f" scope={self.scope!r}"
        return text


def _mask(key: str, value: Severity | str | int) -> Severity:
    try:
        return Severity.coerce(value)
    except ConfigurationError as e:
        raise e.for_key(key) from None
