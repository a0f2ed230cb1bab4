"""Severity flags and the mask grammar."""

from __future__ import annotations

import logging
import operator
from functools import reduce

import pytest
from errpolicy import ConfigurationError, Severity
from hypothesis import given
from hypothesis import strategies as st

S = Severity
SINGLES = [S.DEBUG, S.INFO, S.NOTICE, S.DEPRECATED, S.WARNING, S.ERROR, S.CRITICAL]


def test_all_is_every_single_severity() -> None:
    """ALL is the union of the seven severities."""
    assert S.ALL == reduce(operator.or_, SINGLES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ALL & ~NOTICE", S.ALL & ~S.NOTICE),
        ("WARNING | ERROR", S.WARNING | S.ERROR),
        ("E_ALL & ~E_NOTICE", S.ALL & ~S.NOTICE),
        ("E_ALL ^ E_NOTICE", S.ALL & ~S.NOTICE),
        ("E_ALL & ~E_NOTICE & ~E_DEPRECATED", S.ALL & ~S.NOTICE & ~S.DEPRECATED),
        ("E_USER_WARNING | E_USER_ERROR", S.WARNING | S.ERROR),
        ("all & ~notice", S.ALL & ~S.NOTICE),
        ("(WARNING | ERROR) & ~ERROR", S.WARNING),
        ("~(DEBUG | INFO)", S.ALL & ~(S.DEBUG | S.INFO)),
        ("48", S.WARNING | S.ERROR),
        ("0x30", S.WARNING | S.ERROR),
        ("NONE", S.NONE),
        ("  ERROR  ", S.ERROR),
        ("~~ERROR", S.ERROR),
    ],
)
def test_parse_examples(text: str, expected: Severity) -> None:
    """Documented spellings parse to the expected mask."""
    assert expected == Severity.parse(text)


def test_xor_toggles_where_and_not_clears() -> None:
    """PHP's ^ toggles: it sets NOTICE in a mask that lacked it, where & ~ clears."""
    assert S.WARNING | S.NOTICE == Severity.parse("WARNING ^ NOTICE")
    assert S.WARNING == Severity.parse("WARNING & ~NOTICE")


def test_precedence_is_phps() -> None:
    """~ binds tighter than &, & tighter than ^, ^ tighter than |."""
    assert S.ERROR | (S.ALL & S.WARNING) == Severity.parse("ERROR | ALL & WARNING")
    assert (S.ERROR ^ (S.ALL & S.ERROR)) | S.INFO == Severity.parse("ERROR ^ ALL & ERROR | INFO")


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("ALL & ~NOTCE", 7, "unknown severity 'NOTCE'"),
        ("ALL &", 5, "ends too early"),
        ("ALL && ERROR", 5, "unexpected '&'"),
        ("(ERROR | WARNING", 16, "missing ')'"),
        ("ERROR WARNING", 6, "unexpected 'WARNING'"),
        ("ERROR + WARNING", 6, "unexpected character '+'"),
        ("", 0, "empty expression"),
        ("256", 0, "bits outside ALL"),
        ("ERROR)", 5, "unexpected ')'"),
    ],
)
def test_parse_errors_point_at_the_token(text: str, position: int, fragment: str) -> None:
    """A bad mask raises ConfigurationError (a ValueError) locating the bad token."""
    with pytest.raises(ConfigurationError) as info:
        Severity.parse(text)
    assert isinstance(info.value, ValueError)
    assert position == info.value.position
    assert fragment in str(info.value)
    assert text == info.value.text


def test_coerce_rejects_other_types() -> None:
    """Only Severity, str and int are masks."""
    with pytest.raises(ConfigurationError):
        Severity.coerce(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.DEBUG, S.DEBUG),
        (5, S.DEBUG),
        (logging.INFO, S.INFO),
        (25, S.NOTICE),
        (logging.WARNING, S.WARNING),
        (35, S.WARNING),
        (logging.ERROR, S.ERROR),
        (logging.CRITICAL, S.CRITICAL),
        (60, S.CRITICAL),
    ],
)
def test_logging_levels_map_to_severities(level: int, expected: Severity) -> None:
    """Logging levels fall into the band at or below them."""
    assert expected == Severity.from_logging_level(level)


# -- hypothesis: the grammar agrees with Python's own bit algebra --------------

masks = st.integers(min_value=0, max_value=int(S.ALL)).map(Severity)


@st.composite
def expressions(draw: st.DrawFn, depth: int = 3) -> tuple[str, int]:
    """A random mask expression and its value computed by Python."""
    if depth == 0 or draw(st.booleans()):
        choice = draw(st.sampled_from([*SINGLES, S.ALL, S.NONE]))
        spelling = draw(st.sampled_from(["name", "php", "int", "lower"]))
        name = choice.name or "NONE"
        if spelling == "php" and name in ("ALL", "NOTICE", "DEPRECATED", "WARNING", "ERROR"):
            text = f"E_{name}"
        elif spelling == "int":
            text = str(int(choice))
        elif spelling == "lower":
            text = name.lower()
        else:
            text = name
        return text, int(choice)
    op = draw(st.sampled_from(["~", "&", "|", "^", "()"]))
    left_text, left = draw(expressions(depth=depth - 1))
    if op == "~":
        return f"~({left_text})", ~left & int(S.ALL)
    if op == "()":
        return f"({left_text})", left
    right_text, right = draw(expressions(depth=depth - 1))
    value = {"&": left & right, "|": left | right, "^": (left ^ right) & int(S.ALL)}[op]
    return f"({left_text}) {op} ({right_text})", value


@given(expressions())
def test_parse_agrees_with_python(expr: tuple[str, int]) -> None:
    """Any parenthesised expression evaluates as Python evaluates the same bits."""
    text, value = expr
    assert Severity(value) == Severity.parse(text)


@given(masks)
def test_describe_round_trips(mask: Severity) -> None:
    """describe() spells a mask so that parse() reads it back."""
    assert mask == Severity.parse(mask.describe())


@given(masks, masks)
def test_and_not_clears_and_xor_toggles(a: Severity, b: Severity) -> None:
    """`a & ~b` never contains b's bits; `a ^ b` differs from a exactly on b's bits."""
    cleared = Severity.parse(f"{int(a)} & ~{int(b)}")
    toggled = Severity.parse(f"{int(a)} ^ {int(b)}")
    assert S.NONE == cleared & b
    assert b == toggled ^ a


@given(st.text(max_size=30))
def test_parse_never_fails_with_anything_but_configuration_error(text: str) -> None:
    """Arbitrary text either parses to a mask within ALL or raises ConfigurationError."""
    error: ConfigurationError | None = None
    try:
        value = Severity.parse(text)
    except ConfigurationError as e:
        error = e
    if error is not None:
        assert error.position is not None
        assert 0 <= error.position <= len(text)
    else:
        assert S.NONE == value & ~S.ALL
