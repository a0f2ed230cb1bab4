"""The pytest plugin: off until enabled; ini options, flags and marker; the readable
report. Each test runs a small suite with ``pytester``."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

pytest_plugins = ("pytester",)

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# A suite that raises an ERROR log record, a WARNING one and a UserWarning, in
# passing tests that do not know errpolicy.
NOISY = """
import logging, warnings

def test_error():
    logging.getLogger("app.db").error("connection lost")

def test_warning_record():
    logging.getLogger("vendor.http").warning("retrying")

def test_user_warning():
    warnings.warn("stale cache", UserWarning)

def test_quiet():
    logging.getLogger("app").info("fine")
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An in-process run. Without pytest-run-parallel: it imports numpy, which pytester
    then unloads, and numpy cannot be loaded twice in one process."""
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:run-parallel", *args)


@pytest.fixture
def noisy(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project whose tests raise events but pass without errpolicy."""
    pytester.makeini(INI)
    pytester.makepyfile(test_noisy=NOISY)
    return pytester


# -- off unless enabled ------------------------------------------------------------


def test_the_distribution_registers_the_plugin() -> None:
    """Installing errpolicy registers the plugin as "errpolicy" (so -p no:errpolicy blocks it)."""
    found = {e.name: e.value for e in importlib.metadata.entry_points(group="pytest11")}
    assert "errpolicy.pytest_plugin" == found.get("errpolicy")


def test_installed_but_not_enabled_changes_nothing(noisy: pytest.Pytester) -> None:
    """Registered but off: the run reads as with the plugin blocked, and nothing is hooked."""
    noisy.makeconftest(
        """
        import errpolicy

        def pytest_sessionfinish(session):
            print("errpolicy installed:", errpolicy.installed())
            print("functions unwrapped:", all(
                not hasattr(item.obj, "__wrapped__") for item in session.items))
        """
    )
    with_plugin = noisy.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    without = noisy.runpytest_subprocess("-p", "no:cacheprovider", "-s", "-p", "no:errpolicy")
    with_plugin.assert_outcomes(passed=4, warnings=1)
    without.assert_outcomes(passed=4, warnings=1)
    with_plugin.stdout.fnmatch_lines(
        [
            "*errpolicy installed: False",
            "functions unwrapped: True",
            "*test_noisy.py:10: UserWarning*",
        ]
    )
    # The one difference: pytest's header lists the plugin.
    strip = [line for line in with_plugin.outlines if not line.startswith(("plugins:", "="))]
    strip_without = [line for line in without.outlines if not line.startswith(("plugins:", "="))]
    assert strip_without == strip


def test_errpolicy_imported_before_pytest_starts_is_no_warning(pytester: pytest.Pytester) -> None:
    """A process that imported errpolicy first (a .pth, sitecustomize) runs under -W error."""
    pytester.makeini(INI)
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.run(
        sys.executable,
        "-c",
        "import errpolicy, errpolicy_memcache, pytest\n"
        "raise SystemExit(pytest.main(['-p', 'no:cacheprovider', '-W', 'error']))",
    )
    assert pytest.ExitCode.OK == result.ret, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)


def test_the_ini_option_enables_it(noisy: pytest.Pytester) -> None:
    """errpolicy = true fails every test that raised WARNING or worse, with a readable report."""
    noisy.makeini(INI + "errpolicy = true\n")
    result = run(noisy)
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_error _*",
            "errpolicy: 1 unexpected event (fail_on=WARNING | ERROR | CRITICAL scope=everywhere):",
            "  ERROR logger 'app.db' at test_noisy.py:4 [[]MainThread[]]: connection lost",
            "Assert them with errguard.assert_logged() or errguard.assert_warned(), *",
        ]
    )
    result.stdout.fnmatch_lines(["  WARNING UserWarning at test_noisy.py:10 *: stale cache"])


def test_the_flag_enables_it(noisy: pytest.Pytester) -> None:
    """--errpolicy does what errpolicy = true does, for one run."""
    run(noisy, "--errpolicy").assert_outcomes(passed=1, failed=3)


def test_blocking_the_plugin_wins_over_the_ini_option(noisy: pytest.Pytester) -> None:
    """-p no:errpolicy turns it off even where the ini file enables it."""
    noisy.makeini(INI + "errpolicy = true\n")
    run(noisy, "-p", "no:errpolicy", "-W", "ignore::pytest.PytestConfigWarning").assert_outcomes(
        passed=4, warnings=1
    )


# -- fail_on and scope ---------------------------------------------------------------


def test_fail_on_from_the_ini_file(noisy: pytest.Pytester) -> None:
    """errpolicy_fail_on = ERROR lets warnings and WARNING records pass."""
    noisy.makeini(INI + "errpolicy = true\nerrpolicy_fail_on = ERROR | CRITICAL\n")
    result = run(noisy)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_noisy.py::test_error*"])


def test_the_flag_overrides_the_ini_fail_on(noisy: pytest.Pytester) -> None:
    """--errpolicy-fail-on replaces errpolicy_fail_on."""
    noisy.makeini(INI + "errpolicy = true\nerrpolicy_fail_on = ERROR\n")
    run(noisy, "--errpolicy-fail-on=NONE").assert_outcomes(passed=4)


def test_scope_by_logger_name(noisy: pytest.Pytester) -> None:
    """errpolicy_scope = app: the vendor's records and the test module's warning pass."""
    noisy.makeini(INI + "errpolicy = true\nerrpolicy_scope = app\n")
    result = run(noisy)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*scope=app*", "FAILED test_noisy.py::test_error*"])


def test_scope_by_warning_module(noisy: pytest.Pytester) -> None:
    """A module prefix scopes warnings by the module they are attributed to."""
    run(noisy, "--errpolicy", "--errpolicy-scope=test_noisy").assert_outcomes(passed=3, failed=1)


def test_scope_project_is_the_code_under_rootdir(pytester: pytest.Pytester) -> None:
    """{project}: records from code outside the project's folder (a vendored library) pass."""
    pytester.makeini(INI + "errpolicy = true\nerrpolicy_scope = {project}\n")
    outside = pytester.path.parent / f"{pytester.path.name}_vendor"
    outside.mkdir()
    (outside / "vendorlib.py").write_text(
        "import logging\ndef fetch():\n    logging.getLogger('vendorlib').error('vendor noise')\n"
    )
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(outside)!r})\n")
    pytester.makepyfile(
        test_scope="""
        import logging, vendorlib

        def test_vendor():
            vendorlib.fetch()

        def test_own():
            logging.getLogger("vendorlib").error("ours, on their logger")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_scope.py::test_own*"])


def test_a_bad_mask_is_a_usage_error_naming_the_option(noisy: pytest.Pytester) -> None:
    """A typo in errpolicy_fail_on stops the run with the option's name."""
    noisy.makeini(INI + "errpolicy = true\nerrpolicy_fail_on = ERROR | WARNNG\n")
    result = run(noisy)
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines(["*errpolicy_fail_on*WARNNG*"])


# -- the marker ----------------------------------------------------------------------


def test_the_marker_checks_one_test_without_the_ini_option(pytester: pytest.Pytester) -> None:
    """@pytest.mark.errpolicy turns the check on for the tests it marks."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import logging, pytest

        @pytest.mark.errpolicy
        def test_marked():
            logging.getLogger("app").error("boom")

        def test_unmarked():
            logging.getLogger("app").error("boom")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_marked*"])


def test_the_marker_overrides_fail_on_and_scope(pytester: pytest.Pytester) -> None:
    """fail_on= and scope= in the marker replace the ini options for that test."""
    pytester.makeini(INI + "errpolicy = true\nerrpolicy_fail_on = ALL\n")
    pytester.makepyfile(
        """
        import logging, pytest

        @pytest.mark.errpolicy(fail_on="ERROR")
        def test_warning_allowed():
            logging.getLogger("app").warning("meh")

        @pytest.mark.errpolicy(scope=["app"])
        def test_vendor_allowed():
            logging.getLogger("vendor").error("theirs")

        @pytest.mark.errpolicy(fail_on="ERROR", scope="app")
        def test_still_fails():
            logging.getLogger("app.db").error("ours")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*fail_on=ERROR scope=app*", "FAILED *::test_still_fails*"])


@pytest.mark.parametrize(
    ("arguments", "named"), [('"ERROR"', "not 'ERROR'"), ('fail_no="ERROR"', "not fail_no=")]
)
def test_the_marker_takes_its_keywords_only(
    pytester: pytest.Pytester, arguments: str, named: str
) -> None:
    """A positional argument or a misspelt keyword is refused, saying how to write it."""
    pytester.makeini(INI)
    pytester.makepyfile(
        f"import pytest\n@pytest.mark.errpolicy({arguments})\ndef test_x():\n    pass\n"
    )
    result = run(pytester)
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([f"*takes keywords only (fail_on=..., scope=...), {named}"])


def test_doctests_and_unittest_cases(pytester: pytest.Pytester) -> None:
    """Doctests are checked around their run; unittest cases are left to unittest."""
    pytester.makeini(INI + "errpolicy = true\n")
    pytester.makepyfile(
        mod='''
        def noisy():
            """
            >>> import logging; logging.getLogger("app").error("from a doctest")
            """
        ''',
        test_unit="""
        import logging, unittest

        class T(unittest.TestCase):
            def test_x(self):
                logging.getLogger("app").error("from unittest")
        """,
    )
    result = run(pytester, "--doctest-modules")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ERROR logger 'app' at <doctest mod.noisy*: from a doctest"])


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    """pytest --help shows the flags and ini options under their own group."""
    pytester.makeini(INI)
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(
        [
            "errpolicy: fail tests on their warnings and log records:",
            "  --errpolicy *",
            "*--errpolicy-fail-on=MASK*",
            "*--errpolicy-scope=PREFIXES*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["  errpolicy_fail_on (string):*", "  errpolicy_scope (linelist):*"]
    )
