"""A log record handed straight to the current guard, for libraries that report often.

``log_direct(logger, level, msg, args, pathname=fn, lineno=lno, extra=extra)`` does
what ``logger.handle(logger.makeRecord(logger.name, level, fn, lno, msg, args, None,
extra=extra))`` does, by a shorter way when nothing could tell the two apart: a guard
of this thread is open, errpolicy's ``callHandlers`` hook is the one in place (no other
library's wrapper above it, no subclass's own), and the logger has no filter and is
not disabled. The record is the one the logger would make (see :func:`_record`); the
event is built from it as :func:`errpolicy._capture.record_event` builds it and
offered to the guards as the hook offers it; a record that no guard takes goes to the
handlers as the hook sends it. Anything else takes the logger's own path, unchanged
(docs/capture.md, "A direct path for libraries that report often").
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _capture, _core, _hooks, _state
from . import match as _match
from ._errors import PolicyViolation
from ._event import new_event
from ._severity import Severity

__all__ = ["log_direct"]

_active = _state.active
_hidden = _state.hidden
_get_ident = _state._get_ident
_handle = logging.Logger.handle
_call_handlers_inside = _capture.call_handlers_inside
_task_name = _capture._task_name
_settings = _capture.Logging
_kept = _capture.RECORDS_KEPT
_layers = _hooks._layers
_placed = _hooks._placed
_severity = Severity.from_logging_level
_severities = {level: _severity(level) for level in (10, 20, 25, 30, 40, 50)}
_LogRecord = logging.LogRecord
_make_record = logging.Logger.makeRecord
_new = object.__new__
_threads: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]
_time = time.time
_time_ns = time.time_ns
_getpid = os.getpid
_level_name = logging.getLevelName
_level_names: dict[int, str] = logging._levelToName  # addLevelName changes it in place
_modules = sys.modules
# Python 3.13 made LogRecord's times from time.time_ns(); before, from time.time().
_NANOSECONDS = sys.version_info >= (3, 13)
#: A record made by the logger for each (logger, level, file, line, message, extra
#: keys, thread, process): the attributes that do not change between two calls, in
#: the order the record has them. Bounded: a new key past the limit is not kept.
_templates: dict[tuple[Any, ...], dict[str, Any]] = {}
_TEMPLATES_MAX = 256


def _record(
    logger: logging.Logger,
    kind: type[logging.Logger],
    level: int,
    fn: str,
    lno: int,
    msg: str,
    args: tuple[Any, ...],
    extra: dict[str, Any] | None,
) -> logging.LogRecord:
    """``logger.makeRecord(logger.name, level, fn, lno, msg, args, None, extra=extra)``:
    when the stdlib's own makeRecord and LogRecord would make it, the same record
    (type, attributes, their order and values) made from a copy of a template, its
    times, arguments, thread, process and task set as ``LogRecord.__init__`` sets
    them. Anything unusual (a record factory, a ``makeRecord`` of a subclass, the
    ``logging.log*`` switches off, mapping arguments) asks the logger."""
    if (
        logging._logRecordFactory is not _LogRecord  # type: ignore[attr-defined]  # getLogRecordFactory(), without the call
        or kind.makeRecord is not _make_record
        or not (logging.logThreads and logging.logProcesses and logging.logMultiprocessing)
        or (args and len(args) == 1 and isinstance(args[0], Mapping))
    ):
        return logger.makeRecord(logger.name, level, fn, lno, msg, args, None, extra=extra)
    ident = threading.get_ident()
    pid = _getpid()
    key = (logger.name, level, fn, lno, msg, None if extra is None else tuple(extra), ident, pid)
    template = _templates.get(key)
    if template is None:
        made = logger.makeRecord(logger.name, level, fn, lno, msg, args, None, extra=extra)
        if len(_templates) < _TEMPLATES_MAX:
            kept = made.__dict__.copy()
            kept["args"] = None  # hold no caller's object
            if extra is not None:
                kept.update(dict.fromkeys(extra))
            _templates[key] = kept
        return made
    values = template.copy()
    if _NANOSECONDS:
        ns = _time_ns()
        created = ns / 1e9
        msecs = (ns % 1_000_000_000) // 1_000_000 + 0.0
        if msecs == 999.0 and int(created) != ns // 1_000_000_000:
            msecs = 0.0
        values["created"] = created
        values["msecs"] = msecs
        values["relativeCreated"] = (ns - logging._startTime) / 1e6  # type: ignore[attr-defined]
    else:
        now = _time()
        values["created"] = now
        values["msecs"] = int((now - int(now)) * 1000) + 0.0
        values["relativeCreated"] = (now - logging._startTime) * 1000  # type: ignore[attr-defined]
    values["args"] = args
    thread = _threads.get(ident)
    values["threadName"] = thread.name if thread is not None else threading.current_thread().name
    # addLevelName may have renamed the level since; multiprocessing names the process.
    namer = logging.getLevelName  # LogRecord calls it by name: a patched one is used
    named = _level_names.get(level) if namer is _level_name else None
    values["levelname"] = named if named is not None else namer(level)
    values["processName"] = "MainProcess" if "multiprocessing" not in _modules else _process_name()
    if "taskName" in values:
        values["taskName"] = _task_of_record()
    if extra is not None:
        values.update(extra)
    record: logging.LogRecord = _new(_LogRecord)
    record.__dict__ = values
    return record


def _process_name() -> str:
    """The ``processName`` LogRecord gives."""
    mp = _modules.get("multiprocessing")
    if mp is not None:
        with contextlib.suppress(Exception):  # as LogRecord: the default name
            return mp.current_process().name  # type: ignore[no-any-return]
    return "MainProcess"


def _task_of_record() -> str | None:
    """The ``taskName`` LogRecord gives (Python 3.12 and later)."""
    if not getattr(logging, "logAsyncioTasks", True):
        return None
    asyncio = _modules.get("asyncio")
    if not asyncio:
        return None
    try:
        return asyncio.current_task().get_name()  # type: ignore[no-any-return]
    except Exception:
        return None


def log_direct(
    logger: logging.Logger,
    level: int,
    msg: str,
    args: tuple[Any, ...],
    *,
    pathname: str,
    lineno: int = 0,
    extra: dict[str, Any] | None = None,
) -> None:
    """Make ``logger``'s record of ``msg % args`` at ``level`` (attributed to
    ``pathname``, ``lineno``) and handle it, as ``logger.handle`` would, whatever the
    logger's level; cheaper inside a guard. A guard's own ``PolicyViolation`` raises
    here as it would there.

    For libraries that report often and always want their guards to see the record
    (errpolicy_memcache's failover notices).

    .. versionadded:: 0.1
    """
    fn, lno = pathname, lineno
    frame = _active.get()
    layer = _layers.get("callHandlers")
    kind = type(logger)
    if (
        frame is None
        or frame[2] != _get_ident()
        or frame is _hidden[0]
        or layer is None
        or layer.slow is not _call_handlers_inside
        or kind.callHandlers is not _placed.get("callHandlers")
        or kind.handle is not _handle
        or logger.disabled
        or logger.filters
        or type(msg) is not str
    ):
        logger.handle(logger.makeRecord(logger.name, level, fn, lno, msg, args, None, extra=extra))
        return
    record = _record(logger, kind, level, fn, lno, msg, args, extra)
    taken = False
    try:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args: the raw message, as record_event keeps
            message = str(record.msg)
        levelno = record.levelno
        draft = new_event(
            "logging",
            _severities.get(levelno) or _severity(levelno),
            None,
            message,
            None,
            record.name,
            levelno,
            record.pathname,
            record.lineno or 0,
            record.created,
            record.threadName or "",
            record.thread or 0,
            getattr(record, "taskName", None)
            or (None if "asyncio" not in _modules else _task_name()),
            record,
        )
        here: Any = frame
        while here is not None:
            report = here[0]
            if report.takes(draft):
                report.capture(draft)
                taken = True
                break
            here = here[1]
    except PolicyViolation:  # the guard's own, in immediate mode
        if _kept:
            _capture._announce_kept(record)
        raise
    except Exception:  # never into the caller: the record goes on as without us
        taken = False
    _after(logger, record, layer, taken)


def _after(logger: logging.Logger, record: logging.LogRecord, layer: Any, taken: bool) -> None:
    """What follows the guards' answer, as the hook does it: a record a guard took (or
    that only guards wanted) is announced to the listeners; any other goes to the
    handlers with capture off."""
    if taken or (
        _settings.capture_level is not None and not _settings.is_enabled_for(logger, record.levelno)
    ):
        if _kept:
            _capture._announce_kept(record)
        return
    token = _active.set(None)  # as the hook forwards: capture off
    try:
        layer.__wrapped__(logger, record)
    finally:
        _active.reset(token)


if _core.compiled is not None and not TYPE_CHECKING:
    import _abc

    # The same function in C: it takes the calls whose record's template is made and
    # that the short path above would take, and hands every other call to this one.
    _core.compiled.setup_direct(
        python=log_direct,
        after=_after,
        direct_module=sys.modules[__name__],
        logging_module=logging,
        layers=_layers,
        placed=_placed,
        inside=_call_handlers_inside,
        handle=_handle,
        make_record=_make_record,
        record_type=_LogRecord,
        get_message=_LogRecord.getMessage,
        mapping=Mapping,
        threads=_threads,
        level_names=_level_names,
        modules=_modules,
        severities=_severities,
        kept=_kept,
        announce=_capture._announce_kept,
        violation=PolicyViolation,
        matcher=type(_match.logger("errpolicy")),
        instancecheck=abc.ABCMeta.__instancecheck__,
        abc_check=_abc._abc_instancecheck,
        get_level_name=logging.getLevelName,
        thread_name=threading.Thread.name,
        cache_token=_abc.get_cache_token,
    )
    log_direct = _core.compiled.log_direct
