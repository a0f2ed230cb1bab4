"""The save's record sealed in C (``seal``, ``seal_store``) against its Python twin.

``_envelope.encode`` and ``_wire.set_`` / ``add`` are the reference: the C functions
must give the same bytes for every record, and leave to the twin (None) every field
it would refuse or convert, so that the twin raises its own error.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import _native, _sealed
from errpolicy_memcache._envelope import Keyring, Record, _encode, decode, encode
from errpolicy_memcache._wire import add, set_

speedups = _native.speedups
needs_c = pytest.mark.skipif(speedups is None, reason="the C speedups are not built here")

KEYS = Keyring([b"k" * 32, b"old-key-0123456789"])
LONG = Keyring([b"x" * 100])  # over SHA-256's block: hashed first (RFC 2104)

keys_st = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=250)
times = st.floats(min_value=0.0, max_value=2.0**33, allow_nan=False)
records = st.builds(
    Record,
    version=st.integers(min_value=1, max_value=2**64 - 1),
    writer=st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=8),
    created=times,
    written=times,
    ttl=st.integers(min_value=0, max_value=2**32 - 1),
    payload=st.none() | st.binary(max_size=5000),
)
# Fields a record should not carry: C must leave each to the twin.
odd_fields: Any = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=2**64),
    st.floats(),
    st.just(True),
    st.text(max_size=12),
    st.binary(max_size=4),
    st.none(),
)


def twin(record: Record, key: str, keys: Keyring) -> bytes | type[Exception]:
    """What the Python encode gives for ``record``: its bytes or its error's type."""
    try:
        return _encode(record, key, keys)
    except Exception as exc:  # the error's type is the answer
        return type(exc)


@needs_c
@given(records, keys_st)
def test_seal_gives_the_bytes_encode_gives(record: Record, key: str) -> None:
    """Every record the twin encodes, C seals to the same bytes."""
    assert speedups is not None
    expected = twin(record, key, KEYS)
    sealed = speedups.seal(*KEYS.signer, key, *record)
    assert expected == (type(expected) if sealed is None else sealed)
    assert sealed is not None or not isinstance(expected, bytes)


@needs_c
@given(records, keys_st)
def test_seal_signs_with_a_long_key_as_hmac_does(record: Record, key: str) -> None:
    """A key over 64 bytes is hashed first, in C as in the twin."""
    assert speedups is not None
    sealed = speedups.seal(*LONG.signer, key, *record)
    assert twin(record, key, LONG) == sealed


@needs_c
@given(records, keys_st, st.integers(min_value=0, max_value=5), odd_fields)
def test_seal_leaves_odd_fields_to_the_twin(
    record: Record, key: str, field: int, value: object
) -> None:
    """A field encode() would refuse or convert gives None (the twin raises its own error)."""
    assert speedups is not None
    odd = Record._make(value if i == field else v for i, v in enumerate(record))
    sealed = speedups.seal(*KEYS.signer, key, *odd)
    expected = twin(odd, key, KEYS)
    if sealed is not None:  # the odd value happened to be a usual one (0.5, "ab"...)
        assert expected == sealed
    assert isinstance(expected, bytes) or sealed is None


@needs_c
def test_seal_leaves_a_key_that_is_not_ascii_to_the_twin() -> None:
    """A storage key with a non-ASCII character is the twin's to refuse."""
    assert speedups is not None
    record = Record(1, "w", 1.0, 1.0, 60, b"{}")
    assert (None, UnicodeEncodeError) == (
        speedups.seal(*KEYS.signer, "k\u00e9y", *record),
        twin(record, "k\u00e9y", KEYS),
    )


@needs_c
@given(records, keys_st, st.booleans(), st.integers(min_value=0, max_value=2**31 - 1))
def test_seal_store_gives_the_request_set_and_add_give(
    record: Record, key: str, must_create: bool, expiry: int
) -> None:
    """``seal_store`` is ``encode`` then ``set_``/``add``: the same blob and request."""
    assert speedups is not None
    blob = twin(record, key, KEYS)
    verb = b"add" if must_create else b"set"
    sealed = speedups.seal_store(verb, expiry, *KEYS.signer, key, *record)
    if not isinstance(blob, bytes):
        assert sealed is None
        return
    command = (add if must_create else set_)(key, blob, expiry)
    assert (blob, command.request) == sealed


@needs_c
@pytest.mark.parametrize("expiry", [-1, 2**31, 2**70, 1.5, "60", None])
def test_seal_store_leaves_an_odd_expiry_to_the_twin(expiry: object) -> None:
    """An expiry that is not an int in 0..2**31-1 gives None."""
    assert speedups is not None
    record = Record(1, "w", 1.0, 1.0, 60, b"{}")
    assert speedups.seal_store(b"set", expiry, *KEYS.signer, "key", *record) is None


@needs_c
def test_seal_refuses_bad_arguments() -> None:
    """Wrong argument counts, a non-bytes verb and hash states that are not hashes raise."""
    assert speedups is not None
    record = Record(1, "w", 1.0, 1.0, 60, b"{}")
    with pytest.raises(TypeError):
        speedups.seal(*KEYS.signer, "key")
    with pytest.raises(TypeError):
        speedups.seal_store("set", 60, *KEYS.signer, "key", *record)
    with pytest.raises(AttributeError):
        speedups.seal(object(), object(), "key", *record)
    md5 = (hashlib.md5(), hashlib.md5())
    with pytest.raises(TypeError, match="32-byte"):
        speedups.seal(*md5, "key", *record)


@given(records, keys_st, st.booleans(), st.integers(min_value=1, max_value=30 * 24 * 3600))
def test_store_command_is_encode_then_set_or_add(
    record: Record, key: str, must_create: bool, expiry: int
) -> None:
    """The save's command (C or twin) equals the Python path's, field by field."""
    blob = twin(record, key, KEYS)
    if not isinstance(blob, bytes):
        with pytest.raises(blob):
            _sealed.store_command(KEYS, key, record, expiry, must_create)
        return
    command = _sealed.store_command(KEYS, key, record, expiry, must_create)
    assert (add if must_create else set_)(key, blob, expiry) == command
    assert type(command).__name__ == "Command"


@given(records, keys_st)
def test_a_sealed_record_decodes_to_itself(record: Record, key: str) -> None:
    """What encode seals (in C where built) verifies and decodes back, when decodable."""
    blob = encode(record, key, KEYS)
    if record.payload is None and 0 < record.version <= 2**63 and record.ttl <= 30 * 86400:
        back = decode(blob, key, KEYS)
        assert record._replace(writer=record.writer.rstrip("\x00")) == back


def test_new_record_is_a_record() -> None:
    """``new_record`` makes the same named tuple as ``Record(...)``."""
    fields = (3, "w", 1.0, 2.0, 60, b"{}")
    made = _sealed.new_record(fields)
    assert (Record(*fields), Record) == (made, type(made))
    assert math.isclose(2.0, made.written)
