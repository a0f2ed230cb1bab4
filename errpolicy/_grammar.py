"""A small recursive-descent parser for severity masks.

Precedence follows PHP (and C): ``~`` binds tightest, then ``&``, then ``^``,
then ``|``. ``^`` is exclusive or, so ``E_ALL ^ E_NOTICE`` clears NOTICE from
ALL but would *set* it in a mask that lacked it; ``& ~`` always clears.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ._errors import ConfigurationError

_Step = Callable[[], int]
_Combine = Callable[[int, int], int]

_TOKEN = re.compile(
    r"\s*(?:(?P<int>0[xX][0-9a-fA-F]+|\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[~&|^()]))"
)


class _Parser:
    __slots__ = ("all_bits", "names", "pos", "text", "tokens")

    def __init__(self, text: str, names: Mapping[str, int], all_bits: int) -> None:
        self.text = text
        self.names = names
        self.all_bits = all_bits
        self.tokens = self._tokenize()
        self.pos = 0

    def _tokenize(self) -> list[tuple[str, str, int]]:
        tokens: list[tuple[str, str, int]] = []
        at = 0
        text = self.text
        while at < len(text):
            if text[at:].strip() == "":
                break
            m = _TOKEN.match(text, at)
            if m is None or m.end() == at:
                start = at + (len(text[at:]) - len(text[at:].lstrip()))
                raise self._error(f"unexpected character {text[start]!r}", start)
            kind = m.lastgroup or "op"
            tokens.append((kind, m.group(kind), m.start(kind)))
            at = m.end()
        tokens.append(("end", "", len(text)))
        return tokens

    def _error(self, message: str, position: int) -> ConfigurationError:
        return ConfigurationError(
            f"{message} in severity mask {self.text!r} at position {position}",
            text=self.text,
            position=position,
        )

    def _peek(self) -> tuple[str, str, int]:
        return self.tokens[self.pos]

    def _take(self) -> tuple[str, str, int]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> int:
        if self._peek()[0] == "end":
            raise self._error("empty expression", 0)
        value = self._or()
        kind, text, at = self._peek()
        if kind != "end":
            raise self._error(f"unexpected {text!r}", at)
        return value

    def _binary(self, op: str, operand: _Step, combine: _Combine) -> int:
        value = operand()
        while self._peek()[:2] == ("op", op):
            self._take()
            value = combine(value, operand())
        return value

    def _or(self) -> int:
        return self._binary("|", self._xor, lambda a, b: a | b)

    def _xor(self) -> int:
        return self._binary("^", self._and, lambda a, b: (a ^ b) & self.all_bits)

    def _and(self) -> int:
        return self._binary("&", self._unary, lambda a, b: a & b)

    def _unary(self) -> int:
        kind, text, at = self._take()
        if kind == "op" and text == "~":
            return ~self._unary() & self.all_bits
        if kind == "op" and text == "(":
            value = self._or()
            kind, text, at = self._take()
            if (kind, text) != ("op", ")"):
                raise self._error(
                    "missing ')'" if kind == "end" else f"expected ')', got {text!r}", at
                )
            return value
        if kind == "name":
            try:
                return self.names[text.upper()]
            except KeyError:
                raise self._error(f"unknown severity {text!r}", at) from None
        if kind == "int":
            value = int(text, 0)
            if value & ~self.all_bits:
                raise self._error(f"integer {text} has bits outside ALL ({self.all_bits})", at)
            return value
        if kind == "end":
            raise self._error("expression ends too early", at)
        raise self._error(f"unexpected {text!r}", at)


def parse_mask(text: str, names: Mapping[str, int], all_bits: int) -> int:
    """Evaluate the mask expression ``text``; names come from ``names``."""
    if not isinstance(text, str):
        raise ConfigurationError(f"a severity mask must be a string, not {type(text).__name__}")
    return _Parser(text, names, all_bits).parse()
