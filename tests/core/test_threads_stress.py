"""Stress: the core's shared state under heavy thread contention (16 threads, a thread
switch every microsecond), for what docs/design.md's free-threading audit calls safe.

On a GIL build these find races between bytecodes, not data races in C; each test is
bounded by counts, not by time, and asserts exact outcomes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator

import errpolicy
import pytest
from errpolicy import Action, Policy, Report, Severity, _guard
from tests.threads import THREADS, run_threads, switch_often

RECORD_ALL = Policy(raise_on="NONE", record="ALL")


@pytest.fixture(autouse=True)
def contention() -> Iterator[None]:
    """Switch threads as often as the interpreter allows, and recorded events go nowhere."""
    with switch_often():
        errpolicy.configure(sink=errpolicy.NullSink())
        yield


def test_configure_racing_guard_entries() -> None:
    """While configure() swaps the policy 2,000 times, every entry of a shared guard in 16
    threads gets one of the configured policies and captures its own warning alone; once
    configure() is done, every thread's next entry has the last policy."""
    warning_only = Policy(raise_on="NONE", record="WARNING")
    error_only = Policy(raise_on="NONE", record="ERROR")
    last = Policy(raise_on="NONE", record="ALL & ~DEBUG")
    shared = errpolicy.guard("stress.config")
    done = threading.Event()

    def enter(i: int) -> list[tuple[Policy, list[str]]]:
        seen = []
        while not done.is_set() or len(seen) < 20:
            with shared as report:
                warnings.warn(f"thread {i}", UserWarning, stacklevel=1)
            seen.append((report.policy, [e.message for e in report.events]))
        return seen

    def configure_or_enter(i: int) -> list[tuple[Policy, list[str]]]:
        if i:
            return enter(i)
        for k in range(2000):
            errpolicy.configure(policies={"stress.config": (warning_only, error_only)[k % 2]})
        done.set()
        return []

    default = errpolicy.get_config().default_policy
    results = run_threads(configure_or_enter)
    policies = {policy for seen in results for policy, _ in seen}
    messages = [
        (i, events)
        for i, seen in enumerate(results)
        for _, events in seen
        if events != [f"thread {i}"]
    ]
    assert set() == policies - {default, warning_only, error_only}
    assert [] == messages
    errpolicy.configure(policies={"stress.config": last})

    def policy_now(i: int) -> Policy:
        with shared as report:
            pass
        return report.policy

    assert [last] * THREADS == run_threads(policy_now)


def test_guard_by_name_under_contention() -> None:
    """16 threads asking for the same 300 names at once each get a guard of that name;
    afterwards guard(name) always answers with one object, one some thread was given."""
    names = [f"stress.name.{n}" for n in range(300)]

    def ask(i: int) -> list[errpolicy.Guard]:
        order = names if i % 2 else names[::-1]
        got = [errpolicy.guard(name) for name in order]
        return got if i % 2 else got[::-1]

    try:
        results = run_threads(ask)
        kept = [errpolicy.guard(name) for name in names]
        again = [errpolicy.guard(name) for name in names]
        assert [names] * THREADS == [[g.name for g in got] for got in results]
        assert [True] * len(names) == [a is b for a, b in zip(kept, again, strict=True)]
        assert [True] * len(names) == [
            any(got[n] is kept[n] for got in results) for n in range(len(names))
        ]
    finally:
        for name in names:
            _guard._SHARED.pop(name, None)


def test_the_shared_guard_table_stays_bounded_under_contention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With room for 10 more names, 16 threads asking for 100 new names each grow the
    table by at most 10 + 15 (each thread can be between its check and its insert)."""
    before = set(_guard._SHARED)
    monkeypatch.setattr(_guard, "_SHARED_MAX", len(before) + 10)

    def ask(i: int) -> list[str]:
        return [errpolicy.guard(f"stress.bounded.{i}.{n}").name for n in range(100)]

    try:
        results = run_threads(ask)
        grown = len(_guard._SHARED) - len(before)
        assert [[f"stress.bounded.{i}.{n}" for n in range(100)] for i in range(THREADS)] == (
            results
        )
        assert 10 <= grown <= 10 + THREADS - 1, grown
    finally:
        for name in set(_guard._SHARED) - before:
            del _guard._SHARED[name]


def test_carried_threads_fill_one_report_exactly() -> None:
    """16 carried threads each raise 200 warnings and 200 log records into one guard:
    every event is counted, the report keeps the first and latest 50, and each thread's
    kept events are in its own order."""
    errpolicy.configure(max_events=100)
    logger = logging.getLogger("stress.carry")

    with errpolicy.guard("stress.carry", policy=RECORD_ALL) as report:

        def emit(i: int) -> None:
            for k in range(200):
                warnings.warn(f"{i} {k:03}", UserWarning, stacklevel=1)
                logger.warning("%d %03d", i, k)

        carried = errpolicy.carry(emit)
        run_threads(carried)

    kept = report.events
    per_thread = [[e.message for e in kept if e.message.split()[0] == str(i)] for i in range(16)]
    assert {(Action.RECORD, Severity.WARNING): 6400} == dict(report.counts)
    assert (100, 6300) == (len(kept), report.dropped)
    assert [sorted(messages) for messages in per_thread] == per_thread


def test_first_guards_racing_the_install_capture_and_hook_once() -> None:
    """16 threads enter their first guard at once with the hooks out: each guard gets its
    own warning, and afterwards a warning outside guards is shown once, not twice."""
    errpolicy.uninstall()

    def first(i: int) -> list[str]:
        with errpolicy.guard("stress.install", policy=RECORD_ALL) as report:
            warnings.warn(f"first {i}", UserWarning, stacklevel=1)
        return [e.message for e in report.events]

    results = run_threads(first)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("outside", UserWarning, stacklevel=1)
    assert [[f"first {i}"] for i in range(THREADS)] == results
    assert ["outside"] == [str(w.message) for w in caught]


def test_reports_of_racing_threads_stay_apart() -> None:
    """16 threads, each entering its own guards 200 times with a record policy, never see
    another thread's event, and each report is closed after its block."""

    def own(i: int) -> list[Report]:
        reports = []
        for k in range(200):
            with (
                contextlib.suppress(ZeroDivisionError),
                errpolicy.guard(f"stress.own.{i % 4}", policy=RECORD_ALL) as report,
            ):
                logging.getLogger(f"stress.own.{i}").warning("%d %d", i, k)
                if k % 50 == 0:
                    1 / 0  # noqa: B018  # an exception leaving the guard must not disturb it
            reports.append(report)
        return reports

    results = run_threads(own)
    assert [[[f"{i} {k}"] for k in range(200)] for i in range(THREADS)] == [
        [[e.message for e in report.events] for report in reports] for reports in results
    ]
    assert [] == [r for reports in results for r in reports if r.open]


def test_a_guard_never_pairs_a_policy_with_another_configuration() -> None:
    """Two configurations swapped in and out (as ``testing.configured`` restores one)
    while 15 threads enter one shared guard: every report's policy is the one its own
    configuration names, never the other's cached by a racing thread."""
    from errpolicy import _config

    first = errpolicy.configure(policies={"stress.pair": Policy(raise_on="NONE")})
    second = errpolicy.configure(policies={"stress.pair": Policy(raise_on="ALL", record="NONE")})
    expected = {id(c): c.policy_for("stress.pair", None) for c in (first, second)}
    shared = errpolicy.guard("stress.pair")
    mismatches: list[int] = []

    def work(i: int) -> None:
        for n in range(2000):
            if i == 0:
                _config.restore(first if n % 2 else second)
                continue
            with shared as report:
                pass
            if report.policy is not expected[id(report._config)]:
                mismatches.append(n)

    run_threads(work)
    assert [] == mismatches
