"""The capture path never raises into the code that warned or logged."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
import warnings

import errpolicy
import pytest
from errpolicy import Policy

RECORD_ALL = Policy(raise_on="NONE", record="ALL")
log = logging.getLogger("t.never_raises")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(logging.NullHandler())


def half_imported_asyncio() -> types.ModuleType:
    """What another thread's ``import asyncio`` leaves in sys.modules halfway through."""
    module = types.ModuleType("asyncio")
    module.__spec__ = None
    return module


def test_half_imported_asyncio_does_not_break_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a partly initialised asyncio in sys.modules, warning and logging inside a guard
    still work, and the events have no task."""
    monkeypatch.setitem(sys.modules, "asyncio", half_imported_asyncio())
    errpolicy.configure(sink=errpolicy.NullSink())
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        warnings.warn("w", UserWarning)
        log.warning("l")
    assert [("w", None), ("l", None)] == [(e.message, e.task) for e in report.events]


def test_a_failing_scope_lets_the_event_go_on(caplog: pytest.LogCaptureFixture) -> None:
    """If routing an event fails (here a scope matcher raises), the event goes where it
    would have gone without errpolicy, and the caller sees no exception."""

    def broken_scope(event: errpolicy.Event) -> bool:
        raise RuntimeError("scope matcher bug")

    shop = logging.getLogger("t.never_raises.shop")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with (
            caplog.at_level(logging.WARNING, logger="t.never_raises.shop"),
            errpolicy.guard("t", policy=Policy(raise_on="NONE", scope=broken_scope)) as report,
        ):
            warnings.warn("still shown", UserWarning)
            shop.warning("still logged")
    assert ["still shown"] == [str(w.message) for w in seen]
    assert ["still logged"] == [r.getMessage() for r in caplog.records]
    assert () == report.events


def test_immediate_violation_still_raises_at_the_call() -> None:
    """The guard's own immediate PolicyViolation is the one exception that does reach the caller."""
    with (
        pytest.raises(errpolicy.PolicyViolation),
        errpolicy.guard("t", policy=Policy(raise_on="WARNING", immediate=True)),
    ):
        warnings.warn("stop here", UserWarning)
        raise AssertionError("not reached")


def test_threads_capture_while_asyncio_comes_and_goes() -> None:
    """Four threads warn and log inside guards while a fifth keeps swapping sys.modules'
    asyncio between the real module and a half-imported one: no exception, nothing lost."""
    import asyncio

    errpolicy.configure(sink=errpolicy.NullSink())
    half = half_imported_asyncio()
    stop = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []
    lock = threading.Lock()

    def swap() -> None:
        try:
            while not stop.is_set():
                sys.modules["asyncio"] = half
                time.sleep(0)  # lets the other threads run with either module in place
                sys.modules["asyncio"] = asyncio
                time.sleep(0)
        finally:
            sys.modules["asyncio"] = asyncio

    def work() -> None:
        captured = 0
        try:
            for i in range(500):
                with errpolicy.guard("t", policy=RECORD_ALL) as report:
                    warnings.warn(f"w{i}", UserWarning)
                    log.warning("l%d", i)
                captured += len(report.events)
        except BaseException as error:  # the test reports it
            with lock:
                errors.append(error)
        with lock:
            counts.append(captured)

    swapper = threading.Thread(target=swap)
    workers = [threading.Thread(target=work) for _ in range(4)]
    swapper.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    swapper.join()
    assert sys.modules["asyncio"] is asyncio
    assert [] == errors
    assert [1_000] * 4 == counts
