"""errpolicy.log_direct: what anyone can observe is what logger.handle(makeRecord(...)) gives."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import errpolicy
import pytest
from errpolicy import Event, Policy, PolicyViolation, Severity, match
from errpolicy import _direct as _direct_module

from .conftest import ListHandler

RECORD_ALL = Policy(raise_on="NONE", record="ALL")
_TIMES = ("created", "msecs", "relativeCreated")

Emit = Callable[[logging.Logger, int, str, tuple[Any, ...], dict[str, Any] | None], None]


def _normal(
    logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...], extra: Any
) -> None:
    record = logger.makeRecord(logger.name, level, __file__, 0, msg, args, None, extra=extra)
    logger.handle(record)


def _direct(
    logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...], extra: Any
) -> None:
    # A first record makes the template; the one handled is made from it.
    _direct_module._record(logger, type(logger), level, __file__, 0, msg, args, extra)
    errpolicy.log_direct(logger, level, msg, args, pathname=__file__, extra=extra)


def _seen(record: logging.LogRecord) -> dict[str, Any]:
    """A record's attributes, in order, but its times (two records are never made at once)."""
    return {k: v for k, v in record.__dict__.items() if k not in _TIMES}


def _event(event: Event) -> tuple[Any, ...]:
    fields = {k: v for k, v in event.as_dict().items() if k != "time"}
    return (fields, type(event.original), _seen(event.original))


def _observed(scenario: Callable[[Emit], Any]) -> tuple[Any, Any]:
    """What ``scenario`` observes with the logger's own path, then with log_direct."""
    return scenario(_normal), scenario(_direct)


@pytest.fixture
def logger(handler: ListHandler) -> logging.Logger:
    """The handler fixture's logger at WARNING: NOTICE records pass only because they
    are handled directly (as the memcache store's are)."""
    made: logging.Logger = handler.logger  # type: ignore[attr-defined]
    made.setLevel(logging.WARNING)
    return made


def test_inside_a_guard_the_event_is_the_same(logger: logging.Logger, handler: ListHandler) -> None:
    """Inside a guard the captured event, its fields and its record are the same."""
    errpolicy.configure(sink=errpolicy.NullSink())

    def scenario(emit: Emit) -> object:
        with errpolicy.guard("t", policy=RECORD_ALL) as report:
            emit(logger, errpolicy.NOTICE, "failed over %s", ("node-a",), {"outcome": 7})
        events = [_event(e) for e in report.events]
        taken = list(handler.records)
        handler.records.clear()
        return events, taken

    normal, direct = _observed(scenario)
    assert normal == direct
    events, taken = direct[0], direct[1]
    assert [] == taken
    assert "failed over node-a" == events[0][0]["message"]
    assert 7 == events[0][2]["outcome"]


def test_the_sink_gets_the_same_event(logger: logging.Logger, sink: Any) -> None:
    """The recorded event reaches the sink with the same fields and record."""

    def scenario(emit: Emit) -> object:
        with errpolicy.guard("t", policy=RECORD_ALL):
            emit(logger, errpolicy.NOTICE, "%s", ("notice",), None)
        got = [_event(e) for e in sink.events]
        sink.events.clear()
        return got

    normal, direct = _observed(scenario)
    assert normal == direct
    assert 1 == len(direct)


def test_a_custom_classifier_sees_the_same_event(logger: logging.Logger) -> None:
    """A configured classifier is asked about the same event and decides the same way."""
    asked: list[tuple[Any, ...]] = []

    def classifier(event: Event) -> Severity | None:
        asked.append(_event(event))
        return Severity.WARNING

    errpolicy.configure(classifiers=[classifier], sink=errpolicy.NullSink())

    def scenario(emit: Emit) -> object:
        with errpolicy.guard("t", policy=RECORD_ALL) as report:
            emit(logger, errpolicy.NOTICE, "%s", ("classified",), None)
        decided = [(e.severity, e.classified_by, e.action) for e in report.events]
        seen = list(asked)
        asked.clear()
        return decided, seen

    normal, direct = _observed(scenario)
    assert normal == direct
    assert Severity.WARNING == direct[0][0][0]


def test_a_raising_policy_raises_the_same(logger: logging.Logger) -> None:
    """A policy that raises at once on NOTICE raises the same violation from both paths."""
    raising = Policy(raise_on="NOTICE", record="ALL", immediate=True)

    def scenario(emit: Emit) -> object:
        with pytest.raises(PolicyViolation) as caught, errpolicy.guard("t", policy=raising):
            emit(logger, errpolicy.NOTICE, "%s", ("raise me",), None)
        return str(caught.value), [_event(e.event) for e in caught.value.exceptions]  # type: ignore[union-attr]

    normal, direct = _observed(scenario)
    assert normal == direct


def test_without_a_guard_handlers_get_the_same_record(
    logger: logging.Logger, handler: ListHandler
) -> None:
    """With no guard open, the handlers get the same record (whatever the logger's level)."""
    errpolicy.install()

    def scenario(emit: Emit) -> object:
        emit(logger, errpolicy.NOTICE, "%s", ("nobody guards",), {"outcome": 1})
        got = [_seen(r) for r in handler.records]
        handler.records.clear()
        return got

    normal, direct = _observed(scenario)
    assert normal == direct
    assert ["nobody guards"] == [r["args"][0] for r in direct]


def test_out_of_scope_records_reach_the_handlers_once(
    logger: logging.Logger, handler: ListHandler
) -> None:
    """A record the open guard's scope does not take goes to the handlers, once."""
    elsewhere = Policy(raise_on="NONE", record="ALL", scope=match.logger("elsewhere"))

    def scenario(emit: Emit) -> object:
        with errpolicy.guard("t", policy=elsewhere) as report:
            emit(logger, errpolicy.NOTICE, "%s", ("not mine",), None)
        got = [_seen(r) for r in handler.records], len(report.events)
        handler.records.clear()
        return got

    normal, direct = _observed(scenario)
    assert normal == direct
    assert 0 == direct[1]
    assert 1 == len(direct[0])


def test_capture_level_drops_what_only_guards_wanted(
    logger: logging.Logger, handler: ListHandler
) -> None:
    """With capture_log_level set, a record below the logger's level that no guard takes
    is dropped by both paths."""
    errpolicy.configure(capture_log_level="DEBUG")
    elsewhere = Policy(raise_on="NONE", record="ALL", scope=match.logger("elsewhere"))

    def scenario(emit: Emit) -> object:
        with errpolicy.guard("t", policy=elsewhere):
            emit(logger, errpolicy.NOTICE, "%s", ("dropped",), None)
        got = [_seen(r) for r in handler.records]
        handler.records.clear()
        return got

    normal, direct = _observed(scenario)
    assert normal == direct
    assert [] == direct


def test_a_logger_filter_sees_and_drops_the_same(
    logger: logging.Logger, handler: ListHandler
) -> None:
    """A filter on the logger sees the same record and can drop it on both paths."""
    seen: list[dict[str, Any]] = []

    def drop(record: logging.LogRecord) -> bool:
        seen.append(_seen(record))
        return False

    logger.addFilter(drop)
    try:

        def scenario(emit: Emit) -> object:
            with errpolicy.guard("t", policy=RECORD_ALL) as report:
                emit(logger, errpolicy.NOTICE, "%s", ("filtered",), None)
            got = list(seen), len(report.events), list(handler.records)
            seen.clear()
            return got

        normal, direct = _observed(scenario)
    finally:
        logger.removeFilter(drop)
    assert normal == direct
    assert (1, 0, []) == (len(direct[0]), direct[1], direct[2])


def test_a_record_factory_makes_the_record(logger: logging.Logger) -> None:
    """A custom LogRecord factory makes the record the guard captures, on both paths."""
    errpolicy.configure(sink=errpolicy.NullSink())
    previous = logging.getLogRecordFactory()

    class Tagged(logging.LogRecord):
        pass

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = Tagged(*args, **kwargs)
        record.tag = "mine"
        return record

    logging.setLogRecordFactory(factory)
    try:

        def scenario(emit: Emit) -> object:
            with errpolicy.guard("t", policy=RECORD_ALL) as report:
                emit(logger, errpolicy.NOTICE, "%s", ("made",), None)
            return [_event(e) for e in report.events]

        normal, direct = _observed(scenario)
    finally:
        logging.setLogRecordFactory(previous)
    assert normal == direct
    assert (Tagged, "mine") == (direct[0][1], direct[0][2]["tag"])


def test_a_wrapper_above_the_hook_still_sees_the_record(
    logger: logging.Logger, handler: ListHandler
) -> None:
    """Another library's callHandlers wrapper installed over errpolicy's sees the record."""
    errpolicy.install()
    errpolicy.configure(sink=errpolicy.NullSink())
    wrapped = logging.Logger.callHandlers
    seen: list[dict[str, Any]] = []

    def spy(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(_seen(record))
        wrapped(self, record)

    logging.Logger.callHandlers = spy  # type: ignore[method-assign]
    try:

        def scenario(emit: Emit) -> object:
            with errpolicy.guard("t", policy=RECORD_ALL) as report:
                emit(logger, errpolicy.NOTICE, "%s", ("spied",), None)
            got = list(seen), len(report.events)
            seen.clear()
            return got

        normal, direct = _observed(scenario)
    finally:
        logging.Logger.callHandlers = wrapped  # type: ignore[method-assign]
    assert normal == direct
    assert (1, 1) == (len(direct[0]), direct[1])


def test_a_disabled_logger_makes_nothing_reach_anyone(
    logger: logging.Logger, handler: ListHandler
) -> None:
    """A disabled logger's records reach neither the guard nor the handlers."""
    logger.disabled = True
    try:

        def scenario(emit: Emit) -> object:
            with errpolicy.guard("t", policy=RECORD_ALL) as report:
                emit(logger, errpolicy.NOTICE, "%s", ("off",), None)
            return len(report.events), list(handler.records)

        normal, direct = _observed(scenario)
    finally:
        logger.disabled = False
    assert normal == direct
    assert (0, []) == direct


def test_inside_a_guard_the_short_path_is_taken(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a guard, with nothing else to see it, the record skips the logger's
    handling: the callHandlers hook never builds its event (the normal path does)."""
    from errpolicy import _capture

    built: list[logging.LogRecord] = []
    real = _capture.record_event

    def counting(record: logging.LogRecord) -> Event:
        built.append(record)
        return real(record)

    monkeypatch.setattr(_capture, "record_event", counting)
    errpolicy.configure(sink=errpolicy.NullSink())

    def scenario(emit: Emit) -> object:
        with errpolicy.guard("t", policy=RECORD_ALL) as report:
            emit(logger, errpolicy.NOTICE, "%s", ("short",), None)
        got = len(built), len(report.events)
        built.clear()
        return got

    assert ((1, 1), (0, 1)) == _observed(scenario)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Set the clock both LogRecord and log_direct read, in nanoseconds."""

    def set_to(ns: int) -> None:
        monkeypatch.setattr(time, "time", lambda: ns / 1e9)
        monkeypatch.setattr(time, "time_ns", lambda: ns)
        monkeypatch.setattr(_direct_module, "_time", lambda: ns / 1e9)
        monkeypatch.setattr(_direct_module, "_time_ns", lambda: ns)

    return set_to


@pytest.mark.parametrize(
    "ns", [1_796_072_454_613_155_800, 1_796_072_454_999_999_999, 1_796_072_455_000_000_001]
)
@pytest.mark.parametrize("extra", [None, {"outcome": "x", "more": 2}])
def test_a_record_from_the_template_is_the_loggers_record(
    logger: logging.Logger, frozen_clock: Callable[[int], None], ns: int, extra: Any
) -> None:
    """A record made from the template equals makeRecord's: type, attribute order, values."""
    frozen_clock(ns)
    args = ("a", 1)
    made = [
        _direct_module._record(logger, type(logger), 25, __file__, 0, "%s %s", args, extra)
        for _ in range(3)
    ]
    expected = logger.makeRecord(logger.name, 25, __file__, 0, "%s %s", args, None, extra=extra)
    for record in made:
        assert logging.LogRecord is type(record)
        assert list(expected.__dict__.items()) == list(record.__dict__.items())


def test_a_record_from_the_template_follows_thread_and_level_names(
    logger: logging.Logger, frozen_clock: Callable[[int], None]
) -> None:
    """A renamed thread or level is named as makeRecord names it, not as the template did."""
    frozen_clock(1_796_072_454_613_155_800)
    before = logging.getLevelName(25)

    def made() -> list[tuple[logging.LogRecord, logging.LogRecord]]:
        ours = _direct_module._record(logger, type(logger), 25, __file__, 0, "%s", ("m",), None)
        theirs = logger.makeRecord(logger.name, 25, __file__, 0, "%s", ("m",), None)
        return [(theirs, ours)]

    made()  # the template
    current = threading.current_thread()
    name = current.name
    try:
        current.name = "renamed"
        logging.addLevelName(25, "NOTICE-ISH")
        pairs = made()
    finally:
        current.name = name
        logging.addLevelName(25, before)
    for theirs, ours in pairs:
        assert ("renamed", "NOTICE-ISH") == (ours.threadName, ours.levelname)
        assert theirs.__dict__ == ours.__dict__


def test_a_record_from_the_template_in_an_asyncio_task(
    logger: logging.Logger, frozen_clock: Callable[[int], None]
) -> None:
    """Inside a task, the record names the task as makeRecord does (Python 3.12+)."""
    frozen_clock(1_796_072_454_613_155_800)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        for _ in range(2):
            ours = _direct_module._record(logger, type(logger), 25, __file__, 0, "%s", ("t",), None)
        theirs = logger.makeRecord(logger.name, 25, __file__, 0, "%s", ("t",), None)
        return theirs.__dict__, ours.__dict__

    async def named() -> tuple[dict[str, Any], dict[str, Any]]:
        return await asyncio.create_task(main(), name="the-task")

    theirs, ours = asyncio.run(named())
    assert theirs == ours
    if sys.version_info >= (3, 12):
        assert "the-task" == ours["taskName"]


def test_a_record_factory_or_mapping_arguments_ask_the_logger(logger: logging.Logger) -> None:
    """With a record factory, or one mapping argument, the logger makes the record."""
    previous = logging.getLogRecordFactory()
    made: list[logging.LogRecord] = []

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(previous(*args, **kwargs))
        return made[-1]

    logging.setLogRecordFactory(factory)
    try:
        for _ in range(2):
            record = _direct_module._record(
                logger, type(logger), 25, __file__, 0, "%s", ("f",), None
            )
    finally:
        logging.setLogRecordFactory(previous)
    assert record is made[-1]
    for _ in range(2):
        mapped = _direct_module._record(
            logger, type(logger), 25, __file__, 0, "%(a)s", ({"a": 1},), None
        )
    assert ("1", {"a": 1}) == (mapped.getMessage(), mapped.args)
