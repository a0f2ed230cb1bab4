"""errpolicy's hooks chain with other libraries' hooks, installed before or after it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

import errpolicy
import pytest
from errpolicy import Policy, _hooks

RECORD_ALL = Policy(raise_on="NONE", record="ALL")


@pytest.fixture
def shop() -> Iterator[tuple[logging.Logger, list[str]]]:
    """A logger with a handler that keeps messages; recorded events go nowhere (the default
    sink is stdlib logging when structlog is missing, and would log through the wrappers)."""
    errpolicy.configure(sink=errpolicy.NullSink())
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    logger = logging.getLogger("t.chaining.shop")
    logger.propagate = False
    keep = Keep()
    logger.addHandler(keep)
    yield logger, kept
    logger.removeHandler(keep)


@pytest.fixture
def clean_call_handlers() -> Iterator[None]:
    """Logger.callHandlers and warnings.warn are as without errpolicy after the test,
    whatever wrappers it left, and errpolicy is installed again on top."""
    errpolicy.uninstall()
    call_handlers = logging.Logger.__dict__["callHandlers"]
    warn = warnings.warn
    yield
    errpolicy.uninstall()
    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]
    warnings.warn = warn
    _hooks._layers.clear()  # the test's wrappers, and any layer of ours under them, are gone
    _hooks._placed.clear()
    errpolicy.install()


def wrap_call_handlers(seen: list[str]) -> Any:
    """Wrap Logger.callHandlers the way Sentry does; returns the wrapper."""
    below = logging.Logger.callHandlers

    def wrapper(self: logging.Logger, record: logging.LogRecord) -> None:
        try:
            below(self, record)
        finally:
            seen.append(record.getMessage())

    logging.Logger.callHandlers = wrapper  # type: ignore[method-assign]
    return wrapper


def test_a_wrapper_installed_before_errpolicy_keeps_running(
    clean_call_handlers: None, shop: tuple[logging.Logger, list[str]]
) -> None:
    """A wrapper put in after import but before install is chained to, and comes back on
    uninstall."""
    logger, kept = shop
    errpolicy.uninstall()
    seen: list[str] = []
    wrapper = wrap_call_handlers(seen)
    errpolicy.install()
    logger.error("outside")
    with errpolicy.guard("t", policy=RECORD_ALL):
        logger.error("inside")
    errpolicy.uninstall()
    assert wrapper is logging.Logger.callHandlers
    assert (["outside"], ["outside"]) == (seen, kept)


def test_a_wrapper_installed_after_errpolicy_survives_uninstall(
    clean_call_handlers: None, shop: tuple[logging.Logger, list[str]]
) -> None:
    """errpolicy's layer under another wrapper becomes a pass-through on uninstall, and the
    next install switches the same layer back on."""
    logger, kept = shop
    errpolicy.install()
    layer = logging.Logger.__dict__["callHandlers"]
    seen: list[str] = []
    wrapper = wrap_call_handlers(seen)
    errpolicy.uninstall()
    assert wrapper is logging.Logger.callHandlers
    with errpolicy.guard("t", policy=RECORD_ALL) as report:  # reinstalls
        logger.error("inside")
    assert layer is _hooks._layers["callHandlers"]
    assert wrapper is logging.Logger.callHandlers
    assert ["inside"] == [e.message for e in report.events]
    errpolicy.uninstall()
    with errpolicy.guard("t", policy=RECORD_ALL):
        pass
    errpolicy.uninstall()
    logger.error("after")
    assert (["inside", "after"], ["after"]) == (seen, kept)


def test_warnings_hook_wraps_what_is_there_at_install(clean_call_handlers: None) -> None:
    """A warnings.warn replaced before install is called by errpolicy's hook outside guards."""
    errpolicy.uninstall()
    calls: list[object] = []
    below = warnings.warn

    def counting_warn(*args: Any, **kwargs: Any) -> None:
        calls.append(args[0])
        below(*args, **kwargs)

    warnings.warn = counting_warn
    errpolicy.install()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        warnings.warn("counted", UserWarning)
    errpolicy.uninstall()
    assert counting_warn is warnings.warn
    assert ["counted"] == calls


SENTRY_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import errpolicy
    import sentry_sdk
    from sentry_sdk.transport import Transport

    events = []

    class Recording(Transport):
        def capture_envelope(self, envelope):
            for item in envelope.items:
                if item.type == "event":
                    events.append(item.payload.json["logentry"]["formatted"])

    def start_sentry():
        sentry_sdk.init(
            dsn="https://public@sentry.invalid/1",
            transport=Recording,
            auto_enabling_integrations=False,
        )

    if sys.argv[1] == "errpolicy-first":
        errpolicy.configure(sink=errpolicy.NullSink())
        start_sentry()
    else:
        start_sentry()
        errpolicy.configure(sink=errpolicy.NullSink())
    log = logging.getLogger("shop")
    log.error("outside")
    with errpolicy.guard("g", policy=errpolicy.Policy(raise_on="NONE", record="NONE")):
        log.error("suppressed")
    errpolicy.configure(sink=errpolicy.ReplaySink())
    with errpolicy.guard("g", policy=errpolicy.Policy(raise_on="NONE", record="ALL")):
        log.error("replayed")
    errpolicy.uninstall()
    log.error("after uninstall")
    sentry_sdk.flush()
    print(json.dumps(events))
    """
)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # Sentry's patch on top of errpolicy's: Sentry sees every record, taken or not.
        ("errpolicy-first", ["outside", "suppressed", "replayed", "after uninstall"]),
        # errpolicy's on top of Sentry's: Sentry sees what the handlers see.
        ("sentry-first", ["outside", "replayed", "after uninstall"]),
    ],
)
def test_sentry_logging_integration_in_both_orders(order: str, expected: list[str]) -> None:
    """Sentry's callHandlers patch and errpolicy's chain either way (recording transport)."""
    pytest.importorskip("sentry_sdk")
    result = subprocess.run(
        [sys.executable, "-c", SENTRY_SCRIPT, order], capture_output=True, text=True, check=False
    )
    assert 0 == result.returncode, result.stderr[-2000:]
    assert expected == json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("order", ["handler-first", "errpolicy-first"])
def test_opentelemetry_logging_handler_in_both_orders(order: str) -> None:
    """OpenTelemetry's LoggingHandler gets the records no guard takes, with the caller's
    code location, whichever was set up first."""
    pytest.importorskip("opentelemetry.sdk._logs")
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import (
        InMemoryLogRecordExporter,
        SimpleLogRecordProcessor,
    )

    logger = logging.getLogger(f"t.chaining.otel.{order}")
    logger.propagate = False
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    if order == "errpolicy-first":
        errpolicy.uninstall()
        errpolicy.install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # LoggingHandler's new home
        handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    if order == "handler-first":
        errpolicy.uninstall()
        errpolicy.install()
    errpolicy.configure(sink=errpolicy.NullSink())
    try:
        logger.error("outside")
        line = sys._getframe().f_lineno - 1
        with errpolicy.guard("t", policy=RECORD_ALL) as report:
            logger.error("taken")
        errpolicy.configure(sink=errpolicy.ReplaySink())
        with errpolicy.guard("t", policy=RECORD_ALL):
            logger.error("replayed")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    exported = [data.log_record for data in exporter.get_finished_logs()]
    assert ["outside", "replayed"] == [r.body for r in exported]
    assert ["taken"] == [e.message for e in report.events]
    attributes = dict(exported[0].attributes or {})
    location = {k: v for k, v in attributes.items() if k.startswith("code.")}
    assert __file__ in location.values()
    assert line in location.values()


def test_threads_opening_their_first_guard_at_once_install_one_layer() -> None:
    """Sixteen threads entering their first guard together wrap each target exactly once."""
    import _warnings

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch inside install() as often as they can
    try:
        race_first_guards()
    finally:
        sys.setswitchinterval(interval)
    errpolicy.uninstall()
    assert _warnings.warn is warnings.warn
    errpolicy.install()


def race_first_guards() -> None:
    """Twenty rounds of sixteen threads entering their first guard together."""
    import _warnings
    import threading

    for _ in range(20):
        errpolicy.uninstall()
        start = threading.Barrier(16)

        def first_guard(start: threading.Barrier = start) -> None:
            start.wait()
            with errpolicy.guard("t"):
                pass

        threads = [threading.Thread(target=first_guard) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _warnings.warn is _hooks.below("warn")
        assert _hooks._placed["warn"] is warnings.warn
