"""The pytest plugin and fixtures: what a checked test's fixtures raise while pytest
sets them up or tears them down counts toward that test, as an error in that phase,
the way pytest reports a fixture's exception. Each test runs a small suite with
``pytester``."""

from __future__ import annotations

import pytest

from .test_pytest_plugin import INI, run

pytest_plugins = ("pytester",)

CHECKED = INI + "errpolicy = true\n"


def test_an_event_in_a_fixtures_setup_is_an_error_at_setup(pytester: pytest.Pytester) -> None:
    """The test does not run, and the report names the event and the phase."""
    pytester.makeini(CHECKED)
    pytester.makepyfile(
        """
        import logging, pytest

        @pytest.fixture
        def db():
            logging.getLogger("app.db").error("no schema, created one")
            return "db"

        def test_x(db):
            raise AssertionError("not reached")
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_x*",
            "errpolicy: 1 unexpected event in setup (*",
            "  ERROR logger 'app.db' at *: no schema, created one",
        ]
    )
    result.stdout.no_fnmatch_line("*not reached*")


def test_an_event_in_a_fixtures_teardown_is_an_error_at_teardown(
    pytester: pytest.Pytester,
) -> None:
    """The test itself passes; its teardown is reported as an error."""
    pytester.makeini(CHECKED)
    pytester.makepyfile(
        """
        import pytest, warnings

        @pytest.fixture
        def server():
            yield "server"
            warnings.warn("socket left open", UserWarning)

        @pytest.mark.errpolicy(fail_on="WARNING")
        def test_x(server):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_x*",
            "errpolicy: 1 unexpected event in teardown (*",
            "  WARNING UserWarning at *: socket left open",
        ]
    )


def test_a_wider_fixture_counts_toward_the_test_that_sets_it_up(
    pytester: pytest.Pytester,
) -> None:
    """A module fixture's setup event fails the first test only, as its exception would."""
    pytester.makeini(CHECKED)
    pytester.makepyfile(
        """
        import logging, pytest

        @pytest.fixture(scope="module")
        def cluster():
            logging.getLogger("app").warning("one node is slow")
            return "cluster"

        def test_first(cluster):
            pass

        def test_second(cluster):
            pass
        """
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*::test_first ERROR*", "*::test_second PASSED*"])


def test_an_async_fixtures_events_count_too(pytester: pytest.Pytester) -> None:
    """pytest-asyncio fixtures: their setup and teardown events are errors there."""
    pytester.makeini(CHECKED)
    pytester.makepyfile(
        """
        import asyncio, logging, pytest

        log = logging.getLogger("app")

        @pytest.fixture
        async def connection():
            async def handshake():
                log.error("handshake retried")
            await asyncio.create_task(handshake())
            yield
            log.error("closed uncleanly")

        async def test_x(connection):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "errpolicy: 1 unexpected event in setup (*",
            "*[[]MainThread, task Task-*]: handshake retried",
            "errpolicy: 1 unexpected event in teardown (*",
            "*: closed uncleanly",
        ]
    )


def test_setup_events_are_not_the_calls(pytester: pytest.Pytester) -> None:
    """Allowed or not, a fixture's events are not in the test body's errguard.events."""
    pytester.makeini(CHECKED)
    pytester.makepyfile(
        """
        import logging, pytest
        from errpolicy import match

        log = logging.getLogger("app")

        @pytest.fixture
        def prepared(errguard):
            log.warning("warming the cache")
            errguard.expect(match.message("warming"))
            yield
            log.warning("cache dropped")
            errguard.assert_logged("dropped")

        def test_x(prepared, errguard):
            log.warning("in the test")
            assert ["in the test"] == [e.message for e in errguard.events]
            errguard.assert_logged("in the test")
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_fixture_events_the_filters_or_scope_leave_out_pass(pytester: pytest.Pytester) -> None:
    """Ignored warnings and out-of-scope records in fixtures do not fail the test."""
    pytester.makeini(CHECKED + "errpolicy_scope = app\n")
    pytester.makepyfile(
        app="""
        import warnings

        def warn(text):
            warnings.warn(text, UserWarning)
        """,
        test_x="""
        import logging, pytest, warnings
        import app

        @pytest.fixture
        def noisy():
            logging.getLogger("vendor").error("vendor noise")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                app.warn("silenced")
            app.warn("filtered by the mark")
            yield
            logging.getLogger("vendor").error("vendor noise again")

        @pytest.mark.filterwarnings("ignore:filtered")
        def test_x(noisy):
            pass

        def test_in_scope_still_counts():
            app.warn("from app")
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*UserWarning at app.py:*: from app"])


def test_unchecked_tests_fixtures_are_not_checked(pytester: pytest.Pytester) -> None:
    """With the plugin off, a fixture's events change nothing."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import logging, pytest

        @pytest.fixture
        def noisy():
            logging.getLogger("app").error("setup")
            yield
            logging.getLogger("app").error("teardown")

        def test_x(noisy):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("errpolicy: *")
