"""The pytest plugin's errguard fixture: assertions, expectations, exactly the test's
own thread and tasks. Each test runs a small suite with ``pytester``."""

from __future__ import annotations

import pytest

from .test_pytest_plugin import INI, run

pytest_plugins = ("pytester",)


def test_errguard_assertions_and_expect(pytester: pytest.Pytester) -> None:
    """Asserted and expected events pass; the fixture alone turns the check on."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import logging, warnings
        from errpolicy import Severity, match

        log = logging.getLogger("app.db")

        def test_assert_logged(errguard):
            log.error("connection %s lost", 7)
            events = errguard.assert_logged("connection 7", logger="app", level="ERROR")
            assert ["connection 7 lost"] == [e.message for e in events]
            assert Severity.ERROR == events[0].severity

        def test_assert_warned(errguard):
            warnings.warn("stale cache", DeprecationWarning)
            errguard.assert_warned(DeprecationWarning, match="stale")

        def test_expect_before(errguard):
            errguard.expect(match.logger("app.db") & match.message("retry"))
            log.error("retry 1")
            log.error("retry 2")

        def test_expect_after(errguard):
            log.warning("retry 1")
            errguard.expect(match.message("retry"))

        def test_unasserted(errguard):
            log.error("retry 1")
            errguard.assert_logged("retry 1")
            log.error("not asserted")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        ["*_ test_unasserted _*", "errpolicy: 1 unexpected event*", "*: not asserted"]
    )


def test_a_failed_assertion_lists_what_the_test_raised(pytester: pytest.Pytester) -> None:
    """assert_logged that finds nothing says what it looked for and what there was."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import logging

        def test_x(errguard):
            logging.getLogger("app").warning("disk 91% full")
            errguard.assert_logged("disk .* full", level="ERROR")
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * AssertionError: no log record matched source('logging', 'structlog')"
            " & message('disk .* full') & level('ERROR'); the test raised:",
            "E *   WARNING logger 'app' at test_a_failed_assertion_lists_what_the_test_raised.py:4"
            " [[]MainThread[]]: disk 91% full",
        ]
    )


def test_structlog_events_through_errpolicys_processor(pytester: pytest.Pytester) -> None:
    """Native structlog events count and can be asserted, like log records."""
    pytest.importorskip("structlog")
    pytester.makeini(INI + "errpolicy = true\n")
    pytester.makeconftest(
        """
        import errpolicy, structlog

        structlog.configure(
            processors=[structlog.processors.add_log_level, errpolicy.structlog_processor,
                        structlog.processors.KeyValueRenderer()],
            logger_factory=structlog.ReturnLoggerFactory(),
        )
        """
    )
    pytester.makepyfile(
        """
        import structlog

        log = structlog.get_logger()

        def test_asserted(errguard):
            log.error("payment declined", order=7)
            (event,) = errguard.assert_logged("declined", level="ERROR")
            assert ("structlog", 7) == (event.source, event.original["order"])

        def test_unasserted():
            log.warning("slow payment provider")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["  WARNING structlog at *: slow payment provider"])


def test_errguard_sees_only_the_tests_own_thread(pytester: pytest.Pytester) -> None:
    """A thread the test starts is not the test's, unless handed over with errpolicy.carry."""
    pytester.makeini(INI + "errpolicy = true\n")
    pytester.makepyfile(
        """
        import logging, threading
        import errpolicy

        log = logging.getLogger("app")

        def run_in_thread(function):
            thread = threading.Thread(target=function)
            thread.start()
            thread.join()

        def test_other_thread(errguard):
            run_in_thread(lambda: log.error("background"))
            assert () == errguard.events

        def test_carried(errguard):
            run_in_thread(errpolicy.carry(lambda: log.error("handed over")))
            assert ["handed over"] == [e.message for e in errguard.events]
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ERROR logger 'app' at *[[]Thread-*]: handed over"])


def test_errguard_outside_the_test_body_is_a_clear_error(pytester: pytest.Pytester) -> None:
    """Used from a thread that is not the test's, errguard says why it cannot answer."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import threading, pytest
        from errpolicy._errguard import NotInTest

        def test_x(errguard):
            errors = []
            def use():
                try:
                    errguard.events
                except NotInTest as e:
                    errors.append(str(e))
            thread = threading.Thread(target=use)
            thread.start()
            thread.join()
            assert 1 == len(errors) and "errpolicy.carry" in errors[0]
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_a_failing_test_gets_the_events_as_notes(pytester: pytest.Pytester) -> None:
    """A test that fails anyway keeps its own failure; the unexpected events are added as notes."""
    pytester.makeini(INI + "errpolicy = true\n")
    pytester.makepyfile(
        """
        import logging

        def test_x():
            logging.getLogger("app").error("lost the connection")
            assert 1 == 2
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E * assert 1 == 2", "*errpolicy: ERROR logger 'app' *"])


def test_a_guard_in_the_code_under_test_takes_its_events_first(pytester: pytest.Pytester) -> None:
    """Events the application's own guard records never reach the test's check."""
    pytester.makeini(INI + "errpolicy = true\n")
    pytester.makepyfile(
        """
        import logging, errpolicy
        from errpolicy import Policy

        def test_x():
            errpolicy.configure(sink=errpolicy.NullSink())
            with errpolicy.guard("app.call", policy=Policy(raise_on="NONE")) as report:
                logging.getLogger("app").error("handled by the app")
            assert 1 == report.total
            errpolicy.reset_defaults()
        """
    )
    run(pytester).assert_outcomes(passed=1)
