"""The guard: a context manager, async context manager and decorator around a risky call."""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
import warnings
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from . import _config, _hooks
from ._errors import ConfigurationError
from ._event import Action
from ._policy import Policy
from ._report import Report
from ._state import Frame, active

_installed = _hooks.Installed
_FILTER = _hooks.FILTER
_active_get = active.get
_active_set = active.set

P = ParamSpec("P")
R = TypeVar("R")

_get_ident = threading.get_ident


class Guard:
    """Captures what a call raises and applies a policy to it.

    ``errpolicy.guard(name)`` is used as ``with``, ``async with``, or as a
    decorator ``@errpolicy.guard(name)``. The policy is ``policy`` if given,
    else the one configured for ``name``, else ``default`` if given (libraries
    ship their defaults this way), else the configured default policy.

    A Guard object can be entered again once it has exited, but not while it is
    open (like numpy's ``errstate``); as a decorator it opens a fresh guard per call.
    """

    __slots__ = ("_default", "_policy", "_report", "_token", "name")

    def __init__(
        self, name: str, *, policy: Policy | None = None, default: Policy | None = None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a guard needs a non-empty name, not {name!r}")
        for key, value in (("policy", policy), ("default", default)):
            if value is not None and not isinstance(value, Policy):
                raise ConfigurationError(f"expected a Policy, not {value!r}", key=key)
        self.name = name
        self._policy = policy
        self._default = default
        self._token: contextvars.Token[Frame | None] | None = None
        self._report: Report | None = None

    def __repr__(self) -> str:
        return f"guard({self.name!r})"

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> Report:
        if self._token is not None:
            raise RuntimeError(f"{self!r} is already open; use a new errpolicy.guard(...) to nest")
        filters = warnings.filters
        if not _installed.on or not filters or filters[0] is not _FILTER:
            _hooks.ensure_ready()
        config = _config._config  # get_config() without the call
        policy = (
            self._policy or config.policies.get(self.name) or self._default or config.default_policy
        )
        report = Report(self.name, policy, config)
        self._report = report
        ident = _get_ident()
        parent = _active_get()
        self._token = _active_set(
            (report, parent if parent and parent[2] == ident else None, ident)
        )
        return report

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, report = self._token, self._report
        if token is None or report is None:
            raise RuntimeError(f"{self!r} was not entered")
        self._token = self._report = None
        active.reset(token)
        report._open = False  # the guard owns its report's life
        if report._head is not None:  # cheap "captured anything?"
            _finish(report, exc)

    async def __aenter__(self) -> Report:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator ----------------------------------------------------------

    @overload
    def __call__(self, function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, function: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, function: Callable[P, Any]) -> Callable[P, Any]:
        name, policy, default = self.name, self._policy, self._default
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with Guard(name, policy=policy, default=default):
                    return await function(*args, **kwargs)

            return guarded_async

        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            with Guard(name, policy=policy, default=default):
                return function(*args, **kwargs)

        return cast("Callable[P, Any]", guarded)


#: ``errpolicy.guard(name, *, policy=None, default=None)``: a :class:`Guard`.
guard = Guard


def _finish(report: Report, exc: BaseException | None) -> None:
    """Deliver recorded events to the sink, then raise or annotate."""
    recorded = report.recorded
    if recorded:
        sink = _config.resolved_sink(report._config)  # the report's own config snapshot
        with _hooks.capture_disabled():
            for event in recorded:
                sink(event)
    if exc is None:
        violation = report.violation()
        if violation is not None:
            raise violation
        return
    if exc is report.immediate_violation:
        return
    for note in report.notes():
        exc.add_note(note)


__all__ = ["Action", "Guard", "guard"]
