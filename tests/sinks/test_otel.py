"""errpolicy.otel with the real OpenTelemetry SDK and its in-memory exporters."""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import errpolicy
import pytest
from errpolicy import Policy, PolicyViolation

pytest.importorskip("opentelemetry.sdk")

from errpolicy.otel import EventCounter, OTelSink  # after the importorskip
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

try:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
except ImportError:  # opentelemetry-sdk before 1.39 (make test-floors runs 1.35)
    from opentelemetry.sdk._logs.export import (  # type: ignore[attr-defined,no-redef]
        InMemoryLogExporter as InMemoryLogRecordExporter,
    )

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster

RECORD_ALL = Policy(raise_on="NONE", record="ALL")
RAISE_WARNINGS = Policy(raise_on="WARNING | ERROR", record="NOTICE")
log = logging.getLogger("t.sinks.otel")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(logging.NullHandler())


@dataclass
class Telemetry:
    """Real SDK providers wired to in-memory exporters, and the sink on them."""

    logs: InMemoryLogRecordExporter
    metrics: InMemoryMetricReader
    spans: InMemorySpanExporter
    tracer: Any
    sink: OTelSink

    def records(self) -> list[Any]:
        return [r.log_record for r in self.logs.get_finished_logs()]

    def counts(self) -> dict[tuple[str, str, str], int]:
        data = self.metrics.get_metrics_data()
        found: dict[tuple[str, str, str], int] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    assert "errpolicy.events" == metric.name
                    for point in metric.data.data_points:
                        a = point.attributes
                        key = (a["errpolicy.guard"], a["errpolicy.severity"], a["errpolicy.action"])
                        found[key] = point.value
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """OTelSink on fresh SDK providers (not the global ones), configured as the sink."""
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    sink = OTelSink(logger_provider=logger_provider, meter_provider=meter_provider)
    errpolicy.configure(sink=sink)
    yield Telemetry(logs, reader, spans, tracer_provider.get_tracer("t"), sink)
    logger_provider.shutdown()
    meter_provider.shutdown()
    tracer_provider.shutdown()


def test_a_recorded_event_becomes_a_log_record_with_its_fields(telemetry: Telemetry) -> None:
    """Body, severity and the event's fields as attributes."""
    with errpolicy.guard("checkout", policy=RECORD_ALL) as report:
        log.warning("card declined")
    [event] = report.events
    [record] = telemetry.records()
    assert ("card declined", 13, "WARNING") == (
        record.body,
        record.severity_number.value,
        record.severity_text,
    )
    expected = {
        "errpolicy.guard": "checkout",
        "errpolicy.action": "record",
        "errpolicy.severity": "WARNING",
        "errpolicy.source": "logging",
        "errpolicy.classified_by": "default",
        "errpolicy.logger": "t.sinks.otel",
        "errpolicy.level": 30,
        "code.file.path": __file__,
        "code.line.number": event.lineno,
        "thread.name": event.thread,
        "thread.id": event.thread_id,
    }
    assert expected == dict(record.attributes)
    assert int(event.time * 1e9) == record.timestamp


@pytest.mark.parametrize(
    ("level", "number"),
    [
        (logging.DEBUG, 5),
        (logging.INFO, 9),
        (25, 10),
        (logging.WARNING, 13),
        (logging.ERROR, 17),
        (logging.CRITICAL, 21),
    ],
)
def test_severity_numbers_follow_errpolicy_severity(
    telemetry: Telemetry, level: int, number: int
) -> None:
    """Each severity maps to its OpenTelemetry severity number."""
    with errpolicy.guard("t", policy=RECORD_ALL):
        log.log(level, "m")
    assert [number] == [r.severity_number.value for r in telemetry.records()]


def test_a_deprecation_is_between_notice_and_warning(telemetry: Telemetry) -> None:
    """A DeprecationWarning is DEPRECATED: INFO4 (12), with its category as an attribute."""
    with errpolicy.guard("t", policy=RECORD_ALL):
        warnings.warn("old", DeprecationWarning)
    [record] = telemetry.records()
    assert (12, "DEPRECATED", "DeprecationWarning") == (
        record.severity_number.value,
        record.severity_text,
        record.attributes["errpolicy.category"],
    )


def test_records_carry_the_trace_and_span_of_the_guard(telemetry: Telemetry) -> None:
    """A guard inside a span emits its records with that span's trace and span ids."""
    with telemetry.tracer.start_as_current_span("request") as span:
        with errpolicy.guard("t", policy=RECORD_ALL):
            log.warning("w")
        context = span.get_span_context()
    [record] = telemetry.records()
    assert (context.trace_id, context.span_id) == (record.trace_id, record.span_id)


def test_records_keep_the_guard_thread_span_apart(telemetry: Telemetry) -> None:
    """Two guards in two spans: each record carries its own span id."""
    ids = []
    for name in ("a", "b"):
        with telemetry.tracer.start_as_current_span(name) as span:
            with errpolicy.guard(name, policy=RECORD_ALL):
                log.warning(name)
            ids.append(span.get_span_context().span_id)
    assert ids == [r.span_id for r in telemetry.records()]


def test_a_raised_event_has_exception_attributes_and_errors_the_span(
    telemetry: Telemetry,
) -> None:
    """Raised events get exception.type/message; the span around the guard gets ERROR."""
    with (
        telemetry.tracer.start_as_current_span("request"),
        pytest.raises(PolicyViolation),
        errpolicy.guard("pay", policy=RAISE_WARNINGS),
    ):
        warnings.warn("rounding", RuntimeWarning)
        log.error("gateway down")
    records = telemetry.records()
    assert [
        ("raise", "RuntimeWarning", "rounding"),
        ("raise", "errpolicy.LoggedEvent", "[ERROR] t.sinks.otel: gateway down"),
    ] == [
        (
            r.attributes["errpolicy.action"],
            r.attributes["exception.type"],
            r.attributes["exception.message"],
        )
        for r in records
    ]
    [span] = telemetry.spans.get_finished_spans()
    assert (StatusCode.ERROR, "guard 'pay': 2 events in raise_on=WARNING | ERROR") == (
        span.status.status_code,
        span.status.description,
    )


def test_a_logged_exception_gives_its_own_type_and_stacktrace(telemetry: Telemetry) -> None:
    """log.exception inside a guard: exception.* describe the real exception."""
    with pytest.raises(PolicyViolation), errpolicy.guard("t", policy=RAISE_WARNINGS):
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed")
    [record] = telemetry.records()
    assert ("KeyError", "'missing'", True) == (
        record.attributes["exception.type"],
        record.attributes["exception.message"],
        '{}["missing"]' in record.attributes["exception.stacktrace"],
    )


def test_a_guard_that_records_only_leaves_the_span_unset(telemetry: Telemetry) -> None:
    """Recorded events do not touch the span's status."""
    with (
        telemetry.tracer.start_as_current_span("request"),
        errpolicy.guard("t", policy=RECORD_ALL),
    ):
        log.error("noted")
    [span] = telemetry.spans.get_finished_spans()
    assert StatusCode.UNSET == span.status.status_code


def test_an_immediate_violation_errors_the_span(telemetry: Telemetry) -> None:
    """In immediate mode too, the span gets ERROR."""
    immediate = Policy(raise_on="ERROR", immediate=True)
    with (
        telemetry.tracer.start_as_current_span("request"),
        pytest.raises(PolicyViolation),
        errpolicy.guard("t", policy=immediate),
    ):
        log.error("stop")
    [span] = telemetry.spans.get_finished_spans()
    assert StatusCode.ERROR == span.status.status_code


def test_suppressed_events_are_counted_not_logged(telemetry: Telemetry) -> None:
    """The counter counts every event by guard, severity and action, kept or not; the logs
    have the kept ones that were not suppressed (max_events=2 keeps d1 and w here)."""
    errpolicy.configure(max_events=2)
    with pytest.raises(PolicyViolation), errpolicy.guard("g", policy=RAISE_WARNINGS):
        log.debug("d1")
        log.debug("d2")
        log.log(25, "n")
        log.warning("w")
    with errpolicy.guard("g", policy=RAISE_WARNINGS):
        log.log(25, "again")
    assert {
        ("g", "DEBUG", "suppress"): 2,
        ("g", "NOTICE", "record"): 2,
        ("g", "WARNING", "raise"): 1,
    } == telemetry.counts()
    assert ["w", "again"] == [r.body for r in telemetry.records()]


def test_metrics_can_be_left_out() -> None:
    """OTelSink(metrics=False) sends logs and no metric points."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    sink = OTelSink(logger_provider=logger_provider, meter_provider=provider, metrics=False)
    errpolicy.configure(sink=sink)
    with errpolicy.guard("t", policy=RECORD_ALL):
        log.warning("w")
    data = reader.get_metrics_data()
    assert (1, []) == (
        len(logs.get_finished_logs()),
        [
            m
            for r in (data.resource_metrics if data else ())
            for s in r.scope_metrics
            for m in s.metrics
        ],
    )


def test_the_counter_alone_is_a_sink() -> None:
    """EventCounter counts without logging, as a sink of its own."""
    reader = InMemoryMetricReader()
    errpolicy.configure(sink=EventCounter(MeterProvider(metric_readers=[reader])))
    with errpolicy.guard("t", policy=RECORD_ALL):
        log.error("e")
    data = reader.get_metrics_data()
    [point] = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    assert (1, "ERROR", "record") == (
        point.value,
        point.attributes["errpolicy.severity"],
        point.attributes["errpolicy.action"],
    )


def test_store_events_carry_outcome_node_results_and_version(
    telemetry: Telemetry, pair: MemcachedCluster, store_timeouts: dict[str, float]
) -> None:
    """A failover read: the record has the store's outcome, node results and version."""
    store = MemcacheSessionStore(
        pair.addresses,
        secret_key="test-secret-key-0123456789abcdef",
        transport="pipelined",
        **store_timeouts,
        retry_after=60.0,
    )
    try:
        session = store.start(None)
        session["user"] = "ann"
        store.save(session)
        pair[0].kill()
        store.start(session.id)
    finally:
        store.close()
    ours = [
        r
        for r in telemetry.records()
        if r.attributes.get("errpolicy.logger") == "errpolicy_memcache"
    ]
    [record] = ours
    attributes = record.attributes
    nodes = list(attributes["errpolicy.store.node_results"])
    assert ("session.start", "failover", 10, session.version) == (
        attributes["errpolicy.store.operation"],
        attributes["errpolicy.store.outcome"],
        record.severity_number.value,
        attributes["errpolicy.store.version"],
    )
    assert (2, True) == (
        len(nodes),
        any(n.startswith(pair[1].address) and "=hit" in n for n in nodes),
    )


async def test_concurrent_tasks_each_log_under_their_own_span(telemetry: Telemetry) -> None:
    """Guards in two asyncio tasks at once: each record carries its own task's span."""

    async def handle(name: str, other_started: asyncio.Event, started: asyncio.Event) -> int:
        with telemetry.tracer.start_as_current_span(name) as span:
            async with errpolicy.guard(name, policy=RECORD_ALL):
                started.set()
                await other_started.wait()  # both guards are open now
                log.warning(name)
            span_id: int = span.get_span_context().span_id
            return span_id

    a_started, b_started = asyncio.Event(), asyncio.Event()
    a, b = await asyncio.gather(
        handle("a", b_started, a_started), handle("b", a_started, b_started)
    )
    assert {"a": a, "b": b} == {r.body: r.span_id for r in telemetry.records()}


def test_guards_in_many_threads_at_once_log_under_their_own_spans(
    telemetry: Telemetry,
) -> None:
    """Eight threads, each in its own span, with their guards open at once: every record
    carries the span of the thread that logged it."""
    threads = 8
    barrier = threading.Barrier(threads)
    spans: dict[str, int] = {}

    def work(name: str) -> None:
        with telemetry.tracer.start_as_current_span(name) as span:
            with errpolicy.guard("job", policy=RECORD_ALL):
                barrier.wait(timeout=30)  # every guard is open before anyone logs
                for _ in range(20):
                    log.warning(name)
            spans[name] = span.get_span_context().span_id

    workers = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    records = telemetry.records()
    assert 20 * threads == len(records)
    assert [] == [r.body for r in records if r.span_id != spans[r.body]]
