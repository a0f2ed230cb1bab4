"""The guard: a context manager, async context manager and decorator around a risky call."""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from . import _config, _hooks
from ._errors import ConfigurationError
from ._event import Action
from ._policy import Policy
from ._report import Report
from ._state import active

if TYPE_CHECKING:
    from ._config import Config

_FILTER = _hooks.FILTER
_active_get = active.get
_active_set = active.set
_active_reset = active.reset

P = ParamSpec("P")
R = TypeVar("R")

_get_ident = threading.get_ident


class Guard:
    """Captures what a call raises and applies a policy to it.

    ``errpolicy.guard(name)`` is used as ``with``, ``async with``, or as a
    decorator ``@errpolicy.guard(name)``. The policy is ``policy`` if given,
    else the one configured for ``name``, else ``default`` if given (libraries
    ship their defaults this way), else the configured default policy.

    A Guard holds no state of its own: each entry gets a fresh :class:`Report`,
    so one Guard object can be kept as a module constant and entered from many
    threads and tasks at once, and nested in itself.
    """

    __slots__ = ("_default", "_policy", "_resolved", "name")

    def __init__(
        self, name: str, *, policy: Policy | None = None, default: Policy | None = None
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigurationError(f"a guard needs a non-empty name, not {name!r}")
        if policy is not None and not isinstance(policy, Policy):
            raise ConfigurationError(f"expected a Policy, not {policy!r}", key="policy")
        if default is not None and not isinstance(default, Policy):
            raise ConfigurationError(f"expected a Policy, not {default!r}", key="default")
        self.name = name
        self._policy = policy
        self._default = default
        # (config, policy) last resolved: configuration changes rarely, entries often.
        self._resolved: tuple[Config, Policy] | None = None

    def __repr__(self) -> str:
        return f"guard({self.name!r})"

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> Report:
        filters = warnings.filters
        # (Not installed implies errpolicy's filter is not first.)
        if not filters or filters[0] is not _FILTER:
            _hooks.ensure_ready()
        config = _config._config  # get_config() without the call
        resolved = self._resolved
        if resolved is not None and resolved[0] is config:
            policy = resolved[1]
        else:
            policy = self._policy or config.policy_for(self.name, self._default)
            self._resolved = (config, policy)
        report = Report(self.name, policy, config)
        ident = _get_ident()
        parent = _active_get()
        if parent is not None and parent[2] != ident:
            parent = None
        report._token = _active_set((report, parent, ident, self))
        return report

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        frame = _active_get()
        token = None if frame is None or frame[3] is not self else frame[0]._token
        if frame is None or token is None:
            raise RuntimeError(f"{self!r} exited, but it is not the innermost open guard here")
        report = frame[0]
        _active_reset(token)
        report._token = None
        report._open = False
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
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self:
                    return await function(*args, **kwargs)

            return guarded_async

        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            with self:
                return function(*args, **kwargs)

        return cast("Callable[P, Any]", guarded)


_SHARED: dict[str, Guard] = {}
_SHARED_MAX = 4096  # names made up at run time must not grow the table without end


def guard(name: str, *, policy: Policy | None = None, default: Policy | None = None) -> Guard:
    """A :class:`Guard` named ``name``; see there. Guards are stateless, so a
    plain ``guard(name)`` hands out one shared object per name."""
    if policy is None and default is None:
        shared = _SHARED.get(name)
        if shared is not None:
            return shared
        made = Guard(name)
        if len(_SHARED) < _SHARED_MAX:
            _SHARED[name] = made
        return made
    return Guard(name, policy=policy, default=default)


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
