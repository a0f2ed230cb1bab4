"""errpolicy.log_direct's C twin: its record, event and routing are what the logger's
own path gives, including what it remembers between calls (template, level names,
checked types). Run in both modes: with ERRPOLICY_PURE_PYTHON the Python twin answers."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sys
import threading
import time
from typing import Any

import errpolicy
import pytest
from errpolicy import Event, Policy, _core, match
from errpolicy import _direct as _direct_module

from .conftest import ListHandler

RECORD_ALL = Policy(raise_on="NONE", record="ALL")
_NS = 1_796_072_454_999_999_999  # LogRecord's msecs rounding case (3.13+)


@pytest.fixture
def logger(handler: ListHandler) -> logging.Logger:
    """The handler fixture's logger at WARNING, as the memcache store's."""
    made: logging.Logger = handler.logger  # type: ignore[attr-defined]
    made.setLevel(logging.WARNING)
    return made


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock LogRecord and both twins read, fixed."""
    monkeypatch.setattr(time, "time", lambda: _NS / 1e9)
    monkeypatch.setattr(time, "time_ns", lambda: _NS)
    monkeypatch.setattr(_direct_module, "_time", lambda: _NS / 1e9)
    monkeypatch.setattr(_direct_module, "_time_ns", lambda: _NS)


def _captured(
    logger: logging.Logger, level: int = 25, extra: Any = None, n: int = 3
) -> list[Event]:
    """The events of ``n`` log_direct calls in one guard (the first makes the template)."""
    errpolicy.configure(sink=errpolicy.NullSink())
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        for _ in range(n):
            errpolicy.log_direct(logger, level, "%s", ("m",), pathname=__file__, extra=extra)
    return list(report.events)


def _made(logger: logging.Logger, level: int = 25, extra: Any = None) -> logging.LogRecord:
    return logger.makeRecord(logger.name, level, __file__, 0, "%s", ("m",), None, extra=extra)


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("extra", [None, {"outcome": "x", "more": 2}])
def test_every_record_is_the_loggers_record(logger: logging.Logger, extra: Any) -> None:
    """Each captured record, the first and those made from the template, is makeRecord's:
    type, attributes, their order and values."""
    expected = _made(logger, extra=extra)
    for event in _captured(logger, extra=extra):
        assert logging.LogRecord is type(event.original)
        assert list(expected.__dict__.items()) == list(event.original.__dict__.items())


@pytest.mark.usefixtures("frozen_clock")
def test_the_event_is_built_from_the_record(logger: logging.Logger) -> None:
    """The event's fields are the record's, as record_event reads them."""
    event = _captured(logger)[-1]
    record = event.original
    expected = ("logging", "m", record.name, 25, __file__, 0, record.created, record.threadName)
    assert expected == (
        event.source,
        event.message,
        event.logger,
        event.level,
        event.filename,
        event.lineno,
        event.time,
        event.thread,
    )
    assert (record.thread, errpolicy.Severity.NOTICE, "t") == (
        event.thread_id,
        event.severity,
        event.guard,
    )


@pytest.mark.usefixtures("frozen_clock")
def test_names_are_read_at_capture(logger: logging.Logger) -> None:
    """A thread or level renamed after the template was made is named as makeRecord
    names it at that moment; an unnamed level reads "Level N"."""
    _captured(logger, level=26, n=1)
    assert "Level 26" == _captured(logger, level=26)[-1].original.levelname
    current = threading.current_thread()
    name, before = current.name, logging.getLevelName(26)
    try:
        current.name = "renamed"
        logging.addLevelName(26, "NOTICE-ISH")
        record = _captured(logger, level=26)[-1].original
    finally:
        current.name = name
        logging._levelToName.pop(26, None)  # type: ignore[attr-defined]
        logging._nameToLevel.pop("NOTICE-ISH", None)  # type: ignore[attr-defined]
    assert ("renamed", "NOTICE-ISH") == (record.threadName, record.levelname)
    assert "Level 26" == before == _captured(logger, level=26)[-1].original.levelname


@pytest.mark.usefixtures("frozen_clock")
def test_a_patched_get_level_name_names_the_level(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LogRecord calls logging.getLevelName by name; so do both twins."""
    _captured(logger, n=1)
    monkeypatch.setattr(logging, "getLevelName", lambda level: f"L{level}")
    assert "L25" == _made(logger).levelname == _captured(logger)[-1].original.levelname


@pytest.mark.usefixtures("frozen_clock")
def test_a_renamed_logger_or_cleared_templates_still_make_its_record(
    logger: logging.Logger,
) -> None:
    """The remembered template follows the logger's name, and survives a cleared table."""
    _captured(logger, n=2)
    _direct_module._templates.clear()
    assert _made(logger).__dict__ == _captured(logger)[-1].original.__dict__
    name = logger.name
    try:
        logger.name = f"{name}.renamed"
        renamed = _captured(logger)[-1].original
        expected = _made(logger)
    finally:
        logger.name = name
    assert expected.__dict__ == renamed.__dict__
    assert f"{name}.renamed" == renamed.name


@pytest.mark.usefixtures("frozen_clock")
def test_the_multiprocessing_process_name(logger: logging.Logger) -> None:
    """With multiprocessing imported, processName is the current process's name."""
    process = multiprocessing.current_process()
    name = process.name
    try:
        process.name = "worker-7"
        captured = _captured(logger)[-1].original
        expected = _made(logger)
    finally:
        process.name = name
    assert "worker-7" == expected.processName == captured.processName


@pytest.mark.usefixtures("frozen_clock")
def test_inside_an_asyncio_task(logger: logging.Logger) -> None:
    """Inside a task the record (3.12+) and the event name the task."""

    async def main() -> tuple[list[Event], logging.LogRecord]:
        return _captured(logger), _made(logger)

    async def named() -> tuple[list[Event], logging.LogRecord]:
        return await asyncio.create_task(main(), name="the-task")

    events, expected = asyncio.run(named())
    assert expected.__dict__ == events[-1].original.__dict__
    assert ["the-task"] * 3 == [e.task for e in events]
    if sys.version_info >= (3, 12):
        assert "the-task" == events[-1].original.taskName


@pytest.mark.parametrize(
    ("prefixes", "name", "taken"),
    [
        (("a",), "a", True),
        (("a",), "a.b", True),
        (("a",), "ab", False),
        (("a.b",), "a", False),
        (("x", "a"), "a.b.c", True),
        (("a.",), "a..b", True),
    ],
)
def test_a_logger_scope_takes_what_the_matcher_takes(
    prefixes: tuple[str, ...], name: str, taken: bool
) -> None:
    """A guard scoped by match.logger takes the direct record exactly when the matcher
    takes the event; what it does not take reaches the handlers."""
    handler = ListHandler()
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    errpolicy.configure(sink=errpolicy.NullSink())
    scope = match.logger(*prefixes)
    try:
        with errpolicy.guard("t", policy=Policy(record="ALL", scope=scope)) as report:
            for _ in range(3):
                errpolicy.log_direct(logger, 25, "%s", ("m",), pathname=__file__)
    finally:
        logger.removeHandler(handler)
    assert [taken] * 3 == [scope(e) for e in report.events] + [False] * len(handler.records)
    assert (3 if taken else 0) == len(report.events)


def test_a_null_sink_subclass_still_gets_the_events(logger: logging.Logger) -> None:
    """Only a NullSink itself lets a guard's exit skip its sink: a subclass is called."""
    got: list[Event] = []

    class Keeping(errpolicy.NullSink):
        def __call__(self, event: Event, /) -> None:
            got.append(event)

    errpolicy.configure(sink=Keeping())
    with errpolicy.guard("t", policy=RECORD_ALL):
        errpolicy.log_direct(logger, 25, "%s", ("m",), pathname=__file__)
    assert ["m"] == [e.message for e in got]


def test_with_a_null_sink_an_escaping_error_still_gets_notes(logger: logging.Logger) -> None:
    """A guard with recorded events and a NullSink still annotates an exception leaving it."""
    errpolicy.configure(sink=errpolicy.NullSink())
    with pytest.raises(KeyError) as caught, errpolicy.guard("t", policy=RECORD_ALL):
        errpolicy.log_direct(logger, 25, "%s", ("noted",), pathname=__file__)
        raise KeyError("x")
    assert any("noted" in note for note in caught.value.__notes__)


@pytest.mark.skipif(_core.compiled is None, reason="the C twin only")
def test_the_c_twin_takes_the_call_once_the_template_is_made(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In C, errpolicy.log_direct is the C function; the first call goes to the Python
    twin (which makes the template), the next ones are made in C."""
    assert _core.compiled is not None
    assert _core.compiled.log_direct is errpolicy.log_direct
    made: list[int] = []
    real = _direct_module._record

    def counting(*args: Any) -> logging.LogRecord:
        made.append(1)
        return real(*args)

    monkeypatch.setattr(_direct_module, "_record", counting)
    events = _captured(logger, n=3)
    assert (3, 1) == (len(events), len(made))


def test_what_changes_after_the_call_is_not_in_its_record(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record holds what was true at the call: the clock, the thread's and level's
    names, the extra's values, whenever ``original`` is first read."""
    clock = [_NS]
    for module, name, tick in (
        (time, "time", lambda: clock[0] / 1e9),
        (time, "time_ns", lambda: clock[0]),
        (_direct_module, "_time", lambda: clock[0] / 1e9),
        (_direct_module, "_time_ns", lambda: clock[0]),
    ):
        monkeypatch.setattr(module, name, tick)
    extra = {"outcome": "at-call"}
    expected = _made(logger, extra=extra).__dict__
    _captured(logger, extra=extra, n=1)
    errpolicy.configure(sink=errpolicy.NullSink())
    current = threading.current_thread()
    name = current.name
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        errpolicy.log_direct(logger, 25, "%s", ("m",), pathname=__file__, extra=extra)
    try:
        clock[0] += 5_000_000_000
        extra["outcome"] = "later"
        current.name = "renamed-later"
        logging.addLevelName(25, "LATER")
        record = report.events[0].original
    finally:
        current.name = name
        logging._levelToName.pop(25, None)  # type: ignore[attr-defined]
        logging._nameToLevel.pop("LATER", None)  # type: ignore[attr-defined]
    assert list(expected.items()) == list(record.__dict__.items())


def test_the_record_is_one_object_and_the_event_behaves_as_a_value(
    logger: logging.Logger,
) -> None:
    """``original`` is the same record on every read; equality, hashing, copying and
    pickling of the event see it; a listener for kept records gets that same record."""
    import copy
    import pickle

    from errpolicy import _capture

    heard: list[logging.LogRecord] = []
    _capture.RECORDS_KEPT.append(heard.append)
    try:
        event = _captured(logger, extra={"outcome": 1})[-1]
    finally:
        _capture.RECORDS_KEPT.remove(heard.append)
    record = event.original
    assert record is event.original is heard[-1]
    assert event == copy.copy(event)
    assert hash(event) == hash(copy.copy(event))
    again = pickle.loads(pickle.dumps(event))
    assert (record.__dict__, event.message) == (again.original.__dict__, again.message)


def test_a_fresh_event_still_reads_and_sets_original() -> None:
    """Events made directly keep their ``original`` as given, and it can be set as a slot."""
    info = errpolicy.Severity.INFO
    event = Event("logging", info, None, "m", None, "x", 20, "f", 1, 0.0, "t", 1, None, {"a": 1})
    assert {"a": 1} == event.original
    object.__setattr__(event, "original", "other")
    assert "other" == event.original
    assert "original" == Event.original.__name__  # type: ignore[attr-defined]


def test_a_class_changed_after_the_call_is_checked_again(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the C twin remembered about a class stops counting once the class changes:
    a makeRecord or getMessage patched later is used, as the logger's path uses it."""
    _captured(logger)
    real_make = logging.Logger.makeRecord

    def tagging(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = real_make(self, *args, **kwargs)
        record.tagged = True
        return record

    monkeypatch.setattr(logging.Logger, "makeRecord", tagging)
    assert [True] * 3 == [getattr(e.original, "tagged", False) for e in _captured(logger)]
    monkeypatch.undo()
    _captured(logger)
    monkeypatch.setattr(logging.LogRecord, "getMessage", lambda self: "patched")
    assert ["patched"] * 3 == [e.message for e in _captured(logger)]
