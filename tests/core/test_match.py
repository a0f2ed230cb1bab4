"""Matchers compose with & | ~ and rules classify in one line."""

from __future__ import annotations

import logging
import warnings

import errpolicy
import pytest
from errpolicy import ConfigurationError, Event, Policy, Severity, match
from hypothesis import given
from hypothesis import strategies as st


def event(**fields: object) -> Event:
    base: dict[str, object] = {
        "source": "logging",
        "severity": Severity.DEBUG,
        "action": None,
        "message": "marking server 127.0.0.1:11211 as dead",
        "category": None,
        "logger": "pymemcache.client.hash",
        "level": logging.DEBUG,
        "filename": "x.py",
        "lineno": 1,
        "time": 0.0,
        "thread": "MainThread",
        "thread_id": 1,
        "task": None,
        "original": None,
    }
    base.update(fields)
    return Event(**base)  # type: ignore[arg-type]


def test_one_line_rule_upgrades_pymemcache_debug() -> None:
    """rule(WARNING, logger=..., level=..., message=...) matches pymemcache's dead-node debug."""
    r = match.rule("WARNING", logger="pymemcache", level="DEBUG", message="as dead")
    assert Severity.WARNING == r(event())
    assert r(event(logger="pymemcachex")) is None
    assert r(event(level=logging.INFO)) is None


def test_rule_applies_inside_a_guard() -> None:
    """A configured rule turns a captured DEBUG record into a raised WARNING."""
    logger = logging.getLogger("pymemcache.client.hash")
    logger.setLevel(logging.DEBUG)
    errpolicy.configure(classifiers=[match.rule("WARNING", logger="pymemcache", message="dead")])
    try:
        with (
            pytest.raises(errpolicy.PolicyViolation),
            errpolicy.guard("t", policy=Policy(raise_on="WARNING")) as report,
        ):
            logger.debug("marking server %s as dead", "127.0.0.1:11211")
    finally:
        logger.setLevel(logging.NOTSET)
    assert [("WARNING", "rule(WARNING, logger('pymemcache') & message('dead'))")] == [
        (e.severity.name, e.classified_by) for e in report.events
    ]


def test_first_custom_answer_wins_then_default() -> None:
    """Classifiers run in order; None passes to the next; the default answers last."""
    calls = []

    def never(e: Event) -> Severity | None:
        calls.append("never")
        return None

    def notice(e: Event) -> Severity | None:
        calls.append("notice")
        return Severity.NOTICE

    errpolicy.configure(classifiers=[never, notice, never], sink=errpolicy.NullSink())
    with errpolicy.guard("t", policy=Policy(raise_on="NONE")) as report:
        warnings.warn("x", RuntimeWarning)
    assert ["never", "notice"] == calls
    assert Severity.NOTICE == report.events[0].severity
    assert report.events[0].classified_by.endswith("notice")


def test_category_declares_its_own_severity() -> None:
    """A warning class with __errpolicy_severity__ is classified by it."""

    class Failover(UserWarning):
        __errpolicy_severity__ = Severity.NOTICE

    with errpolicy.guard("t", policy=Policy(raise_on="NONE")) as report:
        warnings.warn("replica served", Failover)
    assert Severity.NOTICE == report.events[0].severity


def test_default_classification_of_warning_categories() -> None:
    """Deprecations are DEPRECATED, other warnings WARNING."""
    categories = [
        DeprecationWarning,
        PendingDeprecationWarning,
        FutureWarning,
        RuntimeWarning,
        ResourceWarning,
        UserWarning,
        SyntaxWarning,
    ]
    got = [
        errpolicy.default_classifier(event(category=c, level=None, logger=None)) for c in categories
    ]
    assert [Severity.DEPRECATED] * 3 + [Severity.WARNING] * 4 == got


def test_reprs_read_as_code() -> None:
    """Composite matchers print as the expression that built them."""
    m = (match.logger("a") | match.category(RuntimeWarning)) & ~match.message("x")
    assert "(logger('a') | category(RuntimeWarning)) & ~message('x')" == repr(m)
    assert "level(min='WARNING')" == repr(match.level(min="WARNING"))
    assert "source('warning')" == repr(match.source("warning"))
    assert "severity('NOTICE | ERROR')" == repr(match.severity("ERROR|NOTICE"))


def test_logger_prefix_is_on_dotted_boundaries() -> None:
    """logger('a') matches a and a.b, not ab."""
    m = match.logger("a")
    assert [True, True, False, False] == [
        m(event(logger=n))
        for n in ("a", "a.b", "ab", None)  # type: ignore[arg-type]
    ]


def test_level_range_and_predicate() -> None:
    """level(min=, max=) bounds inclusively; predicate wraps any function."""
    m = match.level(min="INFO", max="WARNING")
    assert [False, True, True, False] == [m(event(level=lv)) for lv in (10, 20, 30, 40)]
    p = match.predicate(lambda e: e.lineno == 1, "line one")
    assert p(event())
    assert "predicate(line one)" == repr(p)


@pytest.mark.parametrize(
    "build",
    [
        lambda: match.category(int),  # type: ignore[arg-type]
        lambda: match.logger(),
        lambda: match.message("("),
        lambda: match.level("LOUD"),
        lambda: match.level("INFO", min="DEBUG"),
        lambda: match.source("socket"),  # type: ignore[arg-type]
        lambda: match.predicate(3),  # type: ignore[arg-type]
        lambda: match.rule("WARNING"),
        lambda: match.rule("LOUD", logger="x"),
    ],
)
def test_bad_matchers_are_configuration_errors(build: object) -> None:
    """Every bad matcher or rule fails when built, with a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        build()  # type: ignore[operator]


def test_combining_with_a_non_matcher_is_a_type_error() -> None:
    """& and | take matchers only."""
    with pytest.raises(TypeError):
        match.logger("a") & (lambda e: True)  # type: ignore[operator]


events = st.builds(
    event,
    logger=st.sampled_from(["a", "a.b", "b", None]),
    level=st.sampled_from([10, 20, 25, 30, 40, None]),
    message=st.sampled_from(["dead", "alive", ""]),
)
atoms = st.sampled_from(
    [match.logger("a"), match.level(min=25), match.message("dead"), match.source("logging")]
)


@given(atoms, atoms, events)
def test_de_morgan(a: match.Matcher, b: match.Matcher, e: Event) -> None:
    """~(a & b) == ~a | ~b and ~(a | b) == ~a & ~b on any event."""
    assert (~(a & b))(e) == (~a | ~b)(e)
    assert (~(a | b))(e) == (~a & ~b)(e)


@given(atoms, atoms, atoms, events)
def test_and_or_are_boolean(a: match.Matcher, b: match.Matcher, c: match.Matcher, e: Event) -> None:
    """& and | agree with Python's and/or, and distribute."""
    assert (a & b)(e) == (a(e) and b(e))
    assert (a | b)(e) == (a(e) or b(e))
    assert (a & (b | c))(e) == ((a & b) | (a & c))(e)
