"""The harness's decisions: reading outcomes, comparing runs, the allow-list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fidelity._outcomes import (
    Allowance,
    AllowListError,
    Difference,
    Outcome,
    compare,
    load_allowed,
    parse_junit,
    parse_unittest_json,
    table,
)

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="testing.test_recwarn.TestWarns" name="test_ok" time="0.1"/>
<testcase classname="testing.test_recwarn.TestWarns" name="test_bad[x]" time="0.1">
  <failure message="assert 0">trace</failure></testcase>
<testcase classname="testing.test_recwarn" name="test_skip" time="0">
  <skipped message="no"/></testcase>
<testcase classname="testing.test_recwarn" name="test_torn" time="0.1">
  <failure message="f">f</failure></testcase>
<testcase classname="testing.test_recwarn" name="test_torn" time="0.1">
  <error message="teardown">e</error></testcase>
</testsuite></testsuites>
"""


def test_junit_outcomes_are_keyed_by_class_and_name() -> None:
    """Each testcase becomes ``classname::name`` with its outcome; the worst report wins."""
    expected = {
        "testing.test_recwarn.TestWarns::test_ok": Outcome.PASSED,
        "testing.test_recwarn.TestWarns::test_bad[x]": Outcome.FAILED,
        "testing.test_recwarn::test_skip": Outcome.SKIPPED,
        "testing.test_recwarn::test_torn": Outcome.ERROR,
    }
    assert expected == parse_junit(JUNIT)


def test_unittest_json_outcomes_are_read_back() -> None:
    """The unittest runner's JSON maps ids to outcome values."""
    text = json.dumps({"test.a.T.test_x": "passed", "test.a.T.test_y": "error"})
    expected = {"test.a.T.test_x": Outcome.PASSED, "test.a.T.test_y": Outcome.ERROR}
    assert expected == parse_unittest_json(text)


def test_identical_runs_have_no_differences() -> None:
    """Two runs that agree on every id compare equal."""
    run = {"t::a": Outcome.PASSED, "t::b": Outcome.SKIPPED}
    assert [] == compare("pytest", "3.11", run, dict(run))


def test_a_changed_or_missing_outcome_is_a_difference() -> None:
    """A test that changed, appeared or vanished is reported, sorted by id."""
    without = {"t::a": Outcome.PASSED, "t::b": Outcome.PASSED}
    with_errpolicy = {"t::a": Outcome.FAILED, "t::c": Outcome.PASSED}
    expected = [
        Difference("pytest", "3.11", "t::a", Outcome.PASSED, Outcome.FAILED),
        Difference("pytest", "3.11", "t::b", Outcome.PASSED, Outcome.ABSENT),
        Difference("pytest", "3.11", "t::c", Outcome.ABSENT, Outcome.PASSED),
    ]
    assert expected == compare("pytest", "3.11", without, with_errpolicy)


def test_an_allowance_covers_its_suite_pattern_and_versions_only() -> None:
    """An allowed difference carries its reason; other suites and versions stay unexpected."""
    allowed = [Allowance("cpython-warnings", "*.test_default_filter_*", "one filter", ("3.12",))]
    without = {"test.W.test_default_filter_configuration": Outcome.PASSED}
    with_errpolicy = {"test.W.test_default_filter_configuration": Outcome.FAILED}
    on_312 = compare("cpython-warnings", "3.12", without, with_errpolicy, allowed)
    on_311 = compare("cpython-warnings", "3.11", without, with_errpolicy, allowed)
    other_suite = compare("pytest", "3.12", without, with_errpolicy, allowed)
    assert ["one filter"] == [d.reason for d in on_312]
    assert [None] == [d.reason for d in on_311]
    assert [None] == [d.reason for d in other_suite]


def test_the_allow_list_file_of_the_project_loads() -> None:
    """tests/fidelity/allowed.toml is valid, and every entry names a known suite."""
    from tests.fidelity._suites import SUITES

    text = (Path(__file__).parent / "allowed.toml").read_text(encoding="utf-8")
    assert set() == {a.suite for a in load_allowed(text)} - set(SUITES)


def test_an_allow_list_entry_is_read_with_its_versions() -> None:
    """An entry becomes an Allowance; ``python`` is optional."""
    text = """
[[allowed]]
suite = "pytest"
test = "testing/test_x.py::*"
python = ["3.14", "3.15"]
reason = "  a reason  "

[[allowed]]
suite = "structlog"
test = "tests.test_a::test_b"
reason = "another"
"""
    expected = (
        Allowance("pytest", "testing/test_x.py::*", "a reason", ("3.14", "3.15")),
        Allowance("structlog", "tests.test_a::test_b", "another", ()),
    )
    assert expected == load_allowed(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[allowed]]\nsuite = "pytest"\ntest = "x"\n', "entry 0: 'reason' must be"),
        ('[[allowed]]\nsuite = "pytest"\ntest = "x"\nreason = " "\n', "entry 0: 'reason' must"),
        ('[[allowed]]\nsuite = "p"\ntest = "x"\nreason = "r"\nwhy = 1\n', "unknown keys ['why']"),
        ('[[allowed]]\nsuite = "p"\ntest = "x"\nreason = "r"\npython = "3.11"\n', "'python'"),
        ("allowed = 3\n", "array of tables"),
        ("[other]\n", "unknown top-level keys ['other']"),
        ("[[allowed]\n", "not TOML"),
    ],
)
def test_a_malformed_allow_list_is_refused_with_the_entry(text: str, message: str) -> None:
    """Missing reasons, unknown keys and bad types raise AllowListError saying where."""
    with pytest.raises(AllowListError) as caught:
        load_allowed(text)
    assert message in str(caught.value)


def test_the_table_puts_unexpected_differences_first() -> None:
    """Unexpected rows come before allowed ones; an allowed row shows its reason."""
    rows = [
        Difference("pytest", "3.11", "t::a", Outcome.PASSED, Outcome.FAILED, "kept: why"),
        Difference("pytest", "3.11", "t::b", Outcome.PASSED, Outcome.ERROR),
    ]
    lines = table(rows).splitlines()
    assert 3 == len(lines)
    assert lines[1].split()[-2:] == ["t::b", "UNEXPECTED"]
    assert lines[2].endswith("allowed: kept: why")


def test_the_table_says_when_nothing_differs() -> None:
    """No rows: one plain sentence."""
    assert "no differences" == table([])
