"""The parser of severity masks: one left-to-right pass, no recursion.

Precedence follows PHP (and C): ``~`` binds tightest, then ``&``, then ``^``,
then ``|``. ``^`` is exclusive or, so ``E_ALL ^ E_NOTICE`` clears NOTICE from
ALL but would *set* it in a mask that lacked it; ``& ~`` always clears.

Masks come from configuration files and the environment, so the parser takes any
string: it refuses one longer than :data:`MAX_LENGTH` before reading it, nests at
most :data:`MAX_DEPTH` parentheses, reads only ASCII, and works in time linear in
the length (operator precedence with explicit stacks, no call per nesting level).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ._errors import ConfigurationError

#: The longest mask read, in characters. Real masks are under a hundred.
MAX_LENGTH = 1000
#: The deepest nesting of parentheses read.
MAX_DEPTH = 32

# One token (or a run of whitespace) at a position. re.ASCII: "٣" is no digit here.
_TOKEN = re.compile(
    r"(?P<space>[ \t\r\n\f\v]+)"
    r"|(?P<hex>0[xX][0-9a-fA-F]+)"
    r"|(?P<int>[0-9]+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>[~&|^()])",
    re.ASCII,
)
_BINDING = {"|": 1, "^": 2, "&": 3}

_Token = tuple[str, str, int]  # kind, text, position


class _Mask:
    __slots__ = ("all_bits", "names", "text")

    def __init__(self, text: str, names: Mapping[str, int], all_bits: int) -> None:
        self.text = text
        self.names = names
        self.all_bits = all_bits

    def error(self, message: str, position: int) -> ConfigurationError:
        return ConfigurationError(
            f"{message} in severity mask {self.text!r} at position {position}",
            text=self.text,
            position=position,
        )

    def tokens(self) -> list[_Token]:
        text = self.text
        found: list[_Token] = []
        at = 0
        while at < len(text):
            m = _TOKEN.match(text, at)
            if m is None:
                raise self.error(f"unexpected character {text[at]!r}", at)
            kind = m.lastgroup or "op"
            if kind != "space":
                found.append((kind, m.group(), at))
            at = m.end()
        found.append(("end", "", len(text)))
        return found

    def operand(self, kind: str, text: str, at: int) -> int:
        if kind == "name":
            try:
                return self.names[text.upper()]
            except KeyError:
                raise self.error(f"unknown severity {text!r}", at) from None
        if kind == "int" and len(text) > 1 and text[0] == "0":
            # PHP would read 010 as octal 8, Python refuses it: neither guess is safe.
            raise self.error(f"integer {text} has a leading zero", at)
        # Compare digit counts first: int() of a long string is slow, or refused.
        digits, base, widest = (
            (text[2:].lstrip("0"), 16, f"{self.all_bits:x}")
            if kind == "hex"
            else (text, 10, str(self.all_bits))
        )
        value = int(digits or "0", base) if len(digits) <= len(widest) else -1
        if value < 0 or value & ~self.all_bits:
            raise self.error(f"integer {text} has bits outside ALL ({self.all_bits})", at)
        return value

    def evaluate(self) -> int:
        """The mask's value, by operator precedence over two stacks."""
        tokens = self.tokens()
        if tokens[0][0] == "end":
            raise self.error("empty expression", 0)
        values: list[int] = []
        # Pending operators: "~", "(" (with where it opened) or a binary operator.
        pending: list[_Token] = []
        depth = 0

        def reduce_binary(below: int) -> None:
            """Apply the pending binary operators that bind at least as tight as ``below``."""
            while pending and pending[-1][1] in _BINDING and _BINDING[pending[-1][1]] >= below:
                op = pending.pop()[1]
                right = values.pop()
                left = values.pop()
                if op == "|":
                    values.append(left | right)
                elif op == "^":
                    values.append((left ^ right) & self.all_bits)
                else:
                    values.append(left & right)

        def push(value: int) -> None:
            """An operand is complete: apply the ``~`` written right before it."""
            while pending and pending[-1][1] == "~":
                pending.pop()
                value = ~value & self.all_bits
            values.append(value)

        want_operand = True
        for kind, text, at in tokens:
            if want_operand:
                if kind == "op" and text == "~":
                    pending.append((kind, text, at))
                elif kind == "op" and text == "(":
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise self.error(f"more than {MAX_DEPTH} nested parentheses", at)
                    pending.append((kind, text, at))
                elif kind in ("name", "int", "hex"):
                    push(self.operand(kind, text, at))
                    want_operand = False
                elif kind == "end":
                    raise self.error("expression ends too early", at)
                else:
                    raise self.error(f"unexpected {text!r}", at)
            elif kind == "op" and text in _BINDING:
                reduce_binary(_BINDING[text])
                pending.append((kind, text, at))
                want_operand = True
            elif kind == "op" and text == ")":
                reduce_binary(0)
                if not pending:
                    raise self.error("unexpected ')'", at)
                pending.pop()  # the "(": only "(" can be below the binary operators here
                depth -= 1
                push(values.pop())
            elif kind == "end":
                reduce_binary(0)
                if pending:
                    raise self.error("missing ')'", at)
            elif depth:
                raise self.error(f"expected ')', got {text!r}", at)
            else:
                raise self.error(f"unexpected {text!r}", at)
        (value,) = values
        return value


def parse_mask(text: str, names: Mapping[str, int], all_bits: int) -> int:
    """Evaluate the mask expression ``text``; names come from ``names``."""
    if not isinstance(text, str):
        raise ConfigurationError(f"a severity mask must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        # Refused before it is read; the message leaves out the text, the error keeps it.
        raise ConfigurationError(
            f"a severity mask is at most {MAX_LENGTH} characters, this one has {len(text)}",
            text=text,
        )
    return _Mask(text, names, all_bits).evaluate()
