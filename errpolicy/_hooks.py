"""The one-time install: hooks into warnings and logging that capture inside guards
and step aside everywhere else.

What install changes, once, for the life of the process (or until uninstall()):

- ``warnings.warn`` and ``warnings.warn_explicit`` are wrapped. Outside guards
  they call the originals with the same arguments (one more stack level, so
  warnings point at the same line). Inside a guard they hand the warning to
  the guard directly, without consulting the per-module ``__warningregistry__``,
  so that every repeat is seen.
- One filter is put at the front of ``warnings.filters``. Its message matcher
  answers "match" only while a guard is open in the current thread or task,
  and its action is ``always``: C-level warnings inside a guard are shown
  (to the guard) every time, and the filter is invisible everywhere else.
- ``warnings._showwarnmsg`` is wrapped: inside a guard the warning goes to the
  guard, outside it goes to the original display.
- ``logging.Logger.callHandlers`` is wrapped (as Sentry does), so records of
  loggers with ``propagate=False`` are captured too.
- The level name NOTICE is registered for level 25 if that level has no name.
- Only with ``configure(capture_log_level=...)``: ``logging.Logger.isEnabledFor``
  is wrapped so that records at or above that level are created inside guards.

The warnings registry version is never bumped, so no module's
``__warningregistry__`` is ever cleared.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Callable, MutableMapping
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from . import _state
from ._capture import record_event, route, structlog_event, warning_event
from ._severity import NOTICE

if TYPE_CHECKING:
    from ._event import Event

# Typed loosely: skip_file_prefixes exists from Python 3.12 on.
_orig_warn: Callable[..., None] = warnings.warn
_orig_warn_explicit = warnings.warn_explicit
_orig_showwarnmsg = warnings._showwarnmsg  # type: ignore[attr-defined]
_orig_call_handlers = logging.Logger.callHandlers
_orig_is_enabled_for = logging.Logger.isEnabledFor

_current_frame = _state.current_frame
_active_get = _state.active.get
_get_ident = threading.get_ident


class _GuardIsOpen:
    """The message matcher of errpolicy's warnings filter: true only inside a guard."""

    __slots__ = ()
    pattern = "<errpolicy: a guard is open here>"

    def match(self, text: str) -> bool:
        return _current_frame() is not None

    def __repr__(self) -> str:
        return "errpolicy.guard_is_open"


FILTER: tuple[Any, ...] = ("always", _GuardIsOpen(), Warning, None, 0)


def _filters() -> list[Any]:
    # typeshed types warnings.filters as a Sequence of regex tuples; it is a list
    # and our entry carries a matcher object, which the warnings module allows.
    return cast("list[Any]", warnings.filters)


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


# -- warnings ----------------------------------------------------------------


def _is_internal(frame: FrameType) -> bool:
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


def _locate(
    stacklevel: int, skip_file_prefixes: tuple[str, ...]
) -> tuple[dict[str, Any], str, int]:
    """Where ``warnings.warn(..., stacklevel)`` would attribute the warning; called
    from :func:`_warn`, so frame 2 is warn's caller. Mirrors CPython's rules."""
    if skip_file_prefixes:
        stacklevel = max(2, stacklevel)
    frame: FrameType | None = sys._getframe(2)
    if frame is not None and (stacklevel <= 1 or _is_internal(frame)):
        for _ in range(stacklevel - 1):
            frame = frame.f_back if frame is not None else None
    else:
        for _ in range(stacklevel - 1):
            frame = frame.f_back if frame is not None else None
            while frame is not None and (
                _is_internal(frame) or frame.f_code.co_filename.startswith(skip_file_prefixes)
            ):
                frame = frame.f_back
    if frame is None:
        return sys.__dict__, "<sys>", 0
    return frame.f_globals, frame.f_code.co_filename, frame.f_lineno or 0


def _message_and_category(message: Any, category: Any) -> tuple[Warning, type[Warning]]:
    if isinstance(message, Warning):
        return message, type(message)
    if category is None:
        category = UserWarning
    if not (isinstance(category, type) and issubclass(category, Warning)):
        raise TypeError(f"category must be a Warning subclass, not '{type(category).__name__}'")
    return category(message), category


def _warn(
    message: Any,
    category: type[Warning] | None = None,
    stacklevel: int = 1,
    source: Any = None,
    *,
    skip_file_prefixes: tuple[str, ...] = (),
) -> None:
    frame = _active_get()
    if frame is None or frame[2] != _get_ident():
        # Outside guards: the original, one frame further up (ours is in between).
        if skip_file_prefixes:
            level = max(2, stacklevel) + 1
            _orig_warn(message, category, level, source, skip_file_prefixes=skip_file_prefixes)
        else:
            _orig_warn(message, category, (stacklevel if stacklevel > 1 else 1) + 1, source)
        return
    instance, category = _message_and_category(message, category)
    module_globals, filename, lineno = _locate(stacklevel, skip_file_prefixes)
    msg = warnings.WarningMessage(instance, category, filename, lineno, None, None, source)
    if route(frame, warning_event(msg)) is None:
        registry = module_globals.setdefault("__warningregistry__", {})
        module = module_globals.get("__name__", "<string>")
        with capture_disabled():
            _orig_warn_explicit(
                message, category, filename, lineno, module, registry, module_globals, source
            )


def _warn_explicit(
    message: Any,
    category: type[Warning],
    filename: str,
    lineno: int,
    module: str | None = None,
    registry: dict[Any, Any] | None = None,
    module_globals: dict[str, Any] | None = None,
    source: Any = None,
) -> None:
    frame = _current_frame()
    args = (message, category, filename, lineno, module, registry, module_globals, source)
    if frame is None:
        _orig_warn_explicit(*args)
        return
    instance, category = _message_and_category(message, category)
    msg = warnings.WarningMessage(instance, category, filename, lineno, None, None, source)
    if route(frame, warning_event(msg)) is None:
        with capture_disabled():
            _orig_warn_explicit(*args)


def _find_globals(filename: str, lineno: int) -> dict[str, Any] | None:
    """The globals of the frame a C-level warning points at, if it is on the stack."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename == filename and frame.f_lineno == lineno:
            return frame.f_globals
        frame = frame.f_back
    return None


def _showwarnmsg(msg: warnings.WarningMessage) -> None:
    frame = _current_frame()
    if frame is None:
        _orig_showwarnmsg(msg)
        return
    if route(frame, warning_event(msg)) is None:
        # No guard's scope takes it: run it through the filters and the module's
        # registry as the warnings module would have, with errpolicy's filter off.
        module_globals = _find_globals(msg.filename, msg.lineno)
        registry = (
            None if module_globals is None else module_globals.setdefault("__warningregistry__", {})
        )
        module = None if module_globals is None else module_globals.get("__name__")
        with capture_disabled():
            _orig_warn_explicit(
                msg.message,
                msg.category,
                msg.filename,
                msg.lineno,
                module,
                registry,
                module_globals,
                msg.source,
            )


def put_filter_first() -> None:
    """Make errpolicy's filter the first one again if something displaced it.

    Deliberately without ``warnings._filters_mutated()``: no registry is cleared.
    """
    filters = _filters()
    if filters and filters[0] is FILTER:
        return
    while FILTER in filters:
        filters.remove(FILTER)
    filters.insert(0, FILTER)


# -- logging -----------------------------------------------------------------


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    frame = _current_frame()
    if frame is None:
        _orig_call_handlers(self, record)
        return
    if route(frame, record_event(record)) is None:
        if Installed.capture_level is not None and not _orig_is_enabled_for(self, record.levelno):
            return  # made only because a guard might want it; nobody does
        with capture_disabled():
            _orig_call_handlers(self, record)


def _is_enabled_for(self: logging.Logger, level: int) -> bool:
    capture_level = Installed.capture_level
    if (
        capture_level is not None
        and level >= capture_level
        and _current_frame() is not None
        and not self.disabled
        and self.manager.disable < level
    ):
        return True
    return _orig_is_enabled_for(self, level)


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


def install() -> None:
    """Install the hooks, once. Called by :func:`configure` and the first guard."""
    if Installed.on:
        return
    if logging.getLevelName(NOTICE) == f"Level {NOTICE}":
        logging.addLevelName(NOTICE, "NOTICE")
    warnings.warn = _warn
    warnings.warn_explicit = _warn_explicit
    warnings._showwarnmsg = _showwarnmsg  # type: ignore[attr-defined]
    logging.Logger.callHandlers = _call_handlers  # type: ignore[method-assign]
    put_filter_first()
    Installed.on = True
    sync_level_hook(Installed.capture_level)


def uninstall() -> None:
    """Remove every hook that is still errpolicy's (for tests and for the curious)."""
    if warnings.warn is _warn:
        warnings.warn = _orig_warn
    if warnings.warn_explicit is _warn_explicit:
        warnings.warn_explicit = _orig_warn_explicit
    if warnings._showwarnmsg is _showwarnmsg:  # type: ignore[attr-defined]
        warnings._showwarnmsg = _orig_showwarnmsg  # type: ignore[attr-defined]
    if logging.Logger.callHandlers is _call_handlers:
        logging.Logger.callHandlers = _orig_call_handlers  # type: ignore[method-assign]
    if logging.Logger.isEnabledFor is _is_enabled_for:
        logging.Logger.isEnabledFor = _orig_is_enabled_for  # type: ignore[method-assign]
    while FILTER in _filters():
        _filters().remove(FILTER)
    Installed.on = False


def installed() -> bool:
    """Whether the hooks are installed."""
    return Installed.on


def ensure_ready() -> None:
    """Called on guard entry: install once, and keep the filter first."""
    if not Installed.on:
        install()
    filters = _filters()
    if not filters or filters[0] is not FILTER:
        put_filter_first()


def sync_level_hook(level: int | None) -> None:
    """Wrap ``Logger.isEnabledFor`` only while a capture level is configured."""
    Installed.capture_level = level
    if not Installed.on:
        return
    if level is None:
        if logging.Logger.isEnabledFor is _is_enabled_for:
            logging.Logger.isEnabledFor = _orig_is_enabled_for  # type: ignore[method-assign]
    else:
        logging.Logger.isEnabledFor = _is_enabled_for  # type: ignore[method-assign]
    # isEnabledFor answers are cached per logger; start afresh.
    logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]


def replay(event: Event) -> None:
    """Send a recorded event where it would have gone without errpolicy."""
    original = event.original
    if event.source == "warning":
        _orig_showwarnmsg(original)
    elif isinstance(original, logging.LogRecord):
        _orig_call_handlers(logging.getLogger(original.name), original)
    else:
        from ._sinks import StructlogSink

        StructlogSink(event.logger or "errpolicy")(event)
