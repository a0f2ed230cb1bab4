"""A guard's report: the events it captured, what it decided, what it dropped."""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, cast

from . import _core
from ._classify import classify
from ._core import ReportCore
from ._errors import LoggedEvent, PolicyViolation
from ._event import Action, Event
from ._severity import Severity

if TYPE_CHECKING:
    from ._config import Config
    from ._policy import Policy

_LOCK = threading.Lock()
setattr_ = object.__setattr__
_RAISE = Action.RAISE


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an event got its action: who classified it and which mask decided."""

    guard: str
    classified_by: str
    severity: Severity
    action: Action
    #: ``"raise_on"``, ``"record"``, or ``None`` when neither mask covers the severity.
    mask_name: str | None
    mask: Severity

    def __str__(self) -> str:
        decided = (
            f"matched {self.mask_name}={self.mask.describe()}"
            if self.mask_name
            else f"is in neither raise_on nor record (suppress={self.mask.describe()})"
        )
        return (
            f"guard {self.guard!r}: classifier {self.classified_by} said {self.severity.name}, "
            f"which {decided}, so: {self.action.value}"
        )


class Report(ReportCore):
    """What one entry of a guard captured and decided, in order.

    Filled while the guard is open, read-only after. Keeps at most
    ``max_events`` events: the first half and the latest half, with counts of
    everything, kept or not.
    """

    # No instance dict: a report is made on every guard entry, and every field
    # it has lives in ReportCore.
    __slots__ = ()

    # ReportCore holds the fields (name, policy, _config, _token, _head, _open,
    # and _counts, _raised, _tail, _dropped, immediate_violation, which stay
    # None or 0 until the first capture, because most guards capture nothing);
    # the guard makes reports without calling __init__. Raised events are also
    # kept apart in _raised (the first max_events of them), so a flood cannot
    # push the one that matters out of the middle of the buffer.

    def __init__(self, name: str, policy: Policy, config: Config) -> None:
        self.name = name
        self.policy = policy
        self._config = config
        self._token = None
        self._head = None
        self._open = True
        self._counts = None
        self._raised = None
        self._tail = None
        self._dropped = 0
        self.immediate_violation = None

    # -- capture side -----------------------------------------------------
    # takes() and capture() are ReportCore's when the C speedups are in use;
    # these are their Python twins, and the helpers both call.

    def _py_takes(self, event: Event) -> bool:
        """Whether this report captures ``event`` (open, and in the policy's scope)."""
        return self._open and (self.policy.scope is None or bool(self.policy.scope(event)))

    def _py_capture(self, draft: Event) -> Event:
        """Classify and decide ``draft``, keep it, and raise at once in immediate mode."""
        config = self._config
        policy = self.policy
        severity = self._classify(draft) if config.classifiers else draft.severity
        # Policy.decide inlined: this runs for every captured event.
        action = policy._actions.get(severity) or policy._decide(severity)
        # The draft is not yet visible to anyone else, so finish it in place
        # rather than paying for dataclasses.replace on the capture path.
        setattr_(draft, "action", action)
        setattr_(draft, "guard", self.name)
        max_events = config.max_events
        # One lock for all reports: only carried threads ever contend for it.
        with _LOCK:
            key = (action, severity)
            counts = self._counts
            if counts is None:
                self._counts = {key: 1}
            else:
                counts[key] = counts.get(key, 0) + 1
            head = self._head
            if action is _RAISE:
                if self._raised is None:
                    self._raised = [draft]
                elif len(self._raised) < max_events:
                    self._raised.append(draft)
            if head is None:
                self._head = [draft]
            else:
                self._keep(head, draft, max_events)
        if action is _RAISE and self.immediate_violation is None and policy.immediate:
            self._raise_immediately(draft)
        return draft

    if TYPE_CHECKING or _core.compiled is None:
        takes = _py_takes
        capture = _py_capture

    def _classify(self, draft: Event) -> Severity:
        severity, by = classify(draft, self._config.classifiers)
        setattr_(draft, "severity", severity)
        setattr_(draft, "classified_by", by)
        return severity

    def _keep_late(self, draft: Event, max_events: int) -> None:
        """Keep ``draft`` once the head is full (C's capture calls this, rarely)."""
        with _LOCK:
            self._keep(cast("list[Event]", self._head), draft, max_events)

    def _raise_immediately(self, draft: Event) -> None:
        self.immediate_violation = self._violation([draft])
        raise self.immediate_violation

    def _keep(self, head: list[Event], draft: Event, max_events: int) -> None:
        if len(head) < (max_events + 1) // 2:
            head.append(draft)
            return
        tail = self._tail
        if tail is None:
            tail = self._tail = collections.deque(maxlen=max_events // 2)
        elif len(tail) == tail.maxlen:
            self._dropped += 1
        tail.append(draft)

    # -- read side --------------------------------------------------------

    @property
    def open(self) -> bool:
        """True while the guard is open."""
        return self._open

    @property
    def events(self) -> tuple[Event, ...]:
        """Every kept event, in the order captured."""
        with _LOCK:
            return (*(self._head or ()), *(self._tail or ()))

    @property
    def raised(self) -> tuple[Event, ...]:
        """The kept events the policy raised."""
        return self._with(Action.RAISE)

    @property
    def recorded(self) -> tuple[Event, ...]:
        """The kept events the policy recorded."""
        return self._with(Action.RECORD)

    @property
    def suppressed(self) -> tuple[Event, ...]:
        """The kept events the policy suppressed."""
        return self._with(Action.SUPPRESS)

    @property
    def dropped(self) -> int:
        """How many events were captured and decided but not kept (over ``max_events``)."""
        return self._dropped

    @property
    def counts(self) -> Mapping[tuple[Action, Severity], int]:
        """How many events were captured, by action and severity, kept or not."""
        with _LOCK:
            return MappingProxyType(dict(self._counts or {}))

    @property
    def total(self) -> int:
        """How many events were captured, kept or not."""
        return sum(self.counts.values())

    def count(self, action: Action) -> int:
        """How many events got ``action``, kept or not."""
        return sum(n for (a, _), n in self.counts.items() if a is action)

    def explain(self, event: Event) -> Explanation:
        """Which classifier and which mask decided ``event``."""
        if event.action is None or event.guard != self.name:
            raise ValueError(f"{event.describe()!r} was not decided by guard {self.name!r}")
        if event.action is Action.RAISE:
            name, mask = "raise_on", self.policy.raise_on
        elif event.action is Action.RECORD:
            name, mask = "record", self.policy.record
        else:
            name, mask = None, self.policy.suppress
        return Explanation(self.name, event.classified_by, event.severity, event.action, name, mask)

    def _with(self, action: Action) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.action is action)

    def _violation(self, events: list[Event] | tuple[Event, ...]) -> PolicyViolation:
        raised = self.count(Action.RAISE)
        kept = len(events)
        more = f" ({raised - kept} more not kept)" if raised > kept else ""
        message = (
            f"guard {self.name!r}: {raised} event{'s' if raised != 1 else ''} "
            f"in raise_on={self.policy.raise_on.describe()}{more}"
        )
        return PolicyViolation(message, [as_exception(e) for e in events], self)

    def violation(self) -> PolicyViolation | None:
        """The :class:`PolicyViolation` for the raised events, or ``None`` if there are none."""
        if not self._raised:
            return None
        with _LOCK:
            raised = tuple(self._raised)
        return self._violation(raised)

    def notes(self) -> list[str]:
        """One line per kept event, for attaching to an exception that left the guard."""
        lines = [f"errpolicy guard {self.name!r}: {e.describe()}" for e in self.events]
        if self._dropped:
            lines.append(f"errpolicy guard {self.name!r}: {self._dropped} more events not kept")
        return lines

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<Report {self.name!r} {state} events={self.total} dropped={self._dropped}>"


def as_exception(event: Event) -> Exception:
    """The exception that stands for ``event`` in a :class:`PolicyViolation`."""
    if event.source == "warning":
        original = getattr(event.original, "message", None)
        if isinstance(original, Warning):
            return original
    error = LoggedEvent(event)
    exc_info = getattr(event.original, "exc_info", None)
    if isinstance(exc_info, tuple) and isinstance(exc_info[1], BaseException):
        error.__cause__ = exc_info[1]
    return error
