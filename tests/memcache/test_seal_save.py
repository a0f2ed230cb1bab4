"""The save's record and command made in one C call (``seal_save``) against the twin:
``new_record`` then ``store_command`` (``_envelope.encode`` and ``_wire.set_``/``add``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from errpolicy_memcache import _native, _sealed
from errpolicy_memcache._envelope import Keyring, Record
from errpolicy_memcache._wire import Command, add, set_

from .test_sealed import KEYS, keys_st, odd_fields, records, twin

speedups = _native.speedups
needs_c = pytest.mark.skipif(speedups is None, reason="the C speedups are not built here")
expiries = st.integers(min_value=0, max_value=2**31 - 1)


def twin_save(
    keys: Keyring, key: str, record: Record, expiry: int, must_create: bool
) -> tuple[Record, Command] | type[Exception]:
    """What the Python path makes: the record and its command, or its error's type."""
    blob = twin(record, key, keys)
    if not isinstance(blob, bytes):
        return blob
    return record, (add if must_create else set_)(key, blob, expiry)


def c_save(key: str, record: Record, expiry: Any, name: str = "set") -> Any:
    assert speedups is not None
    return speedups.seal_save(
        Record, Command, name, _sealed._READ_STORE, expiry, *KEYS.signer, key, *record
    )


@needs_c
@given(records, keys_st, st.booleans(), expiries)
@example(Record(1, "w", 0.0, 0.0, 0, b""), "k", False, 0)
@example(Record(2**64 - 1, "12345678", 1.5, 2.5, 2**32 - 1, b"{}"), "k" * 250, True, 2**31 - 1)
@example(Record(9, "w", 1.0, 1.0, 10, b"x" * 99), "k", False, 9)
@example(Record(10, "w", 1.0, 1.0, 10, b"x" * 100), "k", True, 10)
def test_seal_save_makes_what_the_twin_makes(
    record: Record, key: str, must_create: bool, expiry: int
) -> None:
    """Every record the twin signs, C makes the same record and command, with their types."""
    made = c_save(key, record, expiry, "add" if must_create else "set")
    expected = twin_save(KEYS, key, record, expiry, must_create)
    if not isinstance(expected, tuple):
        assert made is None  # the twin raises its own error
        return
    assert expected == made
    assert (Record, Command) == (type(made[0]), type(made[1]))
    assert made[1].read is _sealed._READ_STORE


@needs_c
@given(records, keys_st, st.integers(min_value=0, max_value=5), odd_fields)
def test_seal_save_leaves_odd_fields_to_the_twin(
    record: Record, key: str, field: int, value: object
) -> None:
    """A field encode() would refuse or convert gives None."""
    odd = Record._make(value if i == field else v for i, v in enumerate(record))
    made = c_save(key, odd, 60)
    expected = twin_save(KEYS, key, odd, 60, False)
    if made is not None:  # the odd value happened to be a usual one (0.5, "ab"...)
        assert expected == made
    assert isinstance(expected, tuple) or made is None


@needs_c
@pytest.mark.parametrize("expiry", [-1, 2**31, 2**70, 1.5, "60", None, True])
def test_seal_save_leaves_an_odd_expiry_to_the_twin(expiry: object) -> None:
    """An expiry that is not an int in 0..2**31-1 gives None."""
    assert c_save("key", Record(1, "w", 1.0, 1.0, 60, b"{}"), expiry) is None


@needs_c
@pytest.mark.parametrize(
    ("types", "name"),
    [((Record, Command), "get"), ((Record, Command), b"set"), ((dict, Command), "set")],
)
def test_seal_save_refuses_bad_arguments(types: tuple[type, type], name: object) -> None:
    """A name other than set or add, or a type that is no tuple, raises TypeError."""
    assert speedups is not None
    record = Record(1, "w", 1.0, 1.0, 60, b"{}")
    with pytest.raises(TypeError):
        speedups.seal_save(*types, name, _sealed._READ_STORE, 60, *KEYS.signer, "key", *record)
    with pytest.raises(TypeError):
        speedups.seal_save(Record, Command, "set", _sealed._READ_STORE, 60, *KEYS.signer)


@given(records, keys_st, st.booleans(), st.integers(min_value=1, max_value=30 * 24 * 3600))
def test_save_command_is_new_record_then_store_command(
    record: Record, key: str, must_create: bool, expiry: int
) -> None:
    """``save_command`` (C or, with ERRPOLICY_PURE_PYTHON=1, the twin) equals the Python path."""
    expected = twin_save(KEYS, key, record, expiry, must_create)
    if not isinstance(expected, tuple):
        with pytest.raises(expected):
            _sealed.save_command(KEYS, key, *record, expiry, must_create)
        return
    made = _sealed.save_command(KEYS, key, *record, expiry, must_create)
    assert expected == made
    assert (Record, Command) == (type(made[0]), type(made[1]))
