"""A log record handed straight to the current guard, for libraries that report often.

``log_direct(logger, level, msg, args, pathname=fn, lineno=lno, extra=extra)`` does
what ``logger.handle(logger.makeRecord(logger.name, level, fn, lno, msg, args, None,
extra=extra))`` does, by a shorter way when nothing could tell the two apart: a guard
of this thread is open, errpolicy's ``callHandlers`` hook is the one in place (no other
library's wrapper above it, no subclass's own), and the logger has no filter and is
not disabled. The record is made by the logger as always; the event is built from it
as :func:`errpolicy._capture.record_event` builds it and offered to the guards as the
hook offers it; a record that no guard takes goes to the handlers as the hook sends
it. Anything else takes the logger's own path, unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _capture, _hooks, _state
from ._errors import PolicyViolation
from ._event import new_event
from ._severity import Severity

__all__ = ["log_direct"]

_active = _state.active
_get_ident = _state._get_ident
_Logger = logging.Logger
_handle = logging.Logger.handle
_call_handlers_inside = _capture.call_handlers_inside
_task_name = _capture._task_name
_settings = _capture.Logging
_kept = _capture.RECORDS_KEPT
_layers = _hooks._layers
_placed = _hooks._placed
_severity = Severity.from_logging_level


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
    record = logger.makeRecord(logger.name, level, fn, lno, msg, args, None, extra=extra)
    taken = False
    try:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args: the raw message, as record_event keeps
            message = str(record.msg)
        levelno = record.levelno
        draft = new_event(
            "logging",
            _severity(levelno),
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
            getattr(record, "taskName", None) or _task_name(),
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
