"""The signed record: JSON only, HMAC-SHA256 bound to its key, rotation, strict parsing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import ConfigurationError, SessionDataError
from errpolicy_memcache._envelope import EnvelopeError, Record, decode, encode, normalize_keys

KEY = b"k" * 32
OLD = b"o" * 32
SKEY = "errpolicy:session:" + "ab" * 32

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
session_data = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


def record(data: dict[str, object] | None = None, version: int = 7) -> Record:
    return Record.of(version, "w1", 1000.0, 1001.5, 1800, data)


@given(session_data)
def test_round_trip_keeps_the_data(data: dict[str, object]) -> None:
    """Whatever JSON holds comes back equal."""
    assert record(data) == decode(encode(record(data), SKEY, KEY), SKEY, [KEY])


def test_tombstone_round_trips() -> None:
    """A tombstone (data None) decodes as a tombstone."""
    assert decode(encode(record(None), SKEY, KEY), SKEY, [KEY]).tombstone


@given(session_data, st.data())
def test_any_flipped_byte_is_rejected(data: dict[str, object], draw: st.DataObject) -> None:
    """Changing any single byte of a record makes it fail verification."""
    blob = bytearray(encode(record(data), SKEY, KEY))
    index = draw.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= draw.draw(st.integers(1, 255))
    with pytest.raises(EnvelopeError):
        decode(bytes(blob), SKEY, [KEY])


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_envelope_error(blob: bytes) -> None:
    """Random bytes are rejected with EnvelopeError, never another exception."""
    with pytest.raises(EnvelopeError):
        decode(blob, SKEY, [KEY])


def test_a_record_moved_to_another_key_is_rejected() -> None:
    """The MAC covers the memcached key: a copy pasted under another session fails."""
    blob = encode(record({"user_id": 1}), SKEY, KEY)
    with pytest.raises(EnvelopeError, match="bad signature"):
        decode(blob, SKEY[:-2] + "cd", [KEY])


def test_an_old_key_still_verifies_during_rotation() -> None:
    """A record signed by a retired key verifies while that key is still listed."""
    blob = encode(record({"a": 1}), SKEY, OLD)
    assert {"a": 1} == decode(blob, SKEY, [KEY, OLD]).data


def test_a_removed_key_no_longer_verifies() -> None:
    """Once the old key is dropped from the list, its records are rejected."""
    blob = encode(record({"a": 1}), SKEY, OLD)
    with pytest.raises(EnvelopeError, match="bad signature"):
        decode(blob, SKEY, [KEY])


def test_a_signed_record_with_a_bad_header_is_rejected() -> None:
    """A correctly signed record whose header is inconsistent is not trusted."""
    import hmac
    import struct

    body = struct.pack(">QddIB8s", 1, 1.0, 1.0, 60, 2, b"x") + b"{}"
    mac = hmac.digest(KEY, b"errpolicy_memcache/2\x00" + SKEY.encode() + b"\x00" + body, "sha256")
    with pytest.raises(EnvelopeError, match="bad tombstone flag"):
        decode(b"EP2" + mac + body, SKEY, [KEY])


def test_pickle_is_never_interpreted() -> None:
    """A pickle payload is just an unknown format."""
    import pickle

    with pytest.raises(EnvelopeError, match="unknown format"):
        decode(pickle.dumps({"a": 1}), SKEY, [KEY])


@pytest.mark.parametrize(
    "data",
    [{1: "int key"}, {"c": 1j}, {"nan": math.nan}, {"obj": object()}],
    ids=["int-key", "complex", "nan", "object"],
)
def test_data_json_cannot_hold_is_a_typed_error(data: dict[object, object]) -> None:
    """Non-str keys, complex numbers, NaN and objects raise SessionDataError (a set is
    stored tagged: test_tagged_data.py)."""
    with pytest.raises(SessionDataError):
        encode(record(data), SKEY, KEY)  # type: ignore[arg-type]


def test_short_secret_keys_are_refused() -> None:
    """A key under 16 bytes is a configuration error."""
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        normalize_keys("short")


def test_a_list_of_keys_keeps_the_signer_first() -> None:
    """With several keys the first one signs."""
    assert (KEY, OLD) == normalize_keys([KEY.decode(), OLD])


@given(st.binary(min_size=1, max_size=200), st.text(max_size=80), st.binary(max_size=500))
def test_the_keyring_mac_is_hmac_sha256(key: bytes, storage_key: str, body: bytes) -> None:
    """The precomputed HMAC states give what the stdlib's HMAC gives, for keys shorter
    and longer than SHA-256's 64-byte block."""
    import hmac

    from errpolicy_memcache._envelope import _DOMAIN, Keyring

    skey = storage_key.encode("ascii", "replace").decode("ascii")
    message = _DOMAIN + skey.encode("ascii") + b"\x00" + body
    assert hmac.digest(key, message, "sha256") == Keyring([key]).mac(skey, body)


def test_the_keyring_verifies_with_any_key_and_signs_with_the_first() -> None:
    from errpolicy_memcache._envelope import Keyring

    ring = Keyring([KEY, OLD])
    by_old = Keyring([OLD]).mac(SKEY, b"body")
    assert (True, False, ring.mac(SKEY, b"body"), True) == (
        ring.verify(by_old, SKEY, b"body"),
        ring.verify(by_old, SKEY, b"other body"),
        Keyring([KEY]).mac(SKEY, b"body"),
        Keyring([KEY]).verify(ring.mac(SKEY, b"body"), SKEY, b"body"),
    )
