"""The guard: a context manager, async context manager and decorator around a risky call."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from . import _config, _core, _hooks, _state
from ._core import GuardCore
from ._errors import ConfigurationError
from ._event import Action
from ._policy import Policy
from ._report import _LOCK, Report
from ._sinks import NullSink, call_safely
from ._state import active

if TYPE_CHECKING:
    from ._config import Config

_RECORD = Action.RECORD

P = ParamSpec("P")
R = TypeVar("R")


class Guard(GuardCore):
    """Captures what a call raises and applies a policy to it.

    ``errpolicy.guard(name)`` is used as ``with``, ``async with``, or as a
    decorator ``@errpolicy.guard(name)``. The policy is ``policy`` if given,
    else the one configured for ``name``, else ``default`` if given (libraries
    ship their defaults this way), else the configured default policy.

    A Guard holds no state of its own: each entry gets a fresh :class:`Report`,
    so one Guard object can be kept as a module constant and entered from many
    threads and tasks at once, and nested in itself. ``__enter__`` and
    ``__exit__`` come from ``errpolicy._core`` (in C where it was built).
    """

    __slots__ = ()

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
        self._resolved = None

    def __repr__(self) -> str:
        return f"guard({self.name!r})"

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
_PER_POLICY_MAX = 256  # the same, for the guards one policy keeps (Policy._guards)


def guard(name: str, *, policy: Policy | None = None, default: Policy | None = None) -> Guard:
    """A :class:`Guard` named ``name``; see there. Guards are stateless, so a
    plain ``guard(name)`` hands out one shared object per name, and
    ``guard(name, policy=p)`` (or ``default=p``) one per name kept by ``p``."""
    if isinstance(name, str) and name:
        if policy is None and default is None:
            shared = _SHARED.get(name)
            if shared is not None:
                return shared
            made = Guard(name)
            if len(_SHARED) < _SHARED_MAX:
                _SHARED[name] = made
            return made
        if default is None and type(policy) is Policy:
            return _kept(policy._guards, name, policy=policy)
        if policy is None and type(default) is Policy:
            return _kept(default._default_guards, name, default=default)
    return Guard(name, policy=policy, default=default)


def _kept(cache: dict[str, Guard], name: str, **policies: Policy) -> Guard:
    kept = cache.get(name)
    if kept is None:
        kept = Guard(name, **policies)
        if len(cache) < _PER_POLICY_MAX:
            cache[name] = kept
    return kept


def _resolve(entered: Guard, config: Config) -> Policy:
    """The policy of ``entered`` under ``config``, cached on it until the
    configuration object changes (configure() makes a new one)."""
    policy = entered._policy or config.policy_for(entered.name, entered._default)
    entered._resolved = (config, policy)  # one store: readers never see a mixed pair
    return policy


def _finish(report: Report, exc: BaseException | None) -> None:
    """Deliver the report to the sink, then raise or annotate."""
    violation = None
    if exc is None:
        if report._raised:  # violation() answers None without: one call less per capture
            violation = report.violation()
    elif exc is report.immediate_violation:
        violation = report.immediate_violation
    config = report._config  # the report's own config snapshot
    sink = config.sink if config.sink is not None else _config.resolved_sink(config)
    if type(sink) is not NullSink:  # it drops them: skip collecting them
        closed = getattr(sink, "guard_closed", None)
        if closed is None:  # report.recorded, without its three calls
            with _LOCK:
                kept = (*(report._head or ()), *(report._tail or ()))
            recorded = [event for event in kept if event.action is _RECORD]
        if closed is not None or recorded:
            token = active.set(None)  # as _hooks.capture_disabled(): sinks are not captured
            try:
                if closed is not None:
                    call_safely(sink, closed, report, violation)
                else:
                    for event in recorded:
                        call_safely(sink, sink, event)
            finally:
                active.reset(token)
    if exc is None:
        if violation is not None:
            raise violation
        return
    if violation is not None:  # immediate mode: already on its way out
        return
    for note in report.notes():
        exc.add_note(note)


_guard_lookup = _core.setup(
    _core.Hooks(
        active=active,
        hidden=_state.hidden,
        warnings_module=warnings,
        front_filter=_hooks.FILTER,
        ensure_ready=_hooks.ensure_ready,
        config_module=_config,
        report_type=Report,
        resolve=_resolve,
        finish=_finish,
        shared_guards=_SHARED,
        make_guard=guard,
        policy_type=Policy,
    )
)
if not TYPE_CHECKING:  # the same function; in C, guard(name) is a dict lookup
    guard = _guard_lookup
if _core.compiled is not None:  # a guard's exit skips _finish where it would do nothing
    _core.compiled.set_null_sink(NullSink)

__all__ = ["Action", "Guard", "guard"]
