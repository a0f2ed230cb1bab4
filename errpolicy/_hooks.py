"""The one-time install: hooks into warnings and logging that capture inside guards
and step aside everywhere else.

What install changes, for the life of the process (or until uninstall()), is
listed in docs/capture.md ("What installing changes"). In short:

- ``warnings.warn``, ``warnings.warn_explicit``, ``warnings._showwarnmsg`` and
  ``logging.Logger.callHandlers`` (and ``Logger.isEnabledFor`` while a capture
  level is configured) become hooks around what was there at install time.
  The hooks are C callables (``errpolicy._chooks``; :class:`PyHook` is their
  Python twin): outside guards they call what they wrap with the caller's own
  arguments and add no frame, so tracebacks, stack walks and ``stacklevel``
  are as without errpolicy.
- The first guard puts one filter at the front of the warnings filters; its
  matcher is true only inside a guard of the current thread, with action
  ``always``, so C-level warnings inside a guard reach it every time.
- The first guard also appends :func:`collecting` to ``gc.callbacks``: while the
  collector runs finalizers, the guards of that thread step aside.

Hooks chain: each wraps what it found at install, and uninstall removes only
errpolicy's own layer. If another library wrapped on top of it, the layer
cannot be unlinked from the middle: it becomes a pass-through, and the next
install switches it back on instead of adding a second one.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import logging
import os
import sys
import threading
import types
import warnings
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from . import _capture, _state
from ._capture import route, structlog_event

if TYPE_CHECKING:
    from ._event import Event

_current_frame = _state.current_frame
_active = _state.active
_hidden = _state.hidden
_copy_context = contextvars.copy_context
_get_ident = threading.get_ident


# -- the hook, in Python (the twin of errpolicy/_chooks.c) -------------------------


class PyHook:
    """A callable standing in for ``original``: outside guards it calls ``original``
    with the caller's arguments; inside a guard of this thread it asks ``slow``
    (see :mod:`errpolicy._capture` for the answers). ``bind=True`` makes it bind
    like a function when looked up on a class (for ``Logger`` methods)."""

    __slots__ = ("__wrapped__", "_bind", "_direct", "slow")

    def __init__(
        self,
        original: Callable[..., Any],
        slow: Callable[..., Any] | None,
        active: Any,
        *,
        bind: bool = False,
        direct: bool = False,
    ) -> None:
        self.__wrapped__ = original
        self.slow = slow
        self._bind = bind
        self._direct = direct

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        slow = self.slow
        if slow is not None:
            frame = _active.get()
            if frame is not None and frame[2] == _get_ident() and frame is not _hidden[0]:
                try:
                    decision = slow(frame, *args, **kwargs)
                except TypeError:  # the arguments did not bind: the original says why
                    decision = True
                else:
                    if self._direct or decision is None:
                        return decision
                token = _active.set(None)
                try:
                    if decision is True:
                        return self._forward(args, kwargs)
                    function, arguments = decision
                    return function(*arguments)
                finally:
                    _active.reset(token)
        return self._forward(args, kwargs)

    def _forward(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if not self._bind or obj is None:
            return self
        return types.MethodType(self, obj)

    @property
    def __name__(self) -> str:
        return self.__wrapped__.__name__

    def __getattr__(self, name: str) -> Any:  # __qualname__ and the like: the original's
        return getattr(self.__wrapped__, name)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.__wrapped__.__doc__

    def __repr__(self) -> str:
        return f"<errpolicy hook of {self.__wrapped__!r}>"


def _two_levels_up(
    message: Any,
    category: Any = None,
    stacklevel: int = 1,
    source: Any = None,
    *,
    skip_file_prefixes: tuple[str, ...] = (),
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if not skip_file_prefixes:
        return (message, category, max(1, stacklevel) + 2, source), {}
    # Whether the caller itself is skipped changes how many levels our two frames
    # are worth: find the level that lands where the caller's own call would.
    forward = sys._getframe(2)  # 0: here, 1: PyWarnHook._forward, 2: PyHook.__call__
    target = _capture.walk(forward.f_back, stacklevel, skip_file_prefixes)
    level = max(2, stacklevel)
    while level < max(2, stacklevel) + 4 and (
        _capture.walk(sys._getframe(1), level, skip_file_prefixes) is not target
    ):
        level += 1
    return (message, category, level, source), {"skip_file_prefixes": skip_file_prefixes}


class PyWarnHook(PyHook):
    # The twin's warnings.warn: its frames (__call__ and _forward) sit between the
    # caller and the original, so it asks for two more stack levels (the C hook needs
    # none). No docstring: __doc__ is the original's.

    __doc__ = PyHook.__dict__["__doc__"]

    __slots__ = ()

    def _forward(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with contextlib.suppress(TypeError):  # bad arguments: the original raises its own
            args, kwargs = _two_levels_up(*args, **kwargs)
        return self.__wrapped__(*args, **kwargs)


_capture.SKIP_CODES.update(
    {PyHook.__call__.__code__, PyHook._forward.__code__, PyWarnHook._forward.__code__}
)


def _compiled() -> types.ModuleType | None:
    if os.environ.get("ERRPOLICY_PURE_PYTHON"):
        return None
    try:
        from . import _chooks
    except ImportError:  # not built: no compiler at install time, or another platform
        return None
    return _chooks


_chooks = _compiled()
#: "c" when the hooks are C callables (no frame), "python" for the twin.
IMPLEMENTATION = "python" if _chooks is None else "c"


def _make_hook(
    name: str, original: Callable[..., Any], slow: Callable[..., Any], bind: bool, direct: bool
) -> Any:
    if _chooks is not None:
        return _chooks.Hook(original, slow, _active, bind=bind, direct=direct, hidden=_hidden)
    hook_type = PyWarnHook if name == "warn" else PyHook
    return hook_type(original, slow, _active, bind=bind, direct=direct)


def _placement(layer: Any) -> Any:
    """What goes in place of the layer's original: in C, a builtin in place of a
    builtin (``warnings.warn``, ``warn_explicit``), so that CPython calls it by its
    fastest path and it looks like what it replaced; else the layer itself."""
    if _chooks is not None and type(layer.__wrapped__) is types.BuiltinFunctionType:
        return _chooks.builtin(layer)
    return layer


# -- errpolicy's warnings filter ---------------------------------------------------


class _GuardIsOpen:
    """The message matcher of errpolicy's warnings filter: true only inside a guard
    of this thread (the twin of ``_chooks.GuardIsOpen``)."""

    __slots__ = ()
    pattern = "<errpolicy: a guard is open here>"

    def match(self, text: str) -> bool:
        return _current_frame() is not None

    def __repr__(self) -> str:
        return "errpolicy.guard_is_open"


_MATCHER: Any = _GuardIsOpen() if _chooks is None else _chooks.GuardIsOpen(_active, _hidden)
#: The entry put in the warnings filters.
ENTRY: tuple[Any, ...] = ("always", _MATCHER, Warning, None, 0)

#: Python 3.14+ with context-aware warnings (``-X context_aware_warnings``, the
#: default on free-threaded builds): inside ``catch_warnings`` the filters that
#: count are the context's copy, not ``warnings.filters``.
CONTEXT_AWARE = bool(getattr(sys.flags, "context_aware_warnings", False))

#: What a guard's entry (errpolicy._core) compares ``warnings.filters[0]`` with,
#: calling :func:`ensure_ready` when it differs. With context-aware warnings that
#: check cannot see the context's list, so FILTER is then an equal tuple that is
#: never in any list, and every entry asks ensure_ready().
FILTER: tuple[Any, ...] = ENTRY if not CONTEXT_AWARE else (*ENTRY[:4], 0)


def _filters() -> list[Any]:
    # typeshed types warnings.filters as a Sequence of regex tuples; it is a list
    # and our entry carries a matcher object, which the warnings module allows.
    return cast("list[Any]", warnings.filters)


_warnings_context: Any = getattr(warnings, "_warnings_context", None)


def _effective_filters() -> list[Any]:
    """The filter list that decides here: the context's inside ``catch_warnings``
    with context-aware warnings, else ``warnings.filters``."""
    if CONTEXT_AWARE and _warnings_context is not None:
        context = _warnings_context.get(None)
        if context is not None:
            return cast("list[Any]", context._filters)
    return _filters()


def put_filter_first() -> None:
    """Make errpolicy's filter the first one again if something displaced it, and
    have the collector's callback in place (both come with the first guard).

    Deliberately without ``warnings._filters_mutated()``: no registry is cleared.
    """
    if collecting not in gc.callbacks:
        gc.callbacks.append(collecting)
    filters = _effective_filters()
    if filters and filters[0] is ENTRY:
        return
    while ENTRY in filters:
        filters.remove(ENTRY)
    filters.insert(0, ENTRY)


def collecting(phase: str, info: object) -> None:
    """``gc.callbacks`` entry: while the collector runs finalizers, the guard that was
    innermost in the thread that runs them captures nothing. What ``__del__`` of some
    other call's garbage warns or logs (an unclosed transport, a task destroyed while
    pending) is not the guarded call's: it goes on as without errpolicy
    (docs/capture.md, "Finalizers"). A guard a finalizer opens is its own.

    The frame is read from a copy of the context, not with ``ContextVar.get``: a
    ``get`` here crashed Python 3.11's collector in the tests (there a collection
    runs inside an allocation, possibly one that ``ContextVar.set`` or ``reset`` is
    making, and ``get`` writes the variable's cache); reading a copy writes
    nothing."""
    _hidden[0] = _copy_context().get(_active) if phase == "start" else None


class Installed:
    on = False
    capture_level: int | None = None


class capture_disabled:  # used like a function: `with capture_disabled():`
    """Run a block as if no guard were open (for sinks and pass-through).

    A class rather than a generator-based context manager: it runs on every
    recorded event and every pass-through, and this costs a fraction."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _state.active.set(None)

    def __exit__(self, *exc_info: object) -> None:
        _state.active.reset(self._token)


# -- structlog ---------------------------------------------------------------


def structlog_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor that hands events raised inside a guard to the guard.

    Put it early in a native structlog configuration's ``processors`` (after
    ``add_log_level`` if you use it). Outside guards it returns the event
    unchanged; inside, the guard takes the event and structlog drops it.
    """
    frame = _current_frame()
    if frame is None:
        return event_dict
    if route(frame, structlog_event(logger, method_name, event_dict)) is None:
        return event_dict
    import structlog  # optional dependency: only reached when structlog calls us

    raise structlog.DropEvent


# -- install -----------------------------------------------------------------

# (owner, attribute, what runs inside a guard, binds as a method, answers directly)
_TARGETS: dict[str, tuple[Any, str, Callable[..., Any], bool, bool]] = {
    "warn": (warnings, "warn", _capture.warn_inside, False, False),
    "warn_explicit": (warnings, "warn_explicit", _capture.warn_explicit_inside, False, False),
    "_showwarnmsg": (warnings, "_showwarnmsg", _capture.showwarnmsg_inside, False, False),
    "callHandlers": (logging.Logger, "callHandlers", _capture.call_handlers_inside, True, False),
    "isEnabledFor": (logging.Logger, "isEnabledFor", _capture.is_enabled_for_inside, True, True),
}

#: errpolicy's layer for each target, once made: kept after uninstall when another
#: library's wrapper sits on top of it, so that a later install reuses it.
_layers: dict[str, Any] = {}
#: What was put in place for each layer: the layer, or the builtin that calls it.
_placed: dict[str, Any] = {}
# Installing reads and replaces several attributes: two threads opening their first
# guard at once must not both wrap what they found.
_install_lock = threading.RLock()


def _reaches(wrapper: object, layer: object, depth: int = 4) -> bool:
    """Whether ``wrapper`` still calls ``layer``: through ``__wrapped__`` or a closure
    cell (how Sentry and most wrappers keep what they replaced)."""
    if wrapper is layer:
        return True
    if depth == 0:
        return False
    inner = [getattr(wrapper, "__wrapped__", None), getattr(wrapper, "__func__", None)]
    for cell in getattr(wrapper, "__closure__", None) or ():
        try:
            inner.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return any(item is not None and _reaches(item, layer, depth - 1) for item in inner)


def _put(name: str) -> None:
    owner, attribute, slow, bind, direct = _TARGETS[name]
    current = getattr(owner, attribute)
    layer = _layers.get(name)
    if layer is not None and _reaches(current, _placed[name]):
        layer.slow = slow  # ours is still in the chain (maybe under another's): on again
        return
    layer = _make_hook(name, current, slow, bind, direct)
    placed = _placement(layer)
    _layers[name] = layer
    _placed[name] = placed
    setattr(owner, attribute, placed)


def _remove(name: str) -> None:
    layer = _layers.get(name)
    if layer is None:
        return
    owner, attribute = _TARGETS[name][:2]
    if getattr(owner, attribute) is _placed[name]:
        setattr(owner, attribute, layer.__wrapped__)
        del _layers[name], _placed[name]
    else:
        layer.slow = None  # someone wrapped on top of ours: stay in the chain, pass through


def below(name: str) -> Any:
    """What errpolicy's hook ``name`` wraps, or what is in place when there is none:
    where an event goes "as without errpolicy" (replay, the capture level check)."""
    layer = _layers.get(name)
    if layer is not None:
        return layer.__wrapped__
    owner, attribute = _TARGETS[name][:2]
    return getattr(owner, attribute)


def install() -> None:
    """Install the hooks, once, around what is in place now. Called by
    :func:`configure` and the first guard."""
    with _install_lock:
        if Installed.on:
            return
        for name in ("warn", "warn_explicit", "_showwarnmsg", "callHandlers"):
            _put(name)
        Installed.on = True
        sync_level_hook(Installed.capture_level)


def uninstall() -> None:
    """Remove errpolicy's layer of every hook, and its filter (for tests and the curious)."""
    with _install_lock:
        for name in _TARGETS:
            _remove(name)
        _capture.Logging.is_enabled_for = below("isEnabledFor")
        for filters in {id(f): f for f in (_filters(), _effective_filters())}.values():
            while ENTRY in filters:
                filters.remove(ENTRY)
        while collecting in gc.callbacks:
            gc.callbacks.remove(collecting)
        _hidden[0] = None
        Installed.on = False


def installed() -> bool:
    """Whether the hooks are installed."""
    return Installed.on


def ensure_ready() -> None:
    """Called on guard entry: install once, and keep the filter first."""
    if not Installed.on:
        install()
    filters = _effective_filters()
    if not filters or filters[0] is not ENTRY:
        put_filter_first()


def sync_level_hook(level: int | None) -> None:
    """Wrap ``Logger.isEnabledFor`` only while a capture level is configured."""
    with _install_lock:
        Installed.capture_level = level
        _capture.Logging.capture_level = level
        if not Installed.on:
            return
        if level is None:
            _remove("isEnabledFor")
        else:
            _put("isEnabledFor")
        _capture.Logging.is_enabled_for = below("isEnabledFor")
    # isEnabledFor answers are cached per logger; start afresh.
    logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]


def replay(event: Event) -> None:
    """Send a recorded event where it would have gone without errpolicy."""
    original = event.original
    if event.source == "warning":
        below("_showwarnmsg")(original)
    elif isinstance(original, logging.LogRecord):
        below("callHandlers")(logging.getLogger(original.name), original)
    else:
        from ._sinks import StructlogSink

        StructlogSink(event.logger or "errpolicy")(event)
