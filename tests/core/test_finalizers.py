"""Finalizers the garbage collector runs are not the guarded call's.

The collector runs ``__del__`` of whatever cyclic garbage it finds, in whichever
thread happened to trigger it: a transport another test leaked warns "unclosed
transport" (ResourceWarning), a task destroyed while pending logs an ERROR. Such
an event goes on as without errpolicy; a guard open in that thread neither keeps
it nor raises for it. A finalizer that the call's own reference drop runs is the
call's, and a guard the finalizer opens itself sees its own events.
"""

from __future__ import annotations

import gc
import logging
import threading
import warnings
from collections.abc import Iterator

import errpolicy
import pytest
from errpolicy import Policy

from .conftest import ListHandler

RAISE_ALL = Policy(raise_on="ALL")
RECORD_ALL = Policy(raise_on="NONE", record="ALL")


class _Leaked:
    """Freed only by the collector (it refers to itself); its finalizer warns and logs,
    as an unclosed asyncio transport and a pending task do."""

    def __init__(self, logger: logging.Logger) -> None:
        self.me = self
        self.logger = logger

    def __del__(self) -> None:
        warnings.warn("unclosed leaked resource", ResourceWarning, stacklevel=1)
        self.logger.error("Task was destroyed but it is pending!")


class _Dropped:
    """Freed by its last reference going (no cycle): the finalizer runs right there."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def __del__(self) -> None:
        self.logger.error("dropped by the call")


def _leak(logger: logging.Logger) -> None:
    _Leaked(logger)  # now unreachable garbage, waiting for the collector


@pytest.fixture
def quiet_collector() -> Iterator[None]:
    """No collection but the test's own: garbage left by earlier tests is gone first."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.usefixtures("quiet_collector")
def test_a_finalizer_the_collector_runs_in_a_guard_is_not_the_guards(
    handler: ListHandler,
) -> None:
    errpolicy.configure(sink=errpolicy.NullSink())
    _leak(handler.logger)  # type: ignore[attr-defined]
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with errpolicy.guard("t.gc", policy=RAISE_ALL) as report:
            assert gc.collect() > 0
    assert report.events == ()  # and no PolicyViolation at the exit
    # The filters see it as without errpolicy (other threads' warnings may be there too:
    # catch_warnings is process-wide without context-aware warnings).
    assert [str(w.message) for w in shown].count("unclosed leaked resource") == 1
    assert [r.getMessage() for r in handler.records] == ["Task was destroyed but it is pending!"]


@pytest.mark.usefixtures("quiet_collector")
def test_a_collection_the_guarded_call_triggers_by_allocating_is_not_the_guards(
    handler: ListHandler,
) -> None:
    """The collector started by an allocation, as it usually is, not by gc.collect()."""
    errpolicy.configure(sink=errpolicy.NullSink())
    _leak(handler.logger)  # type: ignore[attr-defined]
    thresholds = gc.get_threshold()
    gc.set_threshold(1)
    try:
        with errpolicy.guard("t.gc", policy=RAISE_ALL) as report:
            gc.enable()  # here: the next allocations start a collection
            kept = []
            for _ in range(100_000):  # bounded: a collection comes within a few allocations
                kept.append([])
                if handler.records:
                    break
    finally:
        gc.disable()
        gc.set_threshold(*thresholds)
    assert [r.getMessage() for r in handler.records] == ["Task was destroyed but it is pending!"]
    assert report.events == ()


def test_a_finalizer_the_calls_own_reference_drop_runs_is_the_guards(
    handler: ListHandler,
) -> None:
    errpolicy.configure(sink=errpolicy.NullSink())
    with errpolicy.guard("t.gc", policy=RECORD_ALL) as report:
        dropped = _Dropped(handler.logger)  # type: ignore[attr-defined]
        del dropped
    assert [e.message for e in report.events] == ["dropped by the call"]
    assert handler.records == []


@pytest.mark.usefixtures("quiet_collector")
def test_a_guard_a_finalizer_opens_sees_the_finalizers_events(handler: ListHandler) -> None:
    errpolicy.configure(sink=errpolicy.NullSink())
    inner: list[tuple[str, ...]] = []
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]

    class Guarded:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            with errpolicy.guard("t.finalizer", policy=RECORD_ALL) as own:
                logger.error("closing in the finalizer")
            inner.append(tuple(e.message for e in own.events))

    Guarded()
    with errpolicy.guard("t.outer", policy=RECORD_ALL) as outer:
        gc.collect()
        logger.error("after the collection")
    assert inner == [("closing in the finalizer",)]
    assert [e.message for e in outer.events] == ["after the collection"]
    assert handler.records == []


@pytest.mark.usefixtures("quiet_collector")
def test_other_threads_guards_are_untouched_by_a_collection(handler: ListHandler) -> None:
    """The collection hides the guards of the thread it runs in, no other's."""
    errpolicy.configure(sink=errpolicy.NullSink())
    logger: logging.Logger = handler.logger  # type: ignore[attr-defined]
    opened, collected = threading.Event(), threading.Event()
    seen: list[tuple[str, ...]] = []

    def other() -> None:
        with errpolicy.guard("t.other", policy=RECORD_ALL) as report:
            opened.set()
            collected.wait(10)
            logger.error("in the other thread")
        seen.append(tuple(e.message for e in report.events))

    thread = threading.Thread(target=other)
    thread.start()
    assert opened.wait(10)
    _leak(logger)
    with errpolicy.guard("t.here", policy=RECORD_ALL) as here:
        gc.collect()
    collected.set()
    thread.join(10)
    assert seen == [("in the other thread",)]
    assert here.events == ()


def test_the_collector_callback_is_there_once_while_installed() -> None:
    from errpolicy import _hooks

    with errpolicy.guard("t.gc"):
        pass
    assert gc.callbacks.count(_hooks.collecting) == 1
    errpolicy.install()
    with errpolicy.guard("t.gc"):
        pass
    assert gc.callbacks.count(_hooks.collecting) == 1
    errpolicy.uninstall()
    try:
        assert _hooks.collecting not in gc.callbacks
    finally:
        errpolicy.install()
    with errpolicy.guard("t.gc"):  # the first guard after install puts it back
        pass
    assert gc.callbacks.count(_hooks.collecting) == 1


def test_a_collection_outside_every_guard_leaves_the_context_alone() -> None:
    from errpolicy import _hooks, _state

    with errpolicy.guard("t.gc"):
        pass
    before = _state.active.get()
    _hooks.collecting("start", {})
    _hooks.collecting("stop", {})
    assert _state.active.get() is before
    _hooks.collecting("stop", {})  # a stop whose start came before the callback was there
    assert _state.active.get() is before
