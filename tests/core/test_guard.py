"""The guard: deferred and immediate raising, notes, nesting, decorator and async forms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import warnings

import errpolicy
import pytest
from errpolicy import Action, Policy, PolicyViolation, Severity

from .conftest import ListSink

# Configuring and guarding leak no warning or log record of their own: errpolicy's
# pytest plugin fails any test here that raises one outside its guards.
pytestmark = pytest.mark.errpolicy

log = logging.getLogger("t.guard")
log.setLevel(logging.INFO)
RECORD_ALL = Policy(raise_on="NONE", record="ALL")


def test_deferred_raise_lets_the_call_finish() -> None:
    """By default the block runs to its end, then every raise-event is raised at once."""
    finished = []
    with pytest.raises(PolicyViolation) as info, errpolicy.guard("t"):
        log.error("first")
        log.error("second")
        finished.append(True)
    assert [True] == finished
    assert ["first", "second"] == [e.event.message for e in info.value.exceptions]  # type: ignore[attr-defined]


def test_violation_is_an_exception_group_for_except_star() -> None:
    """except* RuntimeWarning catches the warning part of the violation."""
    caught: list[BaseException] = []
    try:
        with errpolicy.guard("t", policy=Policy(raise_on="WARNING")):
            warnings.warn("bad", RuntimeWarning)
    except* RuntimeWarning as group:
        caught.extend(group.exceptions)
    assert ["bad"] == [str(e) for e in caught]


def test_violation_carries_the_report() -> None:
    """PolicyViolation.report is the guard's report, also after an except* split."""
    policy = Policy(raise_on="WARNING | ERROR")
    with pytest.raises(PolicyViolation) as info, errpolicy.guard("named", policy=policy) as report:
        log.error("x")
        warnings.warn("y", RuntimeWarning)
    assert report is info.value.report
    assert isinstance(info.value, ExceptionGroup)
    match, rest = info.value.split(RuntimeWarning)
    assert isinstance(match, PolicyViolation)
    assert report is match.report
    assert isinstance(rest, PolicyViolation)


def test_immediate_mode_raises_at_the_first_event() -> None:
    """With immediate=True the violation leaves the block at the offending call."""
    reached = []
    with (
        pytest.raises(PolicyViolation),
        errpolicy.guard("t", policy=Policy(raise_on="ERROR", immediate=True)),
    ):
        log.error("stop here")
        reached.append(True)
    assert [] == reached


def test_immediate_violation_swallowed_inside_is_raised_at_exit() -> None:
    """If code inside the block swallows the immediate violation, the guard raises it at exit."""
    with (
        pytest.raises(PolicyViolation) as info,
        errpolicy.guard("t", policy=Policy(raise_on="ERROR", immediate=True)),
        contextlib.suppress(PolicyViolation),  # as library code that catches too much would
    ):
        log.error("swallowed")
    assert 1 == len(info.value.exceptions)


def test_block_exception_propagates_with_events_as_notes() -> None:
    """When the block raised, its exception propagates with every captured event as a note."""
    with pytest.raises(KeyError) as info, errpolicy.guard("t"):
        log.error("logged before the crash")
        warnings.warn("also this", UserWarning)
        raise KeyError("crash")
    notes = info.value.__notes__
    assert 2 == len(notes)
    assert "logged before the crash" in notes[0]
    assert "also this" in notes[1]


def test_recorded_and_suppressed_are_kept_on_the_report(sink: ListSink) -> None:
    """Recorded events go to report.recorded and the sink; suppressed ones are only counted."""
    policy = Policy(raise_on="ERROR", record="NOTICE")
    with errpolicy.guard("t", policy=policy) as report:
        log.log(errpolicy.NOTICE, "kept")
        log.info("dropped")
    assert ["kept"] == [e.message for e in report.recorded]
    assert ["dropped"] == [e.message for e in report.suppressed]
    assert ["kept"] == [e.message for e in sink.events]
    assert {(Action.RECORD, Severity.NOTICE): 1, (Action.SUPPRESS, Severity.INFO): 1} == dict(
        report.counts
    )


def test_explain_names_classifier_and_mask() -> None:
    """report.explain says which classifier and which mask decided."""
    policy = Policy(raise_on="ERROR", record="NOTICE")
    rule = errpolicy.match.rule("NOTICE", logger="t.guard", level="DEBUG")
    errpolicy.configure(classifiers=[rule], sink=errpolicy.NullSink())
    log.setLevel(logging.DEBUG)
    try:
        with errpolicy.guard("t", policy=policy) as report:
            log.debug("upgraded")
            log.info("plain")
    finally:
        log.setLevel(logging.INFO)
    upgraded, plain = (report.explain(e) for e in report.events)
    assert (repr(rule), "record", Severity.NOTICE) == (
        upgraded.classified_by,
        upgraded.mask_name,
        upgraded.severity,
    )
    assert (
        plain.classified_by,
        plain.mask_name,
        plain.action,
    ) == ("default", None, Action.SUPPRESS)
    assert "so: record" in str(upgraded)


def test_explain_refuses_foreign_events() -> None:
    """Explaining an event of another guard is a ValueError."""
    with errpolicy.guard("a", policy=RECORD_ALL) as a:
        log.warning("x")
    with errpolicy.guard("b", policy=RECORD_ALL) as b:
        pass
    with pytest.raises(ValueError, match="not decided by guard 'b'"):
        b.explain(a.events[0])


def test_inner_guard_decides_and_outer_sees_only_what_escapes(sink: ListSink) -> None:
    """Nested guards: the inner one decides; the outer sees only the inner violation."""
    with (
        pytest.raises(PolicyViolation) as info,
        errpolicy.guard("outer", policy=RECORD_ALL) as outer,
    ):
        with errpolicy.guard("inner", policy=Policy(raise_on="ERROR", record="ALL")) as inner:
            log.warning("recorded by inner")
            log.error("raised by inner")
        log.warning("after inner")
    assert ["recorded by inner", "raised by inner"] == [e.message for e in inner.events]
    assert [] == [e.message for e in outer.events if "inner" in e.message]
    assert inner is info.value.report
    # The inner violation escaped through the outer block: the outer's events are notes on it.
    assert () == outer.events
    assert ["recorded by inner"] == [e.message for e in sink.events]


def test_scope_lets_other_events_reach_the_outer_guard() -> None:
    """An event outside the inner policy's scope is decided by the enclosing guard."""
    scoped = Policy(raise_on="ERROR", scope=errpolicy.match.logger("mine"))
    with (
        errpolicy.guard("outer", policy=RECORD_ALL) as outer,
        errpolicy.guard("inner", policy=scoped) as inner,
    ):
        logging.getLogger("mine").warning("inner's")
        logging.getLogger("theirs").error("outer's")
    assert ["inner's"] == [e.message for e in inner.events]
    assert ["outer's"] == [e.message for e in outer.events]


def test_sink_output_is_not_captured_by_the_outer_guard() -> None:
    """What a sink logs when the inner guard closes never reaches the outer guard."""
    errpolicy.configure(sink=errpolicy.StdlibSink("errpolicy.test"))
    with (
        errpolicy.guard("outer", policy=RECORD_ALL) as outer,
        errpolicy.guard("inner", policy=RECORD_ALL),
    ):
        log.warning("recorded")
    assert () == outer.events


def test_one_guard_object_nests_in_itself_with_separate_reports() -> None:
    """A Guard is stateless: entering it again while open opens a second, inner guard."""
    g = errpolicy.guard("t", policy=RECORD_ALL)
    with g as outer:
        log.warning("outer's")
        with g as inner:
            log.warning("inner's")
    assert (["outer's"], ["inner's"]) == (
        [e.message for e in outer.events],
        [e.message for e in inner.events],
    )


def test_plain_guards_are_shared_per_name() -> None:
    """guard(name) without policies hands out one shared object per name."""
    assert errpolicy.guard("shared") is errpolicy.guard("shared")
    assert errpolicy.guard("shared") is not errpolicy.guard("shared", policy=RECORD_ALL)


def test_one_guard_object_is_shared_by_threads() -> None:
    """One Guard used by many threads at once gives each entry its own report."""
    g = errpolicy.guard("shared.threads", policy=RECORD_ALL)
    results: dict[int, list[str]] = {}

    def work(n: int) -> None:
        for _ in range(200):
            with g as report:
                log.warning("%d", n)
            results.setdefault(n, []).extend(e.message for e in report.events)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {n: [str(n)] * 200 for n in range(4)} == results


def test_exit_out_of_order_is_refused() -> None:
    """Exiting a guard that is not the innermost open one is a RuntimeError."""
    a, b = errpolicy.guard("a"), errpolicy.guard("b")
    a.__enter__()
    b.__enter__()
    with pytest.raises(RuntimeError, match="not the innermost"):
        a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    a.__exit__(None, None, None)


def test_decorator_opens_a_fresh_guard_per_call() -> None:
    """@guard works on functions and opens one guard per call."""

    @errpolicy.guard("deco")
    def work(fail: bool) -> str:
        if fail:
            log.error("failed")
        return "done"

    assert "done" == work(False)
    with pytest.raises(PolicyViolation) as info:
        work(True)
    assert "deco" == info.value.report.name
    assert "done" == work(False)


async def test_async_with_and_async_decorator() -> None:
    """async with and @guard on a coroutine function capture across awaits."""

    @errpolicy.guard("co", policy=RECORD_ALL)
    async def work() -> int:
        await asyncio.sleep(0)
        log.warning("after await")
        return 7

    assert 7 == await work()
    async with errpolicy.guard("t", policy=RECORD_ALL) as report:
        await asyncio.sleep(0)
        log.warning("inside async with")
    assert ["inside async with"] == [e.message for e in report.events]


def test_named_policy_default_and_override() -> None:
    """Configured policy wins over default=; policy= wins over both."""
    errpolicy.configure(policies={"configured": Policy(raise_on="NONE", record="NONE")})
    with errpolicy.guard("configured", default=RECORD_ALL) as a:
        log.warning("x")
    with errpolicy.guard("unconfigured", default=RECORD_ALL) as b:
        log.warning("x")
    with errpolicy.guard("configured", policy=RECORD_ALL) as c:
        log.warning("x")
    assert (
        a.events[0].action,
        b.events[0].action,
        c.events[0].action,
    ) == (Action.SUPPRESS, Action.RECORD, Action.RECORD)


def test_bad_guard_arguments_are_configuration_errors() -> None:
    """An empty name or a non-Policy policy fail at once."""
    with pytest.raises(errpolicy.ConfigurationError):
        errpolicy.guard("")
    with pytest.raises(errpolicy.ConfigurationError, match="policy"):
        errpolicy.guard("x", policy="ALL")  # type: ignore[arg-type]


def test_event_fields() -> None:
    """An event carries source, logger, level, location, thread, time and the original."""
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        log.warning("fields")
    (e,) = report.events
    assert (
        e.source,
        e.logger,
        e.level,
        e.guard,
        e.thread,
    ) == ("logging", "t.guard", logging.WARNING, "t", "MainThread")
    assert isinstance(e.original, logging.LogRecord)
    assert e.filename.endswith("test_guard.py")
    assert e.time > 0
    assert "fields" == e.as_dict()["message"]


def test_events_name_their_asyncio_task_and_none_outside_one() -> None:
    """``event.task`` is the running task's name, for warnings and log records alike,
    and None outside a loop (asyncio imported, no loop running)."""

    async def work() -> errpolicy.Report:
        with errpolicy.guard("t.task", policy=RECORD_ALL) as report:
            warnings.warn("in a task", UserWarning, stacklevel=1)
            log.warning("in a task")
        return report

    async def main() -> errpolicy.Report:
        return await asyncio.create_task(work(), name="checkout-17")

    report = asyncio.run(main())
    assert [("warning", "checkout-17"), ("logging", "checkout-17")] == [
        (e.source, e.task) for e in report.events
    ]
    with errpolicy.guard("t.task", policy=RECORD_ALL) as outside:
        warnings.warn("no loop", UserWarning, stacklevel=1)
        log.warning("no loop")
    assert [None, None] == [e.task for e in outside.events]
    assert threading.current_thread().name == outside.events[0].thread


def test_reconfiguring_applies_to_guard_objects_already_used() -> None:
    """A guard object kept as a constant follows a later configure()."""
    g = errpolicy.guard("kept.constant")
    with g as before:
        log.warning("x")
    errpolicy.configure(policies={"kept.constant": Policy(raise_on="NONE", record="NONE")})
    with g as after:
        log.warning("x")
    assert (Action.RECORD, Action.SUPPRESS) == (before.events[0].action, after.events[0].action)
