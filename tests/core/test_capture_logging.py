"""Log records made inside a guard are captured; outside, logging is untouched."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import errpolicy
import pytest
from errpolicy import Policy, Severity

from .conftest import ListHandler, ListSink

RECORD_ALL = Policy(raise_on="NONE", record="ALL")


def test_records_of_non_propagating_loggers_are_captured(handler: ListHandler) -> None:
    """A logger with propagate=False is captured (pytest's caplog missed these, #3697)."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        logger.warning("hidden %s", "away")
    assert [("logging", logger.name, "hidden away")] == [
        (e.source, e.logger, e.message) for e in report.events
    ]


def test_captured_records_do_not_reach_their_handlers(handler: ListHandler) -> None:
    """A captured record is taken over by the guard: its own handlers do not see it."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    errpolicy.configure(sink=errpolicy.NullSink())
    with errpolicy.guard("t", policy=RECORD_ALL):
        logger.error("taken")
    assert [] == handler.records


def test_outside_guards_handlers_see_every_record(handler: ListHandler) -> None:
    """Outside guards records flow to handlers as usual, with errpolicy installed."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    errpolicy.install()
    logger.info("one")
    logger.error("two")
    assert ["one", "two"] == [r.getMessage() for r in handler.records]


def test_level_25_is_classified_notice_but_not_renamed(handler: ListHandler) -> None:
    """Level 25 is classified as NOTICE; installing leaves logging's level names alone."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    errpolicy.install()
    assert "Level 25" == logging.getLevelName(errpolicy.NOTICE)
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        logger.log(errpolicy.NOTICE, "failed over")
    assert [Severity.NOTICE] == [e.severity for e in report.events]


def test_records_below_the_logger_level_are_not_made_by_default(handler: ListHandler) -> None:
    """Without capture_log_level, a DEBUG call on an INFO logger makes no record to capture."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    logger.setLevel(logging.INFO)
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        logger.debug("quiet")
    assert () == report.events


def test_capture_log_level_makes_records_inside_guards_only(handler: ListHandler) -> None:
    """With capture_log_level=DEBUG, DEBUG records are made inside guards, and only there."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    logger.setLevel(logging.WARNING)
    errpolicy.configure(capture_log_level="DEBUG")
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        logger.debug("marking server as dead")
    logger.debug("outside")
    assert ["marking server as dead"] == [e.message for e in report.events]
    assert [] == handler.records
    assert not logger.isEnabledFor(logging.DEBUG)


def test_capture_log_level_records_out_of_scope_are_dropped(handler: ListHandler) -> None:
    """A record made only for capture, that no guard takes, is not emitted."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    logger.setLevel(logging.WARNING)
    errpolicy.configure(capture_log_level="DEBUG")
    scoped = Policy(raise_on="NONE", scope=errpolicy.match.logger("elsewhere"))
    with errpolicy.guard("t", policy=scoped) as report:
        logger.debug("nobody wants this")
        logger.warning("but this is emitted")
    assert () == report.events
    assert ["but this is emitted"] == [r.getMessage() for r in handler.records]


def test_unsetting_capture_log_level_restores_is_enabled_for() -> None:
    """configure(capture_log_level=None) puts Logger.isEnabledFor back."""
    original = logging.Logger.isEnabledFor
    errpolicy.configure(capture_log_level="DEBUG")
    assert original is not logging.Logger.isEnabledFor
    errpolicy.configure(capture_log_level=None)
    assert original is logging.Logger.isEnabledFor


def test_record_with_bad_args_keeps_raw_message(handler: ListHandler) -> None:
    """A record whose %-args do not fit is captured with its raw message."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        logger.warning("needs two %s %s", "one")
    assert ["needs two %s %s"] == [e.message for e in report.events]


def test_exc_info_becomes_the_cause(handler: ListHandler) -> None:
    """A raised log record with exc_info carries the exception as __cause__."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    with pytest.raises(errpolicy.PolicyViolation) as info, errpolicy.guard("t"):
        try:
            1 / 0  # noqa: B018  # the point is the exception
        except ZeroDivisionError:
            logger.exception("division failed")
    (inner,) = info.value.exceptions
    assert isinstance(inner, errpolicy.LoggedEvent)
    assert isinstance(inner.__cause__, ZeroDivisionError)


def test_recorded_records_go_to_the_sink_with_the_guard_name(
    handler: ListHandler, sink: ListSink
) -> None:
    """The sink gets each recorded event once the guard closes, named by the guard."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    with errpolicy.guard("session.start", policy=RECORD_ALL):
        logger.log(errpolicy.NOTICE, "replica served")
        assert [] == sink.events
    assert [("session.start", "replica served")] == [(e.guard, e.message) for e in sink.events]


def test_default_stdlib_sink_logs_structured_fields(handler: ListHandler) -> None:
    """StdlibSink logs on 'errpolicy' at the event's level with the fields in extra."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    out = ListHandler()
    target = logging.getLogger("errpolicy")
    target.addHandler(out)
    target.setLevel(logging.DEBUG)
    errpolicy.configure(sink=errpolicy.StdlibSink())
    try:
        with errpolicy.guard("g", policy=RECORD_ALL):
            logger.log(errpolicy.NOTICE, "replica served")
    finally:
        target.removeHandler(out)
    (record,) = out.records
    assert errpolicy.NOTICE == record.levelno
    assert "g: replica served" == record.getMessage()
    assert "NOTICE" == record.errpolicy["severity"]  # type: ignore[attr-defined]


def test_replay_sink_hands_records_back_to_their_handlers(handler: ListHandler) -> None:
    """ReplaySink gives a recorded record to its own logger's handlers after the guard."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    errpolicy.configure(sink=errpolicy.ReplaySink())
    with errpolicy.guard("g", policy=Policy(raise_on="NONE", record="WARNING")):
        logger.warning("replayed")
        logger.debug("suppressed")
    assert ["replayed"] == [r.getMessage() for r in handler.records]


@pytest.fixture
def kept() -> Iterator[list[str]]:
    """The messages of the records guards kept from the handlers, as a listener sees them."""
    from errpolicy import _capture

    seen: list[str] = []

    def listener(record: logging.LogRecord) -> None:
        seen.append(record.getMessage())

    _capture.RECORDS_KEPT.append(listener)
    try:
        yield seen
    finally:
        _capture.RECORDS_KEPT.remove(listener)


def test_records_kept_from_the_handlers_are_announced(
    handler: ListHandler, kept: list[str]
) -> None:
    """Each record a guard suppresses, records or raises on is handed to the listeners."""
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    errpolicy.configure(sink=errpolicy.NullSink())
    logger.error("outside")
    with errpolicy.guard("t", policy=Policy(raise_on="NONE", record="NONE")):
        logger.error("suppressed")
    with errpolicy.guard("t", policy=RECORD_ALL):
        logger.error("recorded")
    with (
        pytest.raises(errpolicy.PolicyViolation),
        errpolicy.guard("t", policy=Policy(raise_on="ERROR", immediate=True)),
    ):
        logger.error("raised")
    assert (["suppressed", "recorded", "raised"], ["outside"]) == (
        kept,
        [r.getMessage() for r in handler.records],
    )


def test_a_failing_listener_does_not_break_the_logging_call(handler: ListHandler) -> None:
    """A listener that raises is ignored: the guard still takes the record."""
    from errpolicy import _capture

    def broken(record: logging.LogRecord) -> None:
        raise RuntimeError("broken listener")

    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    _capture.RECORDS_KEPT.append(broken)
    try:
        with errpolicy.guard("t", policy=RECORD_ALL) as report:
            logger.error("taken")
    finally:
        _capture.RECORDS_KEPT.remove(broken)
    assert (["taken"], []) == ([e.message for e in report.events], handler.records)
