"""The stored record: versioned JSON signed with HMAC-SHA256, bound to its memcached key.

Layout: ``b"EP2"``, the 32-byte HMAC-SHA256, a fixed 37-byte header (version, created,
written, ttl, tombstone flag, writer id; :mod:`struct`, so a read parses no JSON to
compare versions), then the session data as JSON. The MAC covers a domain tag, the
memcached key, the header and the data, so a record copied under
another key fails verification. The first key signs; every key verifies (rotation),
compared with :func:`hmac.compare_digest`. Never pickle: a record that is not exactly
this shape is rejected, not interpreted.

A valid MAC is not enough: a leaked key, or a bug in another version, can sign any
fields. :func:`decode` checks every one against what this store could have written
(versions with room to grow, timestamps and TTLs within the store's limits, data that
:mod:`._data` accepts), and rejects the record as it rejects a bad MAC.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from . import _data
from ._data import dumps_data
from ._errors import ConfigurationError
from ._native import speedups

__all__ = [
    "MAX_TIMESTAMP",
    "MAX_TTL",
    "MAX_VERSION",
    "EnvelopeError",
    "Keyring",
    "Record",
    "decode",
    "dumps_data",
    "encode",
    "load_data",
    "normalize_keys",
]

_MAGIC = b"EP2"
_MAC_SIZE = 32
_HEADER = struct.Struct(">QddIB8s")
_BODY_AT = len(_MAGIC) + _MAC_SIZE
_DOMAIN = b"errpolicy_memcache/2\x00"
_MIN_KEY_BYTES = 16

#: The highest version a record may carry: half the header's 64 bits, so a process
#: that adopts it as the floor of its next versions still has 2**63 saves to go.
MAX_VERSION: Final = 2**63
#: The latest timestamp a record may carry (year 2242): any real clock is far below.
MAX_TIMESTAMP: Final = float(2**33)
#: The longest TTL a record may carry: memcached's longest relative expiry (30 days),
#: the most any option of the store allows.
MAX_TTL: Final = 30 * 24 * 3600


class EnvelopeError(ValueError):
    """A stored record failed verification or decoding; ``reason`` says which check."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Record(NamedTuple):
    """One stored copy of a session, or a tombstone (``payload`` None).

    ``payload`` is the session data as JSON bytes, parsed only when the data is used
    (:attr:`data`): a read that only needs versions never pays for the data. A named
    tuple: immutable, and cheaper to make than a frozen dataclass (one per read).
    """

    version: int
    writer: str
    created: float
    written: float
    ttl: int
    payload: bytes | None

    @classmethod
    def of(
        cls,
        version: int,
        writer: str,
        created: float,
        written: float,
        ttl: int,
        data: dict[str, Any] | None,
    ) -> Record:
        """A record holding ``data`` (None: a tombstone); raises SessionDataError for non-JSON."""
        payload = None if data is None else dumps_data(data).encode("utf-8")
        return cls(version, writer, created, written, ttl, payload)

    @property
    def tombstone(self) -> bool:
        """True for the marker that destroy and regenerate leave behind."""
        return self.payload is None

    @property
    def order(self) -> tuple[bool, int, str]:
        """Sort key: a tombstone beats any live copy (ids are never reused, so a destroyed
        session stays destroyed whatever the clocks say); then the newest version wins,
        and the writer id breaks exact ties."""
        return (self.payload is None, self.version, self.writer)

    @property
    def data(self) -> dict[str, Any] | None:
        """The session data (parsed on each call), None for a tombstone."""
        return None if self.payload is None else load_data(self.payload)


def load_data(payload: bytes) -> dict[str, Any]:
    """Parse a verified payload; :class:`EnvelopeError` unless it is session data
    (a JSON object that :func:`._data.check_data` accepts)."""
    try:
        return _data.load_data(payload)
    except ValueError as exc:
        raise EnvelopeError(f"bad data: {exc}") from exc


def normalize_keys(secret_key: str | bytes | Sequence[str | bytes]) -> tuple[bytes, ...]:
    """Turn the ``secret_key`` option into a non-empty tuple of byte keys, signer first."""
    raw: list[str | bytes] = (
        [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
    )
    if not raw:
        raise ConfigurationError("secret_key: give at least one key")
    keys: list[bytes] = []
    for item in raw:
        if not isinstance(item, str | bytes):
            raise ConfigurationError(f"secret_key: keys are str or bytes, not {type(item)!r}")
        key = item.encode() if isinstance(item, str) else bytes(item)
        if len(key) < _MIN_KEY_BYTES:
            raise ConfigurationError(
                f"secret_key: each key needs at least {_MIN_KEY_BYTES} bytes "
                f"(use secrets.token_hex(32)); got {len(key)}"
            )
        keys.append(key)
    return tuple(keys)


_BLOCK = 64  # SHA-256's block size, the HMAC key's padded length (RFC 2104)
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class Keyring:
    """The secret keys, the first signing and every one verifying (rotation).

    HMAC-SHA256 (RFC 2104) on :mod:`hashlib`, each key's inner and outer hash states
    (with the domain tag) computed once: a MAC is then two copies and three updates,
    half of what ``hmac.digest`` costs per call (it sets the key up every time); every
    record read and written pays it. Equal to ``hmac.digest(key, domain + message,
    "sha256")``, which the tests check.
    """

    __slots__ = ("_states", "signer")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("secret_key: give at least one key")
        states = []
        for key in keys:
            if len(key) > _BLOCK:
                key = hashlib.sha256(key).digest()
            key = key.ljust(_BLOCK, b"\x00")
            inner = hashlib.sha256(key.translate(_INNER_PAD))
            inner.update(_DOMAIN)
            states.append((inner, hashlib.sha256(key.translate(_OUTER_PAD))))
        self._states = tuple(states)
        #: The first key's (inner, outer) states: what signs (``encode``).
        self.signer = states[0]

    def mac(self, storage_key: str, body: bytes, index: int = 0) -> bytes:
        """The MAC of ``body`` under ``storage_key`` with key ``index`` (0: the signer)."""
        inner, outer = self._states[index]
        h = inner.copy()
        h.update(storage_key.encode("ascii") + b"\x00")
        h.update(body)
        o = outer.copy()
        o.update(h.digest())
        return o.digest()

    def verify(self, mac: bytes, storage_key: str, body: bytes) -> bool:
        """True if one of the keys (tried in order) made ``mac``; constant-time compares."""
        for index in range(len(self._states)):  # a loop: any() costs more on every read
            if hmac.compare_digest(mac, self.mac(storage_key, body, index)):
                return True
        return False


def _keyring(keys: Keyring | Sequence[bytes]) -> Keyring:
    return keys if isinstance(keys, Keyring) else Keyring(keys)


# The usual record is sealed in one C call (the twin below is the reference).
_seal = speedups.seal if speedups is not None else None


def encode(record: Record, storage_key: str, keys: Keyring | bytes) -> bytes:
    """Serialize and sign ``record`` for ``storage_key`` (with the keyring's first key)."""
    signer = keys if isinstance(keys, Keyring) else Keyring([keys])
    if _seal is not None:
        sealed: bytes | None = _seal(*signer.signer, storage_key, *record)
        if sealed is not None:
            return sealed
    return _encode(record, storage_key, signer)


def _encode(record: Record, storage_key: str, signer: Keyring) -> bytes:
    """:func:`encode` in Python: the reference, and the judge of any unusual field."""
    writer = record.writer.encode("ascii")
    if len(writer) > 8:
        raise ValueError(f"writer ids have at most 8 ASCII characters, not {record.writer!r}")
    for t in (record.created, record.written):
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"timestamps are finite and >= 0, not {t!r}")
    head = _HEADER.pack(
        record.version,
        record.created,
        record.written,
        record.ttl,
        1 if record.payload is None else 0,
        writer,
    )
    body = head + (record.payload or b"")
    return _MAGIC + signer.mac(storage_key, body) + body


def decode(blob: bytes, storage_key: str, keys: Keyring | Sequence[bytes]) -> Record:
    """Verify a stored record and check every field; :class:`EnvelopeError` if anything
    is off (``reason`` says what).

    The data is checked (scanned in C where the speedups are built, else parsed) and
    kept as JSON bytes until :attr:`Record.data`.
    """
    if blob[:3] != _MAGIC:
        raise EnvelopeError("unknown format")
    if len(blob) < _BODY_AT + _HEADER.size:
        raise EnvelopeError("truncated")
    body = blob[_BODY_AT:]
    if not _keyring(keys).verify(blob[3:_BODY_AT], storage_key, body):
        raise EnvelopeError("bad signature")
    version, created, written, ttl, tombstone, writer = _HEADER.unpack_from(body)
    if not 0 < version <= MAX_VERSION:
        raise EnvelopeError("bad version")
    # Chained comparisons: NaN fails every one of them.
    if not (0.0 <= created <= MAX_TIMESTAMP and 0.0 <= written <= MAX_TIMESTAMP):
        raise EnvelopeError("bad timestamps")
    if ttl > MAX_TTL:
        raise EnvelopeError("bad ttl")
    if tombstone:
        if tombstone != 1 or len(body) != _HEADER.size:
            raise EnvelopeError("bad tombstone flag")
        payload = None
    else:
        payload = body[_HEADER.size :]
        try:
            _data.check_payload(payload)
        except ValueError as exc:
            raise EnvelopeError(f"bad data: {exc}") from exc
    try:
        writer_id = writer.rstrip(b"\x00").decode("ascii")
    except UnicodeDecodeError:
        raise EnvelopeError("bad writer") from None
    return Record(version, writer_id, created, written, ttl, payload)
