"""Severity flags and the mask grammar."""

from __future__ import annotations

import logging
import operator
import sys
from collections.abc import Callable
from functools import reduce
from typing import TypeVar

import pytest
from errpolicy import ConfigurationError, Severity, _grammar
from errpolicy._grammar import MAX_DEPTH, MAX_LENGTH
from hypothesis import given
from hypothesis import strategies as st

S = Severity
T = TypeVar("T")
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


def refusal(text: str) -> ConfigurationError | None:
    """The error parsing ``text`` raises, or None when it parses to a mask within ALL;
    any other exception propagates and fails the calling test."""
    error: ConfigurationError | None = None
    try:
        value = Severity.parse(text)
    except ConfigurationError as e:
        error = e
    if error is None:
        assert S.NONE == value & ~S.ALL
        return None
    assert text == error.text
    if len(text) > MAX_LENGTH:
        assert error.position is None
    else:
        assert error.position is not None
        assert 0 <= error.position <= len(text)
    return error


@given(st.text())
def test_parse_never_fails_with_anything_but_configuration_error(text: str) -> None:
    """Arbitrary text either parses to a mask within ALL or raises ConfigurationError."""
    refusal(text)


# Pieces of masks, good and bad: what a random mix of them must still not crash on.
PIECES = st.one_of(
    st.sampled_from(["(", ")", "~", "&", "|", "^", " ", "\t", "ALL", "notice", "E_ALL", "NOTIS"]),
    st.sampled_from(["0", "00", "010", "7", "127", "128", "0x7f", "0X0", "0x", "0x80", "_"]),
    st.sampled_from(["٣", "\u00a0", "\uff11"]),  # Arabic-Indic 3, no-break space, fullwidth 1
    st.integers(min_value=0).map(str),
    st.integers(min_value=0).map(hex),
    st.text(max_size=2),
)
REPEATS = st.builds(
    operator.mul,
    st.sampled_from(["(", ")", "~", "1", "0", "(~", "ALL|", " "]),
    st.integers(0, 1100),
)


@given(st.lists(st.one_of(PIECES, REPEATS), max_size=40).map("".join))
def test_mixed_pieces_parse_or_raise_configuration_error(text: str) -> None:
    """Long runs, deep nesting, huge and zero-led integers, non-ASCII digits: a mask
    or ConfigurationError, never RecursionError or a bare ValueError."""
    refusal(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("010", "integer 010 has a leading zero"),
        ("00", "integer 00 has a leading zero"),
        ("ALL & ~08", "integer 08 has a leading zero"),
        ("1" * 999, "bits outside ALL"),
        ("0x" + "f" * 990, "bits outside ALL"),
        ("٣", "unexpected character '٣'"),
        ("\uff11", "unexpected character '\uff11'"),
        ("ALL &\u00a0ERROR", "unexpected character '\\xa0'"),
        ("1" * 4301, "at most 1000 characters, this one has 4301"),
        ("~" * 5000, "at most 1000 characters, this one has 5000"),
        ("(" * 250 + "ALL" + ")" * 250, "more than 32 nested parentheses"),
    ],
    ids=lambda value: value if len(value) < 20 else f"{value[:8]}...{len(value)}",
)
def test_bad_input_raises_configuration_error(text: str, fragment: str) -> None:
    """What used to escape as ValueError or RecursionError, or parse, is refused."""
    error = refusal(text)
    assert error is not None
    assert fragment in error.reason


def test_zero_led_hexadecimal_is_fine() -> None:
    """Leading zeros after 0x are digits of a hexadecimal number, not octal."""
    assert S.ALL == Severity.parse("0x" + "0" * 900 + "7f")


def test_the_limits_are_exact() -> None:
    """MAX_DEPTH parentheses and MAX_LENGTH characters parse; one more is refused."""
    deepest = "(" * MAX_DEPTH + "ERROR" + ")" * MAX_DEPTH
    longest = "~" * (MAX_LENGTH - 3) + "ALL"
    assert (32, 1000) == (MAX_DEPTH, MAX_LENGTH)  # the numbers docs/policy-strings.md gives
    assert (S.ERROR, S.NONE) == (Severity.parse(deepest), Severity.parse(longest))
    too_deep = refusal("(" + deepest + ")")
    too_long = refusal(longest + " ")
    assert too_deep is not None
    assert too_long is not None
    assert (MAX_DEPTH, None) == (too_deep.position, too_long.position)


def test_a_megabyte_is_refused_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The length check comes first: the tokenizer never sees a 1 MB mask, and the
    message does not repeat it (the error keeps it in ``text``)."""

    def no_reading(self: object) -> None:
        raise AssertionError("the tokenizer ran")

    monkeypatch.setattr(_grammar._Mask, "tokens", no_reading)
    text = "ALL|" * 250_000 + "ALL"
    with pytest.raises(ConfigurationError) as info:
        Severity.parse(text)
    assert (text, None) == (info.value.text, info.value.position)
    assert "a severity mask is at most 1000 characters, this one has 1000003" == str(info.value)


def near_the_recursion_limit(headroom: int, call: Callable[[], T]) -> T:
    """``call()`` with only ``headroom`` frames left before RecursionError."""
    depth = 0
    frame = sys._getframe()
    while frame.f_back is not None:
        depth += 1
        frame = frame.f_back
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + headroom)
    try:
        return call()
    finally:
        sys.setrecursionlimit(previous)


def test_nesting_costs_no_stack() -> None:
    """The deepest and the longest masks parse with 30 frames to spare (a recursive
    descent needs four frames per parenthesis and one per ~)."""
    deepest = "(" * MAX_DEPTH + "~ERROR" + ")" * MAX_DEPTH
    negated = "~" * (MAX_LENGTH - 4) + "ALL"
    assert (S.ALL & ~S.ERROR, S.ALL) == near_the_recursion_limit(
        30, lambda: (Severity.parse(deepest), Severity.parse(negated))
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "integer -1 has bits outside ALL (127)"),
        (128, "integer 128 has bits outside ALL (127)"),
        (10**5000, "integer of 16610 bits has bits outside ALL (127)"),
    ],
    ids=["negative", "wide", "long"],
)
def test_coerce_refuses_integers_outside_all(value: int, message: str) -> None:
    """Negative, too wide and too long integers: ConfigurationError, never a bare ValueError."""
    with pytest.raises(ConfigurationError) as info:
        Severity.coerce(value)
    assert message == str(info.value)
