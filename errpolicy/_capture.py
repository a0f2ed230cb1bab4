"""Turning a warning, a log record or a structlog event into a draft Event, and
handing it to the innermost guard that takes it."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._classify import DefaultClassifier
from ._event import Event
from ._severity import Severity

if TYPE_CHECKING:
    import warnings

    from ._report import Report
    from ._state import Frame

_current_thread = threading.current_thread

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
    loop = asyncio._get_running_loop()
    if loop is None:
        return None
    task = asyncio.current_task(loop)
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
