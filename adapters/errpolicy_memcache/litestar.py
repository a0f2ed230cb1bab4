"""A Litestar :class:`~litestar.stores.base.Store` on :class:`AsyncMemcacheSessionStore`.

For Litestar's server-side sessions (``ServerSideSessionConfig``): each value is kept
as one replicated, signed session, so a node's failure is a failover, and no replica
answering raises instead of reading as a missing value (a logout). ``expires_in``
is answered from the signed record, which carries when it was written and for how
long (memcached itself cannot tell a key's expiry).

Litestar's keys are any strings; each is mapped to a session id of the store's shape
by SHA-256, so a key stays as unguessable as Litestar made it.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING

from litestar.stores.base import Store

from ._session import Session

if TYPE_CHECKING:
    from ._aio_store import AsyncMemcacheSessionStore

__all__ = ["MemcacheStore"]

_FIELD = "v"  # the value, as latin-1 text: a JSON string that round-trips every byte


def _sid(key: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _seconds(expires_in: int | timedelta | None) -> int | None:
    if isinstance(expires_in, timedelta):
        return max(int(expires_in.total_seconds()), 1)
    return expires_in


class MemcacheStore(Store):
    """A Litestar store whose values live in ``store`` (``delete_all`` is not offered:
    memcached cannot list a prefix's keys)."""

    __slots__ = ("store",)

    def __init__(self, store: AsyncMemcacheSessionStore) -> None:
        self.store = store

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        """Store ``value`` under ``key`` for ``expires_in`` seconds (None: the store's
        ``idle_ttl``)."""
        data = value.encode("utf-8") if isinstance(value, str) else value
        session = Session(_sid(key), {_FIELD: data.decode("latin-1")})
        session.modified = True
        await self.store.save(session, ttl=_seconds(expires_in))

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        """The value under ``key``, or None; ``renew_for`` writes it again for that long."""
        session = await self.store.start(_sid(key))
        if session.new:
            return None
        value: str = session[_FIELD]
        if renew_for is not None:
            session.modified = True
            await self.store.save(session, ttl=_seconds(renew_for))
        return value.encode("latin-1")

    async def delete(self, key: str) -> None:
        """Tombstone ``key``'s value (a node that was down cannot bring it back)."""
        await self.store.delete(_sid(key))

    async def delete_all(self) -> None:
        """Not offered: memcached cannot list the keys of one store."""
        raise NotImplementedError("memcached cannot list a store's keys; delete them one by one")

    async def exists(self, key: str) -> bool:
        """True if ``key`` holds a live value."""
        return await self.store.exists(_sid(key))

    async def expires_in(self, key: str) -> int | None:
        """Seconds until ``key``'s value expires, from its signed record; None if absent
        (see :meth:`AsyncMemcacheSessionStore.expires_in`)."""
        return await self.store.expires_in(_sid(key))
