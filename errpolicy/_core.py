"""The hot path of every guard entry: make a report, push its frame, pop it on exit.

This module is the reference implementation, in Python. ``errpolicy/_speedups.c``
does the same in C and is used when it was built (``pip install`` compiles it
where a C compiler is found) unless ``ERRPOLICY_PURE_PYTHON`` is set to a non-empty
value. The test suite runs against both. Everything off the hot path (resolving a
policy after the configuration changed, finishing a guard that captured something)
is a Python callback handed to :func:`setup`, shared by both implementations.

Why two: entering a guard must cost a fraction of ``warnings.catch_warnings()``,
and in Python the calls of ``__enter__`` and ``__exit__`` and making the report
alone cost about as much as that budget (see docs/benchmarks.md).
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import collections

    from ._config import Config
    from ._errors import PolicyViolation
    from ._event import Action, Event
    from ._policy import Policy
    from ._report import Report
    from ._severity import Severity

__all__ = ["IMPLEMENTATION", "GuardCore", "Hooks", "ReportCore", "compiled", "setup"]

_get_ident = threading.get_ident


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the entry path needs from the rest of errpolicy, handed over once by
    ``errpolicy._guard`` (the field names are the C ``setup()``'s keywords)."""

    active: contextvars.ContextVar[Any]
    #: ``errpolicy._state.hidden``: the frame the collector hides (not a guard's parent).
    hidden: list[Any]
    warnings_module: ModuleType
    front_filter: object
    ensure_ready: Callable[[], None]
    config_module: ModuleType
    report_type: type[Report]
    resolve: Callable[[Any, Config], Policy]
    finish: Callable[[Report, BaseException | None], None]
    shared_guards: dict[str, Any]
    make_guard: Callable[..., Any]
    #: ``errpolicy.Policy``: ``guard(name, policy=p)`` answers from ``p._guards``.
    policy_type: type[Policy]


_hooks: Hooks | None = None


class PyReportCore:
    """The fields of a :class:`~errpolicy.Report` read and written on every guard entry."""

    __slots__ = (
        "_config",
        "_counts",
        "_dropped",
        "_head",
        "_open",
        "_raised",
        "_tail",
        "_token",
        "immediate_violation",
        "name",
        "policy",
    )

    name: str
    policy: Policy
    _config: Config
    _token: contextvars.Token[Any] | None
    _head: list[Event] | None
    _open: bool
    # Made on the first capture (most guards capture nothing).
    _counts: dict[tuple[Action, Severity], int] | None
    _raised: list[Event] | None
    _tail: collections.deque[Event] | None
    _dropped: int
    #: The violation raised from inside the block in immediate mode.
    immediate_violation: PolicyViolation | None


class PyGuardCore:
    """A guard's enter and exit; ``Guard`` adds the rest."""

    __slots__ = ("_default", "_policy", "_resolved", "name")

    name: str
    _policy: Policy | None
    _default: Policy | None
    # The policy last resolved and the configuration it was resolved against:
    # configuration changes rarely, entries are frequent.
    _resolved: tuple[Config, Policy] | None

    def __enter__(self) -> Report:
        hooks = _hooks
        if hooks is None:
            raise RuntimeError("errpolicy._core.setup() was not called")
        filters = hooks.warnings_module.filters
        # errpolicy's filter not first implies the hooks may be missing, too.
        if not filters or filters[0] is not hooks.front_filter:
            hooks.ensure_ready()
        config: Config = hooks.config_module._config
        resolved = self._resolved
        if resolved is not None and resolved[0] is config:
            policy = resolved[1]
        else:
            policy = hooks.resolve(self, config)
        report = hooks.report_type.__new__(hooks.report_type)
        report.name = self.name
        report.policy = policy
        report._config = config
        report._head = None
        report._open = True
        report._counts = report._raised = report._tail = report.immediate_violation = None
        report._dropped = 0
        ident = _get_ident()
        parent = hooks.active.get()
        # A frame counts only in the thread that opened it (asyncio.to_thread copies
        # the context into another thread; errpolicy.carry moves a frame on purpose),
        # and not while the collector hides it (a finalizer's own guard stands alone).
        if parent is not None and (parent[2] != ident or parent is hooks.hidden[0]):
            parent = None
        report._token = hooks.active.set((report, parent, ident, self))
        return report

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        hooks = _hooks
        if hooks is None:
            raise RuntimeError("errpolicy._core.setup() was not called")
        frame = hooks.active.get()
        report = frame[0] if frame is not None and frame[3] is self else None
        if not isinstance(report, ReportCore) or report._token is None:
            raise RuntimeError(f"{self!r} exited, but it is not the innermost open guard here")
        token = report._token
        report._token = None
        try:
            hooks.active.reset(token)
        finally:
            report._open = False
        if report._head is not None:  # captured anything?
            hooks.finish(cast("Report", report), exc)


def _speedups() -> ModuleType | None:
    if os.environ.get("ERRPOLICY_PURE_PYTHON"):
        return None
    try:
        from . import _speedups
    except ImportError:  # not built: no compiler at install time, or another platform
        return None
    return _speedups


_compiled = _speedups()
#: The C module when it is in use, else ``None`` (``errpolicy._event`` fills events with it).
compiled: ModuleType | None = _compiled
if TYPE_CHECKING:
    GuardCore = PyGuardCore
    ReportCore = PyReportCore
    IMPLEMENTATION: str
else:
    if _compiled is None:
        GuardCore, ReportCore, IMPLEMENTATION = PyGuardCore, PyReportCore, "python"
    else:
        GuardCore, ReportCore = _compiled.GuardCore, _compiled.ReportCore
        IMPLEMENTATION = "c"


def setup(hooks: Hooks) -> Callable[..., Any]:
    """Hand the entry path what it needs; called once, by ``errpolicy._guard``.

    Returns the function to export as ``errpolicy.guard``: ``hooks.make_guard``
    itself, or in C a function that answers a plain ``guard(name)`` from
    ``hooks.shared_guards``, ``guard(name, policy=p)`` from ``p._guards`` and
    ``guard(name, default=p)`` from ``p._default_guards``, and hands every other
    call (and every miss) to ``make_guard``.
    """
    global _hooks
    _hooks = hooks
    if _compiled is None:
        return hooks.make_guard
    _compiled.setup(**{field.name: getattr(hooks, field.name) for field in fields(hooks)})
    return cast("Callable[..., Any]", _compiled.guard)
