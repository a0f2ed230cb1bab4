"""The store's failover notice by errpolicy.log_direct: what a guard, a sink, a logger
filter or a handler sees is what the logger's own path (makeRecord, handle) gave."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import errpolicy
import pytest
from errpolicy import _capture

from errpolicy_memcache import BreakerState, MemcacheSessionStore, _machine
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import Ranked, saved

pytestmark = pytest.mark.memcached  # real memcached processes

_TIMES = ("created", "msecs", "relativeCreated")


def _logger_path(
    logger: logging.Logger,
    level: int,
    msg: str,
    args: tuple[Any, ...],
    *,
    pathname: str,
    lineno: int = 0,
    extra: dict[str, Any] | None = None,
) -> None:
    """What the store did before log_direct."""
    logger.handle(
        logger.makeRecord(logger.name, level, pathname, lineno, msg, args, None, extra=extra)
    )


def _record(record: logging.LogRecord) -> dict[str, Any]:
    """A record's attributes but its times and its outcome object (timed per read);
    the outcome's message stands for it."""
    seen = {k: v for k, v in record.__dict__.items() if k not in _TIMES}
    seen["args"] = tuple(str(a) for a in record.args or ())
    seen["outcome"] = str(seen["outcome"])
    return seen


def _event(event: errpolicy.Event) -> tuple[Any, ...]:
    fields = {k: v for k, v in event.as_dict().items() if k != "time"}
    return fields, type(event.original), _record(event.original)


@pytest.fixture
def failing_over(
    store: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked
) -> Callable[[], None]:
    """A read that fails over the same way each time: the session's primary is dead
    and its breaker open (each read skips it)."""
    session = saved(store, a=1)
    primary = ranked(cluster, session.id)[0]
    primary.kill()
    (node,) = [n for n in store.nodes if n.address == primary.address]
    for _ in range(100):
        if node.breaker.state is BreakerState.OPEN:
            break
        store.start(session.id)
    assert BreakerState.OPEN is node.breaker.state
    store.start(session.id)  # the first read after: the copies settle where they stay

    def read() -> None:
        store.start(session.id)

    return read


def _both(monkeypatch: pytest.MonkeyPatch, read: Callable[[], Any]) -> tuple[Any, Any]:
    """``read()``'s result by the logger's path, then by log_direct."""
    with monkeypatch.context() as patched:
        patched.setattr(_machine, "_log_direct", _logger_path)
        before = read()
    return before, read()


def test_the_sink_gets_the_same_failover_event(
    failing_over: Callable[[], None],
    recorded: list[errpolicy.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recorded failover event: same fields, same record, by either path; the
    direct path skips the logging hook (it builds no event from a record)."""
    hooked: list[logging.LogRecord] = []
    real = _capture.record_event

    def counting(record: logging.LogRecord) -> errpolicy.Event:
        hooked.append(record)
        return real(record)

    monkeypatch.setattr(_capture, "record_event", counting)

    def read() -> tuple[list[tuple[Any, ...]], int]:
        del recorded[:], hooked[:]
        failing_over()
        return [_event(e) for e in recorded if e.logger == "errpolicy_memcache"], len(hooked)

    (before, hooked_before), (now, hooked_now) = _both(monkeypatch, read)
    assert before == now
    assert (1, 1, 0) == (len(now), hooked_before, hooked_now)
    assert "NOTICE" == now[0][0]["severity"]


def test_a_logger_filter_sees_the_same_failover_record(
    failing_over: Callable[[], None],
    recorded: list[errpolicy.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A filter on the store's logger sees the same record by either path (log_direct
    leaves it the logger's path), and the guard gets the same event after it."""
    seen: list[dict[str, Any]] = []

    def spy(record: logging.LogRecord) -> bool:
        seen.append(_record(record))
        return True

    logger = logging.getLogger("errpolicy_memcache")
    logger.addFilter(spy)
    try:

        def read() -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
            del recorded[:], seen[:]
            failing_over()
            return list(seen), [_event(e) for e in recorded if e.logger == "errpolicy_memcache"]

        before, now = _both(monkeypatch, read)
    finally:
        logger.removeFilter(spy)
    assert before == now
    assert (1, 1) == (len(now[0]), len(now[1]))


def test_a_record_factory_makes_the_failover_record(
    failing_over: Callable[[], None],
    recorded: list[errpolicy.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An application's LogRecord factory makes the failover record, by either path."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = "r-1"
        return record

    logging.setLogRecordFactory(factory)
    try:

        def read() -> list[tuple[Any, ...]]:
            del recorded[:]
            failing_over()
            return [_event(e) for e in recorded if e.logger == "errpolicy_memcache"]

        before, now = _both(monkeypatch, read)
    finally:
        logging.setLogRecordFactory(previous)
    assert before == now
    assert "r-1" == now[0][2]["request_id"]


def test_each_failover_notice_says_its_own_outcome(
    failing_over: Callable[[], None], recorded: list[errpolicy.Event]
) -> None:
    """The message the outage read makes once per answer pattern is, read after read,
    ``str()`` of that read's own outcome (which shows no times)."""
    for _ in range(3):
        del recorded[:]
        failing_over()
        (event,) = [e for e in recorded if e.logger == "errpolicy_memcache"]
        record = event.original
        assert (str(record.outcome), "session.start failover") == (
            record.getMessage(),
            event.message[: len("session.start failover")],
        )
