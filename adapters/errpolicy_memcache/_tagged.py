"""Tagged JSON: the values JSON cannot hold, stored as one-key objects naming their type.

``{" datetime": "2026-11-30T14:52:59+00:00"}`` is that datetime, ``{" tuple": [1, 2]}``
the tuple ``(1, 2)``. A tag starts with a space, which no tag-free JSON key needs to
start a one-key object with: the application's own one-key dict whose key starts with
a space is escaped as ``{" dict": {...}}``, so it is never read as a tag. Never pickle:
a tag names one of the fixed types below, its value is checked when read, and anything
else (an unknown tag, a bad value) is a :class:`ValueError` naming the tag.

This module holds the leaf types (their text forms); the walk in :mod:`._data` holds
the containers (tuple, set, frozenset, the escaped dict), since their items are walked.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "CONTAINER_TAGS",
    "DICT_TAG",
    "LEAF_DECODERS",
    "LEAF_ENCODERS",
    "TAG_START",
    "Unstorable",
    "is_tag",
]

#: Every tag starts with it.
TAG_START: Final = " "
#: The escape of the application's own one-key dict whose key starts with a space.
DICT_TAG: Final = " dict"
#: Containers whose items are walked: the tag, and the type built from the item list.
CONTAINER_TAGS: Final[dict[type, str]] = {tuple: " tuple", set: " set", frozenset: " frozenset"}


def is_tag(obj: dict[str, Any]) -> bool:
    """True for a one-key object whose key starts with :data:`TAG_START`."""
    return len(obj) == 1 and next(iter(obj)).startswith(TAG_START)


class Unstorable(TypeError):
    """A value of a tagged type that still has no stored form (an unknown tzinfo)."""


def _zone(value: dt.datetime | dt.time) -> tuple[str, str | None]:
    """The ISO text and the zone key that bring ``value`` back with its tzinfo."""
    tz = value.tzinfo
    if tz is None or type(tz) is dt.timezone:
        return value.isoformat(), None  # a fixed offset is part of the ISO text
    if type(tz) is zoneinfo.ZoneInfo and isinstance(value, dt.datetime) and tz.key:
        return value.replace(tzinfo=None).isoformat(), tz.key
    raise Unstorable(
        f"its tzinfo {type(tz).__name__} has no stored form: use datetime.timezone "
        f"or zoneinfo.ZoneInfo (datetimes only)"
    )


def _encode_datetime(value: dt.datetime) -> Any:
    text, zone = _zone(value)
    return text if zone is None and value.fold == 0 else [text, zone, value.fold]


def _encode_time(value: dt.time) -> Any:
    text, _ = _zone(value)
    return text if value.fold == 0 else [text, None, value.fold]


#: Leaf types: the tag and the JSON value that brings the value back.
LEAF_ENCODERS: Final[dict[type, tuple[str, Callable[[Any], Any]]]] = {
    dt.datetime: (" datetime", _encode_datetime),
    dt.date: (" date", dt.date.isoformat),
    dt.time: (" time", _encode_time),
    uuid.UUID: (" uuid", str),
    decimal.Decimal: (" decimal", str),
    bytes: (" bytes", lambda value: base64.b64encode(value).decode("ascii")),
}


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"a str, not {type(raw).__name__}")
    return raw


def _zoned(raw: Any) -> tuple[str, str | None, int]:
    if isinstance(raw, str):
        return raw, None, 0
    if (
        isinstance(raw, list)
        and len(raw) == 3
        and isinstance(raw[0], str)
        and (raw[1] is None or isinstance(raw[1], str))
        and raw[2] in (0, 1)
        and type(raw[2]) is int
    ):
        return raw[0], raw[1], raw[2]
    raise ValueError("an ISO str or [ISO str, zone or null, fold]")


def _decode_datetime(raw: Any) -> dt.datetime:
    text, zone, fold = _zoned(raw)
    value = dt.datetime.fromisoformat(text)
    if zone is not None:
        if value.tzinfo is not None:
            raise ValueError("a zone with an offset")
        try:
            value = value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown zone {zone!r}") from exc
    return value.replace(fold=fold)


def _decode_time(raw: Any) -> dt.time:
    text, zone, fold = _zoned(raw)
    if zone is not None:
        raise ValueError("a time with a zone")
    return dt.time.fromisoformat(text).replace(fold=fold)


def _decode_decimal(raw: Any) -> decimal.Decimal:
    try:
        return decimal.Decimal(_text(raw))
    except decimal.InvalidOperation:
        raise ValueError(f"not a decimal: {raw!r}") from None


def _decode_bytes(raw: Any) -> bytes:
    try:
        return base64.b64decode(_text(raw), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None


#: The tag of each leaf type and the function that reads its value back (ValueError).
LEAF_DECODERS: Final[dict[str, Callable[[Any], Any]]] = {
    " datetime": _decode_datetime,
    " date": lambda raw: dt.date.fromisoformat(_text(raw)),
    " time": _decode_time,
    " uuid": lambda raw: uuid.UUID(_text(raw)),
    " decimal": _decode_decimal,
    " bytes": _decode_bytes,
}
