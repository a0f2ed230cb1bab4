"""Native async for the Django session engine: ``aload``, ``asave``, ``aexists``,
``adelete`` and ``acreate`` (and so Django's ``acycle_key`` and ``aflush``) over
:class:`AsyncMemcacheSessionStore`, instead of Django's fallbacks that run the sync
methods in a thread (``sync_to_async``).

The engine (``errpolicy_memcache.django.SessionStore``) mixes :class:`AsyncEngineMixin`
in; the rules are the sync methods' (no silent logout, ``UpdateError`` for a session
deleted meanwhile, ``CreateError`` for a taken key). The async store is built once per
process from the same settings as the sync one, and shares nothing with it but the
nodes: each keeps its own breakers.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.signals import setting_changed

from ._django_save import Saving
from ._frameworks import CONFIG_KEYS, STORE_DOWN, server_ttl

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._aio_store import AsyncMemcacheSessionStore
    from ._session import Session

__all__ = ["AsyncEngineMixin", "get_async_store", "reset_async_store"]

_store: AsyncMemcacheSessionStore | None = None
_store_lock = threading.Lock()


def get_async_store() -> AsyncMemcacheSessionStore:
    """The process's async store, built once from the ``ERRPOLICY_MEMCACHE_*`` settings."""
    global _store
    with _store_lock:
        if _store is None:
            from ._aio_store import AsyncMemcacheSessionStore

            servers = getattr(settings, "ERRPOLICY_MEMCACHE_SERVERS", None)
            if isinstance(servers, str):
                servers = [s.strip() for s in servers.split(",") if s.strip()]
            if not servers:
                raise ValueError("set ERRPOLICY_MEMCACHE_SERVERS to the memcached nodes")
            secret = getattr(settings, "ERRPOLICY_MEMCACHE_SECRET_KEY", None)
            options: dict[str, Any] = dict(
                getattr(settings, "ERRPOLICY_MEMCACHE_OPTIONS", None) or {}
            )
            options.pop("transport", None)  # the async store has its own
            replicas = getattr(settings, "ERRPOLICY_MEMCACHE_REPLICAS", None)
            if replicas is not None:
                options["replicas"] = int(replicas)
            _store = AsyncMemcacheSessionStore(
                list(servers), secret or settings.SECRET_KEY, **options
            )
        return _store


def reset_async_store() -> None:
    """Forget the async store (its probing stops); the next call builds it again."""
    global _store
    with _store_lock:
        store, _store = _store, None
    if store is not None:
        store._recovery.stop()  # the connections belong to their loops: dropped with them


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in CONFIG_KEYS or setting == "SECRET_KEY":
        reset_async_store()


setting_changed.connect(_on_setting_changed, dispatch_uid="errpolicy_memcache.django.aio")


class AsyncEngineMixin:
    """The async half of the Django engine; the class it is mixed into provides
    ``_session_for`` and the state (``_loaded``, ``unavailable``) of the sync half."""

    _session_key: str | None
    _loaded: Session | None
    unavailable: Exception | None
    modified: bool

    if TYPE_CHECKING:  # SessionBase's, and the sync half's

        @property
        def session_key(self) -> str | None: ...
        async def _aget_new_session_key(self) -> str: ...
        async def _aget_session(self, no_load: bool = False) -> dict[str, Any]: ...
        async def aget_expiry_age(self, **kwargs: Any) -> int: ...
        def _session_for(self, key: str, data: dict[str, Any], *, new: bool) -> Session: ...
        def _loaded_data(self, session: Session) -> dict[str, Any]: ...

    async def _aguarded(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except STORE_DOWN as exc:
            self.unavailable = exc
            raise

    async def aload(self) -> dict[str, Any]:
        """As ``load``: the stored data, or ``{}`` (and no key); raises when no replica
        could answer."""
        session: Session = await self._aguarded(get_async_store().start(self.session_key))
        return self._loaded_data(session)

    async def aexists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        found: bool = await self._aguarded(get_async_store().exists(session_key))
        return found

    async def acreate(self) -> None:
        for _ in range(10):
            self._session_key = await self._aget_new_session_key()
            try:
                await self.asave(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("could not create a new session key in ten attempts")

    async def asave(self, must_create: bool = False) -> None:
        """As ``save``: ``CreateError`` for a taken key with ``must_create``, else
        ``UpdateError`` for a session deleted meanwhile."""
        data = await self._aget_session(no_load=must_create)
        key = self.session_key
        if key is None:
            return await self.acreate()
        age = await self.aget_expiry_age()
        if age <= 0:
            # Expired before it was stored: deleted, as the sync save does.
            if not must_create:
                await self.adelete(key)
            return None
        if not must_create and not await self.aexists(key):
            raise UpdateError
        session = self._session_for(key, data, new=must_create)
        ttl = server_ttl(age)  # as long as Django says (at most 30 days)
        with Saving(self, session):
            await self._aguarded(get_async_store().save(session, must_create=must_create, ttl=ttl))
        return None

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        await self._aguarded(get_async_store().delete(session_key))
        if self._loaded is not None and self._loaded.id == session_key:
            self._loaded = None

    async def arelease(self) -> None:
        """Release the session's lock (``locking=True`` stores) if this request holds it."""
        if self._loaded is not None:
            await get_async_store().release(self._loaded)
