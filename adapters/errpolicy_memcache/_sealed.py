"""The usual save's signed record and the store command that writes it, in one C call.

:func:`store_command` gives what :func:`._envelope.encode` followed by
:func:`._wire.set_` (or ``add``) gives, byte for byte: the C speedups' ``seal_store``
signs the record and builds the request at once, and the Python twin (those two calls)
stays the reference, deciding any field C leaves to it. :func:`new_record` and
:func:`new_acked` make a :class:`._envelope.Record` and a :class:`._core.Acked` without
the named tuple's Python ``__new__`` (one of each per save).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from ._core import Acked
from ._envelope import Keyring, Record, encode
from ._native import speedups
from ._wire import Command, add, set_

__all__ = ["new_acked", "new_record", "save_command", "store_command"]

_T = TypeVar("_T", bound=tuple[Any, ...])


def _maker(cls: type[_T]) -> Callable[[tuple[Any, ...]], _T]:
    """``cls`` made from a tuple of every field, in C (``tuple.__new__``)."""
    return cast("Callable[[tuple[Any, ...]], _T]", functools.partial(tuple.__new__, cls))


#: A :class:`Record` from ``(version, writer, created, written, ttl, payload)``.
new_record: Final = _maker(Record)
#: An :class:`Acked` from ``(version, tombstone, holders, at)``.
new_acked: Final = _maker(Acked)
_new_command = _maker(Command)
_READ_STORE: Final = set_("k", b"", 0).read  # the store commands' reply reader
_seal_store = speedups.seal_store if speedups is not None else None
_seal_save = speedups.seal_save if speedups is not None else None


def store_command(
    keys: Keyring, key: str, record: Record, expiry: int, must_create: bool
) -> Command:
    """The ``set`` (``add`` with ``must_create``) of ``record`` signed for ``key``,
    expiring after ``expiry`` seconds; the signed bytes are its ``value``."""
    if _seal_store is not None:
        verb = b"add" if must_create else b"set"
        sealed = _seal_store(verb, expiry, *keys.signer, key, *record)
        if sealed is not None:
            blob, request = sealed
            name = "add" if must_create else "set"
            return _new_command((name, key, request, _READ_STORE, blob, expiry, None))
    return (add if must_create else set_)(key, encode(record, key, keys), expiry)


def save_command(
    keys: Keyring,
    key: str,
    version: int,
    writer: str,
    created: float,
    written: float,
    ttl: int,
    payload: bytes | None,
    expiry: int,
    must_create: bool,
) -> tuple[Record, Command]:
    """The save's :class:`Record` of these fields and :func:`store_command`'s command
    for it, both made in one C call (``seal_save``) where it can: what
    :func:`new_record` then :func:`store_command` give (the twin, deciding any field C
    leaves to it)."""
    name = "add" if must_create else "set"
    if _seal_save is not None:
        inner, outer = keys.signer
        made = _seal_save(
            Record, Command, name, _READ_STORE, expiry, inner, outer, key,
            version, writer, created, written, ttl, payload,
        )  # fmt: skip
        if made is not None:
            return made  # type: ignore[no-any-return]
    record = new_record((version, writer, created, written, ttl, payload))
    return record, store_command(keys, key, record, expiry, must_create)
