"""Session data as JSON: what may be stored, checked so that it comes back the same.

JSON alone would store ``{1: 2}`` as ``{"1": 2}``, merge ``{True: 1, "true": 2}`` into
one key, turn a tuple into a list, and fail with RecursionError on a deep nest. Keys
that are not str, NaN and too deep a nest are refused here with
:class:`SessionDataError` naming the path to the bad value, before any I/O; a tuple,
set, frozenset, datetime, date, time, UUID, Decimal or bytes is stored in tagged JSON
(:mod:`._tagged`) and comes back as it was. The check is one walk (:func:`walk`) with
one function per kind of value (``_CHECKS``), which returns the JSON to store. Every
save and every record read pays it, so the C speedups first try ``plain_json``: a
dict of exact JSON types within the depth is accepted at C speed and needs no tags
(unless one of its one-key dicts has a key starting with a space, which the walk then
escapes: the JSON text tells, ``{" `` appears nowhere else). A record read is checked
by :func:`check_payload` without building the data: ``plain_payload`` scans the JSON
in C, and only what it is unsure of, or what holds tags, is parsed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

from ._errors import SessionDataError
from ._native import speedups
from ._tagged import CONTAINER_TAGS, DICT_TAG, LEAF_DECODERS, LEAF_ENCODERS, Unstorable, is_tag

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


def _check_dict(value: dict[Any, Any], path: _Path, depth: int) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        if not isinstance(key, str):
            # JSON would store the key as a str: it would not come back, or would
            # merge with another key ({True: 1, "true": 2}).
            raise _refuse(
                path,
                f"a key must be str, not {type(key).__name__} ({key!r}): JSON would "
                f"store it as a str",
            )
        out[key] = _check(item, (*path, key), depth + 1)
    # The application's own dict that would read as a tag is escaped.
    return {DICT_TAG: out} if is_tag(out) else out


def _check_list(value: list[Any], path: _Path, depth: int) -> list[Any]:
    return [_check(item, (*path, index), depth + 1) for index, item in enumerate(value)]


def _check_container(value: tuple[Any, ...] | set[Any], path: _Path, depth: int) -> Any:
    kind = tuple if isinstance(value, tuple) else set if isinstance(value, set) else frozenset
    items = [_check(item, (*path, index), depth + 1) for index, item in enumerate(value)]
    return {CONTAINER_TAGS[kind]: items}


def _check_float(value: float, path: _Path, depth: int) -> float:
    if not math.isfinite(value):
        raise _refuse(path, f"{value!r} has no JSON form")
    return value


def _check_int(value: int, path: _Path, depth: int) -> int:
    if value.bit_length() < 14_000:  # under 4,214 digits: always convertible
        return value
    try:
        str(value)  # Python refuses to convert ints of more than 4300 digits by default
    except ValueError as exc:
        raise _refuse(path, str(exc)) from None
    return value


def _leaf(value: object, path: _Path, depth: int) -> object:
    """str, bool and None: JSON holds them as they are."""
    return value


def _tagged_leaf(kind: type) -> Callable[[Any, _Path, int], Any]:
    tag, encode = LEAF_ENCODERS[kind]

    def check(value: Any, path: _Path, depth: int) -> Any:
        try:
            return {tag: encode(value)}
        except Unstorable as exc:
            raise _refuse(path, f"{type(value).__name__}: {exc}") from None

    return check


# Exact types first (the usual case, one dict lookup); subclasses that compare equal
# after the round trip (an IntEnum, an OrderedDict) are found by isinstance below, in
# this order (datetime before date, its base). Each returns the JSON to store.
_CHECKS: dict[type, Callable[[Any, _Path, int], Any]] = {
    dict: _check_dict,
    list: _check_list,
    str: _leaf,
    int: _check_int,
    float: _check_float,
    bool: _leaf,
    type(None): _leaf,
    **dict.fromkeys(CONTAINER_TAGS, _check_container),
    **{kind: _tagged_leaf(kind) for kind in LEAF_ENCODERS},
}


def _check(value: object, path: _Path, depth: int) -> Any:
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
    return check(value, path, depth)


_plain_json = None if speedups is None else speedups.plain_json
_plain_payload = None if speedups is None else speedups.plain_payload


def check_data(data: dict[str, Any]) -> None:
    """Raise :class:`SessionDataError` unless ``data`` comes back equal from tagged
    JSON: str keys, JSON values or tagged ones (no NaN, no object), at most
    :data:`MAX_DEPTH` deep."""
    if _plain_json is not None and _plain_json(data, MAX_DEPTH):
        return  # the usual case, at C speed
    walk(data)


def walk(data: dict[str, Any]) -> dict[str, Any]:
    """:func:`check_data` in Python: the reference, and the slow path that names the
    bad value's path. Returns the tagged JSON form of ``data``."""
    if not isinstance(data, dict):
        raise _refuse((), f"session data is a dict, not {type(data).__name__}")
    out: dict[str, Any] = _check(data, (), 1)
    return out


def dumps_data(data: dict[str, Any]) -> str:
    """Tagged JSON of the session data alone; :class:`SessionDataError` for data that
    would not come back the same."""
    if _plain_json is not None and _plain_json(data, MAX_DEPTH):
        text = _JSON.encode(data)
        if '{" ' not in text:  # no one-key dict of the application's reads as a tag
            return text
    return _JSON.encode(walk(data))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _decode(value: Any, path: _Path, depth: int) -> Any:
    """The value that tagged JSON ``value`` stands for; SessionDataError (a ValueError)
    naming the path of a bad tag, a bad key or too deep a nest."""
    if depth > MAX_DEPTH:
        raise _refuse(path, f"nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)")
    if isinstance(value, list):
        return [_decode(item, (*path, index), depth + 1) for index, item in enumerate(value)]
    if not isinstance(value, dict):
        _check(value, path, depth)  # a JSON leaf: a float or int within limits
        return value
    if not is_tag(value):
        return {key: _decode(item, (*path, key), depth + 1) for key, item in value.items()}
    [(tag, raw)] = value.items()
    if tag == DICT_TAG:
        if not isinstance(raw, dict):
            raise _refuse(path, f"bad dict: an object, not {type(raw).__name__}")
        return {key: _decode(item, (*path, key), depth + 1) for key, item in raw.items()}
    for kind, container_tag in CONTAINER_TAGS.items():
        if tag == container_tag:
            if not isinstance(raw, list):
                raise _refuse(path, f"bad {tag.strip()}: a list, not {type(raw).__name__}")
            items = [_decode(item, (*path, index), depth + 1) for index, item in enumerate(raw)]
            try:
                return kind(items)
            except TypeError as exc:  # a set of lists
                raise _refuse(path, f"bad {tag.strip()}: {exc}") from None
    decoder = LEAF_DECODERS.get(tag)
    if decoder is None:
        raise _refuse(path, f"unknown tag {tag!r}")
    try:
        return decoder(raw)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _refuse(path, f"bad {tag.strip()}: {exc}") from None


def load_data(payload: bytes) -> dict[str, Any]:
    """Parse stored session data; ValueError unless it is a JSON object that
    :func:`check_data` accepts (strict JSON: no NaN or Infinity), tags read back."""
    try:
        data = json.loads(payload, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    try:
        if b'{" ' in payload:  # tags (our JSON has no spaces between tokens)
            decoded: dict[str, Any] = _decode(data, (), 1)
            return decoded
        check_data(data)
    except SessionDataError as exc:
        raise ValueError(str(exc)) from None
    return data


def check_payload(payload: bytes) -> None:
    """ValueError unless :func:`load_data` would accept ``payload``; the JSON this
    store writes is scanned in C without building it (the data is parsed when the
    application reads the session, not twice). Tagged data is read here in full."""
    if _plain_payload is not None and b'{" ' not in payload and _plain_payload(payload, MAX_DEPTH):
        return
    load_data(payload)
