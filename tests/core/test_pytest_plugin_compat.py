"""The pytest plugin with what a test suite already uses: the warnings filters
(``-W error``, ``filterwarnings``), ``pytest.warns``, ``recwarn``, ``caplog``,
pytest-asyncio, pytest-xdist and pytest-run-parallel, alone and together."""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
errpolicy = true
"""

# Tests whose outcomes are the same however they are run: each sync test checks
# that the events it sees are its own thread's only, so under pytest-run-parallel
# (several threads in one test at once) a leak between threads would fail it.
SUITE = """
import asyncio, logging, threading, warnings
import pytest

log = logging.getLogger("app")

def mine(errguard):
    return [e.message for e in errguard.events]

def test_asserted(errguard):
    me = threading.get_ident()
    log.error("from %s", me)
    log.warning("again from %s", me)
    assert [f"from {me}", f"again from {me}"] == mine(errguard)
    assert 2 == len(errguard.assert_logged(str(me)))

def test_unasserted_fails():
    log.error("nobody asserted this")

@pytest.mark.filterwarnings("ignore::UserWarning")
def test_filtered_out():
    warnings.warn("the filters ignore this", UserWarning)

@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_filter_turns_it_into_an_error():
    with pytest.raises(DeprecationWarning):
        warnings.warn("old", DeprecationWarning)

def test_pytest_warns():
    with pytest.warns(UserWarning, match="checked"):
        warnings.warn("checked by pytest.warns", UserWarning)

@pytest.mark.parallel_threads(1)  # caplog gets every thread's records
def test_caplog(caplog):
    log.error("checked by caplog")
    assert ["checked by caplog"] == [r.getMessage() for r in caplog.records]

@pytest.mark.parallel_threads(1)  # pytest-run-parallel does not run asyncio tests
async def test_tasks(errguard):
    async def child(n):
        log.error("task %d", n)
    await asyncio.gather(child(1), child(2))
    assert 2 == len(errguard.assert_logged("task"))

@pytest.mark.parallel_threads(1)
async def test_task_unasserted_fails():
    async def child():
        log.error("from a task, not asserted")
    await asyncio.create_task(child())
"""

MODES = {
    "plain": [],
    "W-error": ["-W", "error"],
    "run-parallel": ["--parallel-threads=3"],
    "run-parallel-W-error": ["--parallel-threads=3", "-W", "error"],
}


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """Passed and not passed: pytest-run-parallel reports a thread's failure as an error."""
    counts = result.parseoutcomes()
    return {
        "passed": counts.get("passed", 0),
        "not passed": counts.get("failed", 0) + counts.get("errors", 0),
    }


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An in-process run. pytest-run-parallel runs go to a subprocess: it imports numpy,
    which pytester unloads after an in-process run, and numpy cannot load twice."""
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:run-parallel", *args)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_same_outcomes(suite: pytest.Pytester, mode: str) -> None:
    """Plain, -W error, pytest-run-parallel, and both together."""
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-v", *MODES[mode])
    assert {"passed": 6, "not passed": 2} == outcomes(result)
    if "parallel" in mode:  # the threads did run at once in that test
        result.stdout.fnmatch_lines(["test_suite.py::test_asserted PARALLEL PASSED*"])
    result.stdout.fnmatch_lines(["*: nobody asserted this"])
    result.stdout.fnmatch_lines(["*task Task-*: from a task, not asserted"])


def test_under_xdist(suite: pytest.Pytester) -> None:
    """pytest-xdist workers check their tests as a single process does, with run-parallel too."""
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--parallel-threads=2", "-v"
    )
    assert {"passed": 6, "not passed": 2} == outcomes(result)
    # Run in pytest-run-parallel's threads, inside the worker.
    result.stdout.fnmatch_lines(["[[]gw*", "*[[]Thread-* (closure)[]]: nobody asserted this"])


def test_each_parallel_thread_is_checked_on_its_own(pytester: pytest.Pytester) -> None:
    """Under pytest-run-parallel, one thread's event fails the test and names that thread."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import logging

        def test_x(thread_index):
            if thread_index == 2:
                logging.getLogger("app").error("only thread 2")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--parallel-threads=4")
    assert {"passed": 0, "not passed": 1} == outcomes(result)
    result.stdout.fnmatch_lines(["errpolicy: 1 unexpected event*", "*: only thread 2"])


def test_w_error_raises_the_warning_itself(pytester: pytest.Pytester) -> None:
    """Under -W error an unasserted warning fails the test as the warning, as without errpolicy."""
    pytester.makeini(INI)
    pytester.makepyfile(
        "import warnings\ndef test_x():\n    warnings.warn('turned into an error', UserWarning)\n"
    )
    result = run(pytester, "-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *UserWarning: turned into an error"])
    result.stdout.no_fnmatch_line("errpolicy: *")


def test_recwarn_and_catch_warnings_record_keep_their_warnings(
    pytester: pytest.Pytester,
) -> None:
    """Warnings that recwarn or catch_warnings(record=True) record are the test's to check."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import warnings

        def test_recwarn(recwarn):
            warnings.warn("kept by recwarn", UserWarning)
            assert "kept by recwarn" == str(recwarn.pop(UserWarning).message)

        def test_catch_warnings():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                warnings.warn("kept by the list", UserWarning)
            assert 1 == len(caught)

        def test_after_the_block():
            with warnings.catch_warnings(record=True):
                pass
            warnings.warn("not kept by anyone", UserWarning)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*UserWarning at *: not kept by anyone"])


def test_errguard_sees_the_warning_pytest_warns_also_sees(pytester: pytest.Pytester) -> None:
    """errguard.events holds every event of the test, those the filters handle too."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import warnings, pytest

        def test_x(errguard):
            with pytest.warns(UserWarning):
                warnings.warn("both see it", UserWarning)
            assert ["both see it"] == [e.message for e in errguard.events]
        """
    )
    run(pytester).assert_outcomes(passed=1)


SILENCED = """
import _warnings, warnings

def silenced(category):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        warnings.warn("old api", category)  # through errpolicy's hook
        _warnings.warn("old api, from C", category)

def test_silenced_by_the_code(errguard):
    silenced(DeprecationWarning)
    silenced(UserWarning)
    with warnings.catch_warnings(action="ignore"):
        warnings.warn("old api", UserWarning)
    assert [] == list(errguard.events)

def test_not_silenced_fails():
    warnings.warn("old api, not silenced", DeprecationWarning)
"""


@pytest.mark.parametrize("args", [[], ["-W", "error"]], ids=["plain", "W-error"])
def test_a_warning_silenced_where_it_is_raised_is_not_the_tests(
    pytester: pytest.Pytester, args: list[str]
) -> None:
    """An inner catch_warnings + simplefilter("ignore") hides a warning from errguard too."""
    pytester.makeini(INI + "errpolicy_fail_on = WARNING | DEPRECATED\n")
    pytester.makepyfile(test_silenced=SILENCED)
    result = run(pytester, *args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_not_silenced_fails*"])
