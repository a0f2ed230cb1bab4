"""Session data as JSON: what may be stored, checked so that it comes back the same.

JSON alone would store ``{1: 2}`` as ``{"1": 2}``, merge ``{True: 1, "true": 2}`` into
one key, turn a tuple into a list, and fail with RecursionError on a deep nest. Each is
refused here with :class:`SessionDataError` naming the path to the bad value, before
any I/O. The check is one walk (:func:`check_data`) with one function per kind of
value (``_CHECKS``), so that more kinds (a tagged form for datetime, UUID, ...) can
join later without touching the walk. Every save and every record read pays it, so
the C speedups first try ``plain_json``: a dict of exact JSON types within the depth
is accepted at C speed, anything else is left to the walk, which decides and names
the path (a C True always means the walk would accept the data too). A record read
is checked by :func:`check_payload` without building the data: ``plain_payload``
scans the JSON in C, and only what it is unsure of is parsed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

from ._errors import SessionDataError
from ._native import speedups

__all__ = ["MAX_DEPTH", "check_data", "check_payload", "dumps_data", "load_data", "path_of", "walk"]

#: How deeply session data may nest (the session's own dict is depth 1). Deeper data
#: is refused on save, and a stored record holding it is rejected on read.
MAX_DEPTH: Final = 32

# What json.dumps(separators=(",", ":"), allow_nan=False) builds on every call; it keeps
# no state between calls.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)

_Path = tuple[str | int, ...]


def path_of(path: _Path) -> str:
    """``session['cart'][3]``: where a value sits in the session."""
    return "session" + "".join(f"[{step!r}]" for step in path)


def _refuse(path: _Path, why: str) -> SessionDataError:
    return SessionDataError(f"{path_of(path)}: {why}", path)


def _check_dict(value: dict[Any, Any], path: _Path, depth: int) -> None:
    for key, item in value.items():
        if not isinstance(key, str):
            # JSON would store the key as a str: it would not come back, or would
            # merge with another key ({True: 1, "true": 2}).
            raise _refuse(
                path,
                f"a key must be str, not {type(key).__name__} ({key!r}): JSON would "
                f"store it as a str",
            )
        _check(item, (*path, key), depth + 1)


def _check_list(value: list[Any], path: _Path, depth: int) -> None:
    for index, item in enumerate(value):
        _check(item, (*path, index), depth + 1)


def _check_float(value: float, path: _Path, depth: int) -> None:
    if not math.isfinite(value):
        raise _refuse(path, f"{value!r} has no JSON form")


def _check_int(value: int, path: _Path, depth: int) -> None:
    if value.bit_length() < 14_000:  # under 4,214 digits: always convertible
        return
    try:
        str(value)  # Python refuses to convert ints of more than 4300 digits by default
    except ValueError as exc:
        raise _refuse(path, str(exc)) from None


def _leaf(value: object, path: _Path, depth: int) -> None:
    """str, bool and None: JSON holds them as they are."""


# Exact types first (the usual case, one dict lookup); subclasses that compare equal
# after the round trip (an IntEnum, an OrderedDict) are found by isinstance below.
_CHECKS: dict[type, Callable[[Any, _Path, int], None]] = {
    dict: _check_dict,
    list: _check_list,
    str: _leaf,
    int: _check_int,
    float: _check_float,
    bool: _leaf,
    type(None): _leaf,
}


def _check(value: object, path: _Path, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _refuse(path, f"nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)")
    check = _CHECKS.get(type(value))
    if check is None:
        for kind, found in _CHECKS.items():
            if isinstance(value, kind):
                check = found
                break
        else:
            raise _refuse(path, f"{type(value).__name__} has no JSON form that comes back the same")
    check(value, path, depth)


_plain_json = None if speedups is None else speedups.plain_json
_plain_payload = None if speedups is None else speedups.plain_payload


def check_data(data: dict[str, Any]) -> None:
    """Raise :class:`SessionDataError` unless ``data`` comes back equal from JSON:
    str keys, JSON values (no tuple, set, NaN, ...), at most :data:`MAX_DEPTH` deep."""
    if _plain_json is not None and _plain_json(data, MAX_DEPTH):
        return  # the usual case, at C speed
    walk(data)


def walk(data: dict[str, Any]) -> None:
    """:func:`check_data` in Python: the reference, and the slow path that names the
    bad value's path."""
    if not isinstance(data, dict):
        raise _refuse((), f"session data is a dict, not {type(data).__name__}")
    _check(data, (), 1)


def dumps_data(data: dict[str, Any]) -> str:
    """JSON of the session data alone, after :func:`check_data`."""
    check_data(data)
    return _JSON.encode(data)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_data(payload: bytes) -> dict[str, Any]:
    """Parse stored session data; ValueError unless it is a JSON object that
    :func:`check_data` accepts (strict JSON: no NaN or Infinity)."""
    try:
        data = json.loads(payload, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    try:
        check_data(data)
    except SessionDataError as exc:
        raise ValueError(str(exc)) from None
    return data


def check_payload(payload: bytes) -> None:
    """ValueError unless :func:`load_data` would accept ``payload``; the JSON this
    store writes is scanned in C without building it (the data is parsed when the
    application reads the session, not twice)."""
    if _plain_payload is not None and _plain_payload(payload, MAX_DEPTH):
        return
    load_data(payload)
