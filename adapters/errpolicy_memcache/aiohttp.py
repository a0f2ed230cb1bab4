"""An aiohttp-session storage on :class:`AsyncMemcacheSessionStore`, and a middleware
that answers ``503`` with ``Retry-After`` when the store cannot.

``aiohttp_session.setup(app, MemcacheStorage(store))``. The cookie holds the session id;
the data lives replicated and signed in memcached. When no replica can answer, loading
or saving raises (``errpolicy.PolicyViolation``, or ``SessionUnavailable`` under a
relaxed policy) instead of handing the handler an empty session;
:func:`unavailable_middleware`, placed before aiohttp-session's, turns that into a 503.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp_session import AbstractStorage, SessionData
from aiohttp_session import Session as AiohttpSession

from ._frameworks import STORE_DOWN, UNAVAILABLE_BODY, unavailable_headers
from ._ids import new_session_id
from ._session import Session

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._aio_store import AsyncMemcacheSessionStore

__all__ = ["MemcacheStorage", "unavailable_middleware"]


class MemcacheStorage(AbstractStorage):
    """aiohttp-session's storage over ``store``; the cookie options are
    :class:`aiohttp_session.AbstractStorage`'s. ``max_age`` is also the stored
    session's idle lifetime (None: the store's ``idle_ttl``)."""

    def __init__(self, store: AsyncMemcacheSessionStore, **cookie: Any) -> None:
        super().__init__(**cookie)
        self.store = store

    async def load_session(self, request: web.Request) -> AiohttpSession:
        """The session the cookie names, or a new one; raises when no replica answers."""
        sid = self.load_cookie(request)
        if sid is None:
            return AiohttpSession(None, data=None, new=True, max_age=self.max_age)
        stored = await self.store.start(sid)
        if stored.new:  # unknown, expired or logged out: never adopt the client's id
            return AiohttpSession(None, data=None, new=True, max_age=self.max_age)
        # A session another integration stored has no "created": it counts from now.
        created = stored.get("created", int(time.time()))
        data: SessionData = {"created": created, "session": dict(stored.get("session", {}))}
        return AiohttpSession(sid, data=data, new=False, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: AiohttpSession
    ) -> None:
        """Store a changed session; an emptied one is tombstoned and its cookie removed."""
        sid = session.identity
        if session.empty:
            if isinstance(sid, str):
                await self.store.delete(sid)
            self.save_cookie(response, "", max_age=session.max_age)
            return
        if not isinstance(sid, str):
            sid = new_session_id()
            session.set_new_identity(sid)
        stored = Session(sid, dict(self._get_session_data(session)))
        stored.modified = True
        await self.store.save(stored, ttl=session.max_age)
        self.save_cookie(response, sid, max_age=session.max_age)


def unavailable_middleware(retry_after: int = 5) -> Any:
    """An aiohttp middleware: a store that cannot answer becomes a ``503`` with
    ``Retry-After`` (never an empty session or a lost change). Put it first."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except STORE_DOWN:
            headers = dict(unavailable_headers(retry_after))
            del headers["Content-Length"]  # aiohttp sets it
            return web.Response(status=503, body=UNAVAILABLE_BODY, headers=headers)

    return middleware
