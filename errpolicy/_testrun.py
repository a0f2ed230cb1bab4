"""What one test call raised, and whether it fails the test: the decisions of the
pytest plugin (:mod:`errpolicy.pytest_plugin`), with no pytest in them.

The plugin opens a guard around each call of a test function whose scope is
:meth:`Invocation.observe`: it keeps the event and answers False, so the guard
never takes anything and every event goes on exactly as without errpolicy (to
``caplog``, ``pytest.warns``, the warnings filters, ``-W error``). Being a
guard's scope, it sees exactly what the call's own thread and tasks raise.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _config, _hooks
from ._classify import classify
from ._errors import ConfigurationError
from ._severity import Severity

if TYPE_CHECKING:
    from ._event import Event
    from .typing import Matcher

#: The scope entry that stands for the project's own code.
PROJECT = "{project}"
#: What fails a test when the project sets no ``errpolicy_fail_on``.
DEFAULT_FAIL_ON = Severity.WARNING | Severity.ERROR | Severity.CRITICAL

# Why an event seen by the test cannot fail it: the warnings machinery handles it.
IGNORED = "ignored by the warnings filters"
ERROR = "turned into an exception by the warnings filters"
RECORDED = "recorded by pytest.warns, recwarn or catch_warnings(record=True)"
CAPLOG = "a log record in a test that takes caplog (it checks its own records)"


@dataclass(frozen=True, slots=True)
class TestPolicy:
    """Which events fail a test: severities in ``fail_on``, from code in ``scope``
    (no entries: from anywhere)."""

    fail_on: Severity = DEFAULT_FAIL_ON
    #: Logger name and module prefixes, and :data:`PROJECT`.
    scope: tuple[str, ...] = ()
    #: The project's folder, for :data:`PROJECT` and for short paths in reports.
    rootdir: str = ""

    @classmethod
    def build(cls, fail_on: Any, scope: Any, rootdir: str) -> TestPolicy:
        """A policy from option values: a mask string or Severity, and a string
        (spaces or commas between entries) or a list of strings."""
        try:
            mask = Severity.coerce(fail_on)
        except ConfigurationError as e:
            raise e.for_key("errpolicy_fail_on") from None
        return cls(mask, parse_scope(scope), os.path.abspath(rootdir) if rootdir else "")

    def in_scope(self, event: Event) -> bool:
        """Whether ``event`` comes from code this policy watches."""
        if not self.scope:
            return True
        name = event.logger if event.source != "warning" else module_of(event.filename)
        for entry in self.scope:
            if entry == PROJECT:
                if self._in_project(event.filename):
                    return True
            elif name is not None and (name == entry or name.startswith(entry + ".")):
                return True
        return False

    def _in_project(self, filename: str) -> bool:
        if not self.rootdir or not filename:
            return False
        path = os.path.abspath(filename)
        if not path.startswith(self.rootdir + os.sep):
            return False
        # A virtualenv inside the checkout holds third-party code.
        return not any(part in ("site-packages", "dist-packages") for part in path.split(os.sep))

    def describe(self) -> str:
        """``fail_on=WARNING | ERROR | CRITICAL scope=app, {project}``."""
        scope = ", ".join(self.scope) if self.scope else "everywhere"
        return f"fail_on={self.fail_on.describe()} scope={scope}"


def parse_scope(value: Any) -> tuple[str, ...]:
    """Scope entries from a string (split on spaces and commas) or strings."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    entries: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"a scope entry must be a string, not {item!r}", key="errpolicy_scope"
            )
        entries += [part for part in item.replace(",", " ").split() if part]
    return tuple(entries)


_modules_by_file: dict[str, str] = {}


def module_of(filename: str) -> str:
    """The module a warning attributed to ``filename`` comes from, as the warnings
    filters see it (the filename without ``.py`` when no loaded module has it)."""
    found = _modules_by_file.get(filename)
    if found is not None:
        return found
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            _modules_by_file[filename] = name
            return name
    return filename[:-3] if filename.endswith(".py") else filename


def filter_action(event: Event, filters: list[Any], default: str) -> str:
    """The action the warnings filters take on a warning event (errpolicy's own
    filter, true inside any guard, left out): CPython's matching rules."""
    text = event.message
    module = module_of(event.filename)
    for entry in filters:
        action, message, category, module_re, lineno = entry[:5]
        if message is _hooks.ENTRY[1]:
            continue
        if (
            (message is None or message.match(text))
            and event.category is not None
            and issubclass(event.category, category)
            and (module_re is None or module_re.match(module))
            and (lineno == 0 or event.lineno == lineno)
        ):
            return str(action)
    return default


def showing() -> Any:
    """What takes a shown warning here: the list ``catch_warnings(record=True)``
    records into (pytest's own per-test recorder, ``recwarn``, ``pytest.warns``),
    or None when nothing records.

    Without context-aware warnings that list's ``append`` is the process-wide
    ``warnings._showwarnmsg_impl``; with them (3.14+) it is the ``log`` of the
    current context's warnings state (``warnings._get_context()``), which a
    nested ``catch_warnings()`` without ``record`` shares with its parent.
    """
    if _hooks.CONTEXT_AWARE:
        get_context = getattr(warnings, "_get_context", None)
        return None if get_context is None else get_context().log
    return getattr(warnings, "_showwarnmsg_impl", None)


@dataclass(frozen=True, slots=True)
class Seen:
    """One event the test raised, with its final severity and, when the warnings
    machinery handles it, why it cannot fail the test."""

    event: Event
    severity: Severity
    exempt: str | None


@dataclass(slots=True, eq=False)
class Invocation:
    """What one call of a test function raised in its own thread and tasks."""

    policy: TestPolicy
    #: ``warnings._showwarnmsg_impl`` when the test started: another one means
    #: something in the test records warnings itself.
    shower: Any = None
    #: The test takes ``caplog``: its log records are its own to check.
    caplog: bool = False
    seen: list[Seen] = field(default_factory=list)
    handled: set[int] = field(default_factory=set)
    expected: list[Matcher] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The thread that runs the call: a context copied into another thread
    #: (3.14+) does not make that thread the test's.
    thread: int = field(default_factory=threading.get_ident)
    #: The test's phase: "call", or "setup" / "teardown" (its fixtures); None
    #: while the fixtures' guard waits for the teardown (the call has its own).
    phase: str | None = "call"

    def enter(self, phase: str | None) -> None:
        """Observe the next phase (None: nothing) afresh: what came before is not
        its business."""
        with self.lock:
            self.phase = phase
            self.seen.clear()
            self.handled.clear()
            self.expected.clear()

    def observe(self, event: Event) -> bool:
        """The guard's scope: keep ``event``, never take it.

        A warning that the filters in force where it was raised ignore is not
        kept at all: without errpolicy it would not exist for the test (nor for
        ``recwarn`` or pytest's summary), whoever silenced it (the test, the code
        under test, or a plugin such as pytest-asyncio).
        """
        if self.phase is None:
            return False
        if event.source == "warning":
            exempt = self._exempt(event)
            if exempt == IGNORED:
                return False
        else:
            exempt = CAPLOG if self.caplog and event.source == "logging" else None
        severity = event.severity
        config = _config.get_config()
        if config.classifiers:
            severity = classify(event, config.classifiers)[0]
        with self.lock:
            self.seen.append(Seen(event, severity, exempt))
        return False

    def _exempt(self, event: Event) -> str | None:
        # The list that decides here: on 3.14+ with context-aware warnings, the
        # current context's (an inner catch_warnings' copy), else warnings.filters.
        default = getattr(warnings, "defaultaction", "default")  # not in typeshed
        action = filter_action(event, _hooks._effective_filters(), default)
        if action == "ignore":
            return IGNORED
        recorder = showing()
        if self.shower is not None and recorder is not None and recorder is not self.shower:
            return RECORDED
        if action == "error":
            return ERROR
        return None

    @property
    def events(self) -> tuple[Event, ...]:
        """Every event seen, in order."""
        with self.lock:
            return tuple(s.event for s in self.seen)

    def mark(self, matcher: Matcher) -> tuple[Event, ...]:
        """Mark the events ``matcher`` matches as asserted; return them."""
        with self.lock:
            found = [s for s in self.seen if matcher(s.event)]
            self.handled.update(id(s) for s in found)
        return tuple(s.event for s in found)

    def unexpected(self) -> list[Seen]:
        """The events that fail the test: in fail_on and scope, not handled by the
        warnings machinery, not asserted, not expected."""
        with self.lock:
            seen, handled, expected = list(self.seen), set(self.handled), list(self.expected)
        return [
            s
            for s in seen
            if s.exempt is None
            and s.severity & self.policy.fail_on
            and id(s) not in handled
            and self.policy.in_scope(s.event)
            and not any(m(s.event) for m in expected)
        ]

    def failure(self) -> str | None:
        """The readable report of :meth:`unexpected` events, or None when there are none."""
        failing = self.unexpected()
        if not failing:
            return None
        count = len(failing)
        where = "" if self.phase in ("call", None) else f" in {self.phase}"
        lines = [
            f"errpolicy: {count} unexpected event{'s' if count != 1 else ''}{where} "
            f"({self.policy.describe()}):"
        ]
        lines += [f"  {self.line(s)}" for s in failing]
        if self.phase not in ("call", None):
            lines.append(
                f"They were raised in the {self.phase} of the test's fixtures: a fixture "
                "that takes errguard can assert or expect them."
            )
        lines.append(
            "Assert them with errguard.assert_logged() or errguard.assert_warned(), "
            "allow them with errguard.expect(), or change the policy with "
            "@pytest.mark.errpolicy(fail_on=..., scope=...)."
        )
        return "\n".join(lines)

    def line(self, seen: Seen) -> str:
        """``ERROR logger 'app.db' at app/db.py:42 [MainThread]: connection lost``."""
        event = seen.event
        if event.source == "warning":
            what = event.category.__name__ if event.category else "warning"
        else:
            what = f"logger {event.logger!r}" if event.logger else event.source
        path = event.filename
        root = self.policy.rootdir
        if root and path.startswith(root + os.sep):
            path = path[len(root) + 1 :]
        where = f"[{event.thread}{', task ' + event.task if event.task else ''}]"
        return f"{seen.severity.name} {what} at {path}:{event.lineno} {where}: {event.message}"
