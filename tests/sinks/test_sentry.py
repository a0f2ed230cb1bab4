"""errpolicy.sentry with the real sentry-sdk and a recording transport (each test in a
fresh interpreter: sentry_sdk.init patches logging for the life of the process)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytest.importorskip("sentry_sdk")

# Sentry logs came in sentry-sdk 2.x; on older releases (make test-floors runs 2.0) the
# sink sends breadcrumbs, and the tests of logs are skipped.
SDK_HAS_LOGS = importlib.util.find_spec("sentry_sdk.logger") is not None
NEEDS_LOGS = pytest.mark.skipif(not SDK_HAS_LOGS, reason="this sentry-sdk has no Sentry logs")

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, warnings
    import errpolicy
    import sentry_sdk
    from errpolicy.sentry import SentrySink
    from sentry_sdk.integrations.logging import ignore_logger
    try:
        from sentry_sdk.integrations.logging import ignore_logger_for_sentry_logs
    except ImportError:  # an SDK without Sentry logs
        ignore_logger_for_sentry_logs = ignore_logger
    from sentry_sdk.transport import Transport

    options = json.loads(sys.argv[1])
    sent = []

    class Recording(Transport):
        def capture_envelope(self, envelope):
            for item in envelope.items:
                payload = item.payload.json
                if item.type == "event":
                    values = (payload.get("exception") or {}).get("values") or []
                    entry = payload.get("logentry") or {}  # sentry-sdk 2.0 has no "formatted"
                    sent.append({
                        "type": "event",
                        "exceptions": [v.get("type") for v in values],
                        "message": entry.get("formatted") or entry.get("message"),
                        "tags": payload.get("tags") or {},
                        "context": (payload.get("contexts") or {}).get("errpolicy"),
                        "breadcrumbs": [
                            {"message": b.get("message"), "level": b.get("level"),
                             "category": b.get("category"),
                             "guard": (b.get("data") or {}).get("errpolicy.guard")}
                            for b in (payload.get("breadcrumbs") or {}).get("values", [])
                        ],
                    })
                elif item.type == "log":
                    for log in payload["items"]:
                        sent.append({
                            "type": "log",
                            "body": log["body"],
                            "level": log["level"],
                            "guard": log["attributes"].get("errpolicy.guard", {}).get("value"),
                        })

    def start_sentry():
        sentry_sdk.init(
            dsn="https://public@sentry.invalid/1",
            transport=Recording,
            auto_enabling_integrations=False,
            **({"enable_logs": True} if options["logs"] else {}),
        )
        if options["ignore"]:
            ignore_logger("errpolicy")
            ignore_logger_for_sentry_logs("errpolicy")

    sink = SentrySink()
    if options["with_stdlib_sink"]:
        sink = errpolicy.Sinks(errpolicy.StdlibSink(), sink)
    if options["order"] == "errpolicy-first":
        errpolicy.configure(sink=sink)
        start_sentry()
    else:
        start_sentry()
        errpolicy.configure(sink=sink)
    log = logging.getLogger("shop")
    if options["scenario"] == "suppress":
        with errpolicy.guard("quiet", policy=errpolicy.Policy(raise_on="NONE", record="NONE")):
            log.error("card declined")
    elif options["scenario"] == "suppress-then-raise":
        with errpolicy.guard("quiet", policy=errpolicy.Policy(raise_on="NONE", record="NONE")):
            log.error("card declined")
        try:
            with errpolicy.guard("pay", policy=errpolicy.Policy(raise_on="ERROR")):
                log.error("gateway down")
        except errpolicy.PolicyViolation:
            pass
    elif options["scenario"] == "raise-immediately":
        try:
            with errpolicy.guard(
                "pay", policy=errpolicy.Policy(raise_on="ERROR", immediate=True)
            ):
                log.error("gateway down")
        except errpolicy.PolicyViolation:
            pass
    elif options["scenario"] == "unguarded":
        log.error("card declined")
    elif options["scenario"] == "record":
        with errpolicy.guard("cart", policy=errpolicy.Policy(raise_on="NONE", record="ALL")):
            log.error("card declined")
    elif options["scenario"] == "record-warning":
        with errpolicy.guard("cart", policy=errpolicy.Policy(raise_on="NONE", record="ALL")):
            warnings.warn("price list is old", UserWarning)
    elif options["scenario"] == "raise":
        try:
            with errpolicy.guard("pay", policy=errpolicy.Policy(raise_on="ERROR", record="ALL")):
                log.warning("slow gateway")
                log.error("gateway down")
        except errpolicy.PolicyViolation:
            pass
    elif options["scenario"] == "unhandled":
        # The violation is captured by the sink and raised on; a handler that reports
        # it again (as a framework integration does) must not make a second event.
        try:
            with errpolicy.guard("pay", policy=errpolicy.Policy(raise_on="ERROR")):
                log.error("gateway down")
        except errpolicy.PolicyViolation as violation:
            sentry_sdk.capture_exception(violation)
    if options["closing"]:  # an error that carries the breadcrumbs left in the scope
        sentry_sdk.capture_message("closing")
    sentry_sdk.flush()
    print(json.dumps(sent))
    """
)


def run(
    scenario: str,
    *,
    logs: bool = SDK_HAS_LOGS,
    order: str = "sentry-first",
    ignore: bool = False,
    with_stdlib_sink: bool = False,
    closing: bool = False,
) -> list[dict[str, Any]]:
    """What Sentry's transport was handed, in a fresh interpreter."""
    options = {
        "scenario": scenario,
        "closing": closing,
        "logs": logs,
        "order": order,
        "ignore": ignore,
        "with_stdlib_sink": with_stdlib_sink,
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(options)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == result.returncode, result.stderr[-2000:]
    sent: list[dict[str, Any]] = json.loads(result.stdout.splitlines()[-1])
    return sent


@NEEDS_LOGS
def test_recorded_events_become_sentry_logs() -> None:
    """With logs enabled, a recorded event is one Sentry log, with the guard as attribute."""
    assert [{"type": "log", "body": "card declined", "level": "error", "guard": "cart"}] == run(
        "record"
    )


@NEEDS_LOGS
def test_a_violation_is_one_error_event_tagged_with_the_guard() -> None:
    """The PolicyViolation group reaches Sentry once, with the guard's tag and context."""
    sent = run("raise")
    events = [s for s in sent if s["type"] == "event"]
    logs = [(s["body"], s["level"]) for s in sent if s["type"] == "log"]
    [event] = events
    assert ["LoggedEvent", "PolicyViolation"] == sorted(set(event["exceptions"]))
    assert ("pay", ["ERROR raise logging shop: gateway down"]) == (
        event["tags"].get("errpolicy.guard"),
        event["context"]["events"],
    )
    assert [("slow gateway", "warn")] == logs


def test_without_logs_recorded_events_are_breadcrumbs_of_the_violation() -> None:
    """With logs off, recorded events travel as breadcrumbs on the next error."""
    sent = run("raise", logs=False)
    [event] = sent
    assert [
        {"message": "slow gateway", "level": "warning", "category": "shop", "guard": "pay"}
    ] == [b for b in event["breadcrumbs"] if b["category"] == "shop"]


def test_a_violation_reported_again_is_not_a_second_event() -> None:
    """capture_exception of the same violation after the sink did is deduplicated."""
    assert 1 == len([s for s in run("unhandled") if s["type"] == "event"])


@NEEDS_LOGS
def test_the_default_sink_beside_sentry_reports_twice_without_ignore_logger() -> None:
    """Sentry's logging integration reports what the stdlib sink logs on "errpolicy":
    the same event twice (this is what the how-to's ignore_logger line prevents)."""
    sent = run("record", with_stdlib_sink=True)
    assert 2 <= len([s for s in sent if "card declined" in json.dumps(s)])


@NEEDS_LOGS
def test_ignore_logger_leaves_one_report() -> None:
    """With ignore_logger (and ignore_logger_for_sentry_logs) for "errpolicy", the event
    reaches Sentry once, as the sink's log."""
    sent = run("record", with_stdlib_sink=True, ignore=True)
    assert [{"type": "log", "body": "card declined", "level": "error", "guard": "cart"}] == sent


ORDERS = pytest.mark.parametrize("order", ["sentry-first", "errpolicy-first"])
LOGS = pytest.mark.parametrize(
    "logs", [pytest.param(True, marks=NEEDS_LOGS, id="logs"), pytest.param(False, id="breadcrumbs")]
)


def reports(sent: list[dict[str, Any]], message: str) -> list[tuple[str, str | None]]:
    """Each report of ``message`` among the items sent: (what, its errpolicy guard)."""
    found: list[tuple[str, str | None]] = []
    for item in sent:
        if item["type"] == "log" and message == item["body"]:
            found.append(("log", item["guard"]))
            continue
        if item["type"] != "event":
            continue
        if message == item["message"]:
            found.append(("event", None))
        raised = (item["context"] or {}).get("events", [])
        if any(message in described for described in raised):
            found.append(("violation", item["tags"].get("errpolicy.guard")))
        found.extend(
            ("breadcrumb", b["guard"]) for b in item["breadcrumbs"] if message == b["message"]
        )
    return found


@ORDERS
@LOGS
def test_a_suppressed_record_never_reaches_sentry(order: str, logs: bool) -> None:
    """A record a guard suppressed reaches Sentry 0 times, whichever was initialised first."""
    assert [] == reports(run("suppress", order=order, logs=logs, closing=True), "card declined")


@ORDERS
@LOGS
def test_a_recorded_record_reaches_sentry_once_through_the_sink(order: str, logs: bool) -> None:
    """A record a guard recorded reaches Sentry once, as the sink's log (or breadcrumb)."""
    sent = run("record", order=order, logs=logs, closing=True)
    assert [("log" if logs else "breadcrumb", "cart")] == reports(sent, "card declined")


@ORDERS
@LOGS
@pytest.mark.parametrize("scenario", ["raise", "raise-immediately"])
def test_a_raised_record_reaches_sentry_once_as_the_violation(
    order: str, logs: bool, scenario: str
) -> None:
    """A record a guard raised on reaches Sentry once, as the PolicyViolation, in either order."""
    sent = run(scenario, order=order, logs=logs, closing=True)
    assert [("violation", "pay")] == reports(sent, "gateway down")


@ORDERS
def test_a_suppressed_record_is_no_breadcrumb_of_a_later_violation(order: str) -> None:
    """With logs off, a suppressed record is not among the next violation's breadcrumbs."""
    sent = run("suppress-then-raise", order=order, logs=False)
    assert ([("violation", "pay")], []) == (
        reports(sent, "gateway down"),
        reports(sent, "card declined"),
    )


def test_a_record_no_guard_takes_still_reaches_sentry_after_errpolicy() -> None:
    """Outside guards Sentry's integration reports records as without errpolicy."""
    sent = run("unguarded", order="errpolicy-first", logs=False, closing=True)
    assert [("event", None), ("breadcrumb", None)] == reports(sent, "card declined")


@NEEDS_LOGS
def test_errpolicy_first_a_recorded_warning_still_goes_through_the_sink() -> None:
    """Sentry's logging integration never sees warnings: the sink sends them in that
    order too."""
    sent = run("record-warning", order="errpolicy-first")
    assert [{"type": "log", "body": "price list is old", "level": "warn", "guard": "cart"}] == sent
