"""errpolicy.sentry with the real sentry-sdk and a recording transport (each test in a
fresh interpreter: sentry_sdk.init patches logging for the life of the process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytest.importorskip("sentry_sdk")

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, warnings
    import errpolicy
    import sentry_sdk
    from errpolicy.sentry import SentrySink
    from sentry_sdk.integrations.logging import ignore_logger, ignore_logger_for_sentry_logs
    from sentry_sdk.transport import Transport

    options = json.loads(sys.argv[1])
    sent = []

    class Recording(Transport):
        def capture_envelope(self, envelope):
            for item in envelope.items:
                payload = item.payload.json
                if item.type == "event":
                    values = (payload.get("exception") or {}).get("values") or []
                    sent.append({
                        "type": "event",
                        "exceptions": [v.get("type") for v in values],
                        "message": (payload.get("logentry") or {}).get("formatted"),
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
            enable_logs=options["logs"],
            auto_enabling_integrations=False,
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
    sentry_sdk.flush()
    print(json.dumps(sent))
    """
)


def run(
    scenario: str,
    *,
    logs: bool = True,
    order: str = "sentry-first",
    ignore: bool = False,
    with_stdlib_sink: bool = False,
) -> list[dict[str, Any]]:
    """What Sentry's transport was handed, in a fresh interpreter."""
    options = {
        "scenario": scenario,
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


def test_recorded_events_become_sentry_logs() -> None:
    """With logs enabled, a recorded event is one Sentry log, with the guard as attribute."""
    assert [{"type": "log", "body": "card declined", "level": "error", "guard": "cart"}] == run(
        "record"
    )


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


def test_the_default_sink_beside_sentry_reports_twice_without_ignore_logger() -> None:
    """Sentry's logging integration reports what the stdlib sink logs on "errpolicy":
    the same event twice (this is what the how-to's ignore_logger line prevents)."""
    sent = run("record", with_stdlib_sink=True)
    assert 2 <= len([s for s in sent if "card declined" in json.dumps(s)])


def test_ignore_logger_leaves_one_report() -> None:
    """With ignore_logger (and ignore_logger_for_sentry_logs) for "errpolicy", the event
    reaches Sentry once, as the sink's log."""
    sent = run("record", with_stdlib_sink=True, ignore=True)
    assert [{"type": "log", "body": "card declined", "level": "error", "guard": "cart"}] == sent


ORDERS = pytest.mark.parametrize("order", ["sentry-first", "errpolicy-first"])


def mentions(sent: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The items sent whose payload mentions ``text`` anywhere."""
    return [s for s in sent if text in json.dumps(s)]


@ORDERS
def test_a_suppressed_record_never_reaches_sentry(order: str) -> None:
    """A record a guard suppressed reaches Sentry 0 times, whichever was initialised first."""
    assert [] == run("suppress", order=order)


@ORDERS
def test_a_suppressed_record_is_no_breadcrumb_of_a_later_error(order: str) -> None:
    """With logs off, the suppressed record is not among the next error's breadcrumbs."""
    sent = run("suppress-then-raise", order=order, logs=False)
    [event] = sent
    assert (["PolicyViolation"], []) == (
        [e for e in event["exceptions"] if e == "PolicyViolation"],
        [b for b in event["breadcrumbs"] if b["category"] == "shop"],
    )


@ORDERS
def test_a_recorded_record_reaches_sentry_once_through_the_sink(order: str) -> None:
    """A record a guard recorded reaches Sentry once, as the sink's log, in either order."""
    assert [{"type": "log", "body": "card declined", "level": "error", "guard": "cart"}] == run(
        "record", order=order
    )


@ORDERS
@pytest.mark.parametrize("scenario", ["raise", "raise-immediately"])
def test_a_raised_record_reaches_sentry_once_as_the_violation(order: str, scenario: str) -> None:
    """A record a guard raised on reaches Sentry once, as the PolicyViolation, in either order."""
    sent = run(scenario, order=order)
    assert [("event", ["LoggedEvent", "PolicyViolation"])] == [
        (s["type"], sorted(set(s.get("exceptions", [])))) for s in mentions(sent, "gateway down")
    ]


def test_a_record_no_guard_takes_still_reaches_sentry_after_errpolicy() -> None:
    """Outside guards Sentry's integration reports records as without errpolicy."""
    sent = run("unguarded", order="errpolicy-first")
    assert [("event", "card declined"), ("log", None)] == [
        (s["type"], s.get("message")) for s in sent
    ]


def test_errpolicy_first_a_recorded_warning_still_goes_through_the_sink() -> None:
    """Sentry's logging integration never sees warnings: the sink sends them in that
    order too."""
    sent = run("record-warning", order="errpolicy-first")
    assert [{"type": "log", "body": "price list is old", "level": "warn", "guard": "cart"}] == sent
