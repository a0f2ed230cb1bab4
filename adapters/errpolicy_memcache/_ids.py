"""Session ids: generation, validation before any I/O, and the memcached key derived from one."""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = ["SESSION_ID_LENGTH", "is_valid_session_id", "new_session_id", "storage_key"]

#: ``secrets.token_urlsafe(32)``: 32 random bytes (256 bits) as 43 url-safe base64 characters.
SESSION_ID_LENGTH = 43
_ID_BYTES = 32
_ID_RE = re.compile(rf"[A-Za-z0-9_-]{{{SESSION_ID_LENGTH}}}", re.ASCII)


def new_session_id() -> str:
    """Return a fresh session id with 256 bits from :mod:`secrets`."""
    return secrets.token_urlsafe(_ID_BYTES)


def is_valid_session_id(sid: object) -> bool:
    """True if ``sid`` has exactly the shape :func:`new_session_id` produces.

    Checked before any I/O: a str of 43 characters from ``[A-Za-z0-9_-]``. Anything else
    (None, bytes, CR/LF, spaces, non-ASCII, 10 kB strings) is refused cheaply.
    """
    return type(sid) is str and len(sid) == SESSION_ID_LENGTH and _ID_RE.fullmatch(sid) is not None


def storage_key(prefix: str, sid: str) -> str:
    """The memcached key of a session: ``prefix`` + hex SHA-256 of the id.

    The raw id never reaches the server (nor ``stats cachedump``), and the key's charset
    and length are fixed whatever the id.
    """
    return prefix + hashlib.sha256(sid.encode("ascii")).hexdigest()
