"""structlog events are captured natively (a processor) and through its stdlib integration."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import errpolicy
import pytest
from errpolicy import Policy, Severity

from .conftest import ListHandler

# An optional dependency (the dev extra has it): without it these tests skip.
structlog = pytest.importorskip("structlog")

RECORD_ALL = Policy(raise_on="NONE", record="ALL")


@pytest.fixture
def native() -> Iterator[list[dict[str, object]]]:
    """A native structlog configuration with errpolicy's processor, output captured in a list."""
    out: list[dict[str, object]] = []

    def keep(_: object, __: str, event_dict: dict[str, object]) -> str:
        out.append(dict(event_dict))
        return ""

    structlog.configure(
        processors=[structlog.processors.add_log_level, errpolicy.structlog_processor, keep],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    yield out
    structlog.reset_defaults()


def test_native_events_inside_a_guard_are_captured_and_dropped(
    native: list[dict[str, object]],
) -> None:
    """The processor hands the event to the guard and structlog drops it."""
    log = structlog.get_logger("svc")
    errpolicy.configure(sink=errpolicy.NullSink())
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        log.warning("disk almost full", free_mb=12)
    assert [] == native
    (event,) = report.events
    assert (
        event.source,
        event.severity,
        event.message,
    ) == ("structlog", Severity.WARNING, "disk almost full")
    assert 12 == event.original["free_mb"]


def test_native_events_outside_guards_pass_unchanged(native: list[dict[str, object]]) -> None:
    """Outside guards the processor returns the event as it got it."""
    structlog.get_logger().info("hello", n=1)
    assert [{"event": "hello", "n": 1, "level": "info"}] == native


def test_cached_loggers_are_captured_too(native: list[dict[str, object]]) -> None:
    """A logger bound before the guard (even cached) still reaches the guard."""
    structlog.configure(cache_logger_on_first_use=True)
    log = structlog.get_logger().bind(user=1)
    log.info("warm")
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        log.error("boom")
    assert ["boom"] == [e.message for e in report.events]


def test_stdlib_integration_events_are_captured_as_structlog() -> None:
    """Through structlog.stdlib + ProcessorFormatter, the record is seen as a structlog event."""
    h = ListHandler()
    std = logging.getLogger("via.stdlib")
    std.addHandler(h)
    std.setLevel(logging.DEBUG)
    std.propagate = False
    structlog.configure(
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        with errpolicy.guard("t", policy=RECORD_ALL) as report:
            structlog.get_logger("via.stdlib").warning("over stdlib", k="v")
    finally:
        structlog.reset_defaults()
        std.removeHandler(h)
    (event,) = report.events
    assert (event.source, event.logger, event.message) == ("structlog", "via.stdlib", "over stdlib")
    assert [] == h.records


def test_default_sink_is_structlog_when_installed(capsys: pytest.CaptureFixture[str]) -> None:
    """With structlog installed, recorded events are logged through structlog by default."""
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        with errpolicy.guard("session.start", policy=RECORD_ALL):
            logging.getLogger("any").warning("replica served")
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr().out
    assert '"guard": "session.start"' in out
    assert '"event": "replica served"' in out
