"""Turning a warning, a log record or a structlog event into a draft Event, and
handing it to the innermost guard that takes it.

The ``*_inside`` functions are what the hooks of :mod:`errpolicy._hooks` call
inside a guard of the current thread, as ``slow(frame, *args, **kwargs)`` with
the arguments the caller gave. They answer ``None`` when a guard took the event
(or it is to be dropped), ``True`` when the hook must forward the caller's own
arguments to what it wraps, or ``(callable, args)`` for a different call. The
hook forwards (from C, adding no frame) with capture switched off. They never
raise into the caller, except a guard's own immediate ``PolicyViolation``: if
building or routing the event fails, the event goes on as without errpolicy.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, MutableMapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._classify import _BY_CATEGORY, DefaultClassifier
from ._errors import PolicyViolation
from ._event import Event, new_event
from ._severity import Severity

if TYPE_CHECKING:
    from ._report import Report
    from ._state import Frame

_current_thread = threading.current_thread
# What current_thread() reads, without its call (it falls back to a dummy thread).
_threads: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]
_getframe = sys._getframe
_time = time.time
_new_event = new_event
_for_category = DefaultClassifier.for_category
_severity_of_category = _BY_CATEGORY.get
_modules = sys.modules
_WarningMessage = warnings.WarningMessage

_STRUCTLOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "notice": 25,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def route(frame: Frame | None, draft: Event) -> Report | None:
    """Give ``draft`` to the innermost open guard whose scope takes it.

    Returns that guard's report, or ``None`` when no guard takes the event and
    it must go where it would have gone without errpolicy.
    """
    while frame is not None:
        report = frame[0]
        if report.takes(draft):
            report.capture(draft)
            return report
        frame = frame[1]
    return None


def _task_name() -> str | None:
    # Only look for a task when asyncio is already in use; never import it here.
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    # _get_running_loop (in asyncio.events.__all__ since 3.7) answers None outside a
    # loop; current_task() would raise there, and an exception costs ten times more.
    # Both are looked up with a default: another thread may be importing asyncio, and
    # a partly initialised module has neither yet (then no loop runs in this thread).
    get_running_loop = getattr(asyncio, "_get_running_loop", None)
    current_task = getattr(asyncio, "current_task", None)
    if get_running_loop is None or current_task is None:
        return None
    loop = get_running_loop()
    if loop is None:
        return None
    task = current_task(loop)
    return None if task is None else task.get_name()


def warning_event(msg: warnings.WarningMessage) -> Event:
    """A draft event for a warning about to be shown."""
    category = msg.category
    thread = _current_thread()
    return Event(
        source="warning",
        severity=DefaultClassifier.for_category(category),
        action=None,
        message=str(msg.message),
        category=category,
        logger=None,
        level=None,
        filename=msg.filename,
        lineno=msg.lineno,
        time=time.time(),
        thread=thread.name,
        thread_id=thread.ident or 0,
        task=_task_name(),
        original=msg,
    )


def record_event(record: logging.LogRecord) -> Event:
    """A draft event for a stdlib log record (structlog's, through its stdlib integration)."""
    msg = record.msg
    if isinstance(msg, dict) and hasattr(record, "_logger"):
        # structlog.stdlib.ProcessorFormatter.wrap_for_formatter puts the event dict here.
        source: Any = "structlog"
        message = str(msg.get("event", ""))
    else:
        source = "logging"
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args: keep the raw message, as logging would
            message = str(msg)
    return Event(
        source=source,
        severity=Severity.from_logging_level(record.levelno),
        action=None,
        message=message,
        category=None,
        logger=record.name,
        level=record.levelno,
        filename=record.pathname,
        lineno=record.lineno or 0,
        time=record.created,
        thread=record.threadName or "",
        thread_id=record.thread or 0,
        task=getattr(record, "taskName", None) or _task_name(),
        original=record,
    )


def structlog_event(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Event:
    """A draft event for a native structlog event, seen by errpolicy's processor."""
    level_name = str(event_dict.get("level", method_name)).lower()
    level = _STRUCTLOG_LEVELS.get(level_name, logging.INFO)
    name = (
        event_dict.get("logger") or event_dict.get("logger_name") or getattr(logger, "name", None)
    )
    filename, lineno = _structlog_callsite(event_dict)
    thread = _current_thread()
    return Event(
        source="structlog",
        severity=Severity.from_logging_level(level),
        action=None,
        message=str(event_dict.get("event", "")),
        category=None,
        logger=None if name is None else str(name),
        level=level,
        filename=filename,
        lineno=lineno,
        time=time.time(),
        thread=thread.name,
        thread_id=thread.ident or 0,
        task=_task_name(),
        original=event_dict,
    )


def _structlog_callsite(event_dict: MutableMapping[str, Any]) -> tuple[str, int]:
    if "pathname" in event_dict and "lineno" in event_dict:  # CallsiteParameterAdder ran
        return str(event_dict["pathname"]), int(event_dict["lineno"])
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("structlog", "errpolicy")):
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return "<unknown>", 0


# -- what the hooks call inside a guard ------------------------------------------

#: Code objects of Python frames that stand between the caller and an ``*_inside``
#: function: the Python twin of the C hooks (``errpolicy._hooks.PyHook``). The C
#: hooks add no frame, so the caller is the inside function's own caller.
SKIP_CODES: set[Any] = set()

# The warnings engine that re-runs a C-level warning no guard took, through the
# filters and its module's registry: the C function when there is one, as the
# interpreter's own warnings use it, never a wrapper installed on the module.
try:
    from _warnings import warn_explicit as _engine
except ImportError:  # pragma: no cover  # interpreters without the C accelerator
    import warnings as _warnings_module

    _engine = _warnings_module.warn_explicit


class Logging:
    """What the logging hooks need from the install: set by ``errpolicy._hooks``."""

    #: ``configure(capture_log_level=...)``, or None.
    capture_level: int | None = None
    #: The ``Logger.isEnabledFor`` below errpolicy's (the one in place without it).
    is_enabled_for: Any = logging.Logger.isEnabledFor


FORWARD = True


def _is_internal(frame: FrameType) -> bool:
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


def walk(caller: FrameType | None, stacklevel: int, skip_file_prefixes: tuple[str, ...]) -> Any:
    """The frame ``warnings.warn(..., stacklevel, skip_file_prefixes=...)`` called from
    ``caller`` attributes the warning to (None past the stack's end). CPython's rules."""
    if skip_file_prefixes:
        stacklevel = max(2, stacklevel)
    frame = caller
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
    return frame


def _message_and_category(message: Any, category: Any) -> tuple[Warning, type[Warning]]:
    if isinstance(message, Warning):
        return message, type(message)
    if category is None:
        category = UserWarning
    if not (isinstance(category, type) and issubclass(category, Warning)):
        raise TypeError(f"category must be a Warning subclass, not '{type(category).__name__}'")
    return category(message), category


def _take(frame: Frame, make: Any, *args: Any) -> bool:
    """Whether a guard took the event ``make(*args)`` builds; False on any failure."""
    try:
        draft = make(*args)
        return route(frame, draft) is not None
    except PolicyViolation:
        raise  # the guard's own, in immediate mode
    except Exception:  # never into the caller: the event goes on as without us
        return False


def _warning_message(
    instance: Warning, category: type[Warning], filename: str, lineno: int, source: Any
) -> Event:
    import warnings

    return warning_event(
        warnings.WarningMessage(instance, category, filename, lineno, None, None, source)
    )


def warn_inside(
    frame: Frame,
    message: Any,
    category: Any = None,
    stacklevel: Any = 1,
    source: Any = None,
    *,
    skip_file_prefixes: Any = (),
) -> Any:
    """``warnings.warn`` inside a guard: every repeat reaches it, the registry unread.

    Flat on purpose: this runs for every warning a guard records, and each Python
    call it saves is a tenth of the stdlib's own cost of recording one. Its
    signature is ``warnings.warn``'s: arguments that do not bind raise TypeError,
    and the hook then forwards them to the original, which names the error."""
    try:
        if isinstance(message, Warning):
            category = type(message)
        else:
            if category is None:
                category = UserWarning
            elif not (isinstance(category, type) and issubclass(category, Warning)):
                return FORWARD  # the original raises its own error
            message = category(message)
        stacklevel = int(stacklevel)
        caller: FrameType | None = _getframe(1)
        if SKIP_CODES:
            while caller is not None and caller.f_code in SKIP_CODES:
                caller = caller.f_back
        if stacklevel <= 1 and not skip_file_prefixes:
            located = caller  # walk()'s answer, without the walk
        else:
            located = walk(caller, stacklevel, tuple(skip_file_prefixes))
    except Exception:  # bad arguments: the original raises its own error
        return FORWARD
    try:
        if located is None:
            filename, lineno = "<sys>", 0
        else:
            filename, lineno = located.f_code.co_filename, located.f_lineno or 0
        original = _WarningMessage(message, category, filename, lineno, None, None, source)
        thread_id = frame[2]  # the thread that owns the frame: the hook checked it is this one
        thread = _threads.get(thread_id) or _current_thread()
        severity = _severity_of_category(category)
        if severity is None:
            severity = _for_category(category)
        draft = _new_event(
            "warning",
            severity,
            None,
            str(message),
            category,
            None,
            None,
            filename,
            lineno,
            _time(),
            thread.name,
            thread_id,
            None if "asyncio" not in _modules else _task_name(),
            original,
        )
        here: Frame | None = frame
        while here is not None:
            report = here[0]
            if report.takes(draft):
                report.capture(draft)
                return None
            here = here[1]
    except PolicyViolation:
        raise  # the guard's own, in immediate mode
    except Exception:  # never into the caller: the event goes on as without us
        pass
    return FORWARD


def _explicit(
    message: Any,
    category: Any,
    filename: str,
    lineno: int,
    module: Any = None,
    registry: Any = None,
    module_globals: Any = None,
    source: Any = None,
) -> tuple[Warning, type[Warning], str, int, Any]:
    instance, category = _message_and_category(message, category)
    if not isinstance(filename, str) or not isinstance(lineno, int):
        raise TypeError("filename and lineno")
    return instance, category, filename, lineno, source


def warn_explicit_inside(frame: Frame, *args: Any, **kwargs: Any) -> Any:
    """``warnings.warn_explicit`` inside a guard; what no guard takes goes on unchanged."""
    try:
        explicit = _explicit(*args, **kwargs)
    except Exception:  # bad arguments: the original raises its own error
        return FORWARD
    return None if _take(frame, _warning_message, *explicit) else FORWARD


def _find_globals(filename: str, lineno: int) -> dict[str, Any] | None:
    """The globals of the frame a C-level warning points at, if it is on the stack."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == filename and frame.f_lineno == lineno:
            return frame.f_globals
        frame = frame.f_back
    return None


def _module_of(filename: str) -> str:
    """The module name CPython derives from a filename when it has no globals."""
    if not filename:
        return "<unknown>"
    return filename[:-3] if filename.endswith(".py") else filename


def showwarnmsg_inside(frame: Frame, *args: Any, **kwargs: Any) -> Any:
    """A warning about to be shown inside a guard: from C code, an early-bound ``warn``,
    or passed through by the filters. What no guard takes is run again through the
    filters and its module's registry, as it would have been without errpolicy."""
    msg = args[0] if len(args) == 1 and not kwargs else kwargs.get("msg")
    if msg is None or _take(frame, warning_event, msg):
        return None if msg is not None else FORWARD
    try:
        module_globals = _find_globals(msg.filename, msg.lineno)
        if module_globals is None:
            module, registry = _module_of(msg.filename), None
        else:
            module = module_globals.get("__name__", "<string>")
            registry = module_globals.setdefault("__warningregistry__", {})
        arguments = (msg.message, msg.category, msg.filename, msg.lineno, module, registry)
        return _engine, (*arguments, module_globals, msg.source)
    except Exception:  # not a WarningMessage: show it as it is
        return FORWARD


#: Called with each log record that a guard took (or raised on) or that exists only
#: for guards, before ``callHandlers`` returns: a wrapper installed on top of
#: errpolicy's hook (Sentry's logging integration) still sees the record after us,
#: and a listener (errpolicy.sentry's) tells it to skip the record.
RECORDS_KEPT: list[Callable[[logging.LogRecord], object]] = []


def _announce_kept(record: logging.LogRecord) -> None:
    for listener in RECORDS_KEPT:
        with contextlib.suppress(Exception):  # a broken listener must not break the call
            listener(record)


def call_handlers_inside(frame: Frame, *args: Any, **kwargs: Any) -> Any:
    """``Logger.callHandlers`` inside a guard: the guard takes the record, or it goes
    to the handlers (unless it exists only because a guard might have wanted it)."""
    if len(args) != 2 or kwargs or not isinstance(args[1], logging.LogRecord):
        return FORWARD
    logger, record = args
    try:
        taken = _take(frame, record_event, record)
    except PolicyViolation:
        if RECORDS_KEPT:
            _announce_kept(record)
        raise
    if taken or (
        Logging.capture_level is not None and not Logging.is_enabled_for(logger, record.levelno)
    ):  # taken, or made only because a guard might want it and nobody does
        if RECORDS_KEPT:
            _announce_kept(record)
        return None
    return FORWARD


def is_enabled_for_inside(frame: Frame, logger: Any, level: Any) -> Any:
    """``Logger.isEnabledFor`` inside a guard, with a capture level configured: records
    at or above it are made, whatever the logger's level."""
    capture_level = Logging.capture_level
    try:
        if (
            capture_level is not None
            and level >= capture_level
            and not logger.disabled
            and logger.manager.disable < level
        ):
            return True
    except Exception:  # odd arguments: the original answers
        pass
    return Logging.is_enabled_for(logger, level)
