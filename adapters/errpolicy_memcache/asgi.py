"""ASGI middleware: a session from :class:`AsyncMemcacheSessionStore` for any ASGI app.

Pure ASGI (no framework imported), so Starlette, FastAPI, Litestar, Quart or a bare
ASGI callable can use it. The session is loaded before the app runs and stored when
the app starts its response (``http.response.start``), so a failure to store it can
still change the status and the cookie can still be set. When no replica can answer,
the client gets a clean ``503`` with ``Retry-After`` and the app is not called: never
an empty session. It is the WSGI middleware's contract (``errpolicy_memcache.wsgi``).

The session is put in ``scope["session"]``, where Starlette's ``request.session``
(and so FastAPI's) finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ._frameworks import (
    STORE_DOWN,
    UNAVAILABLE_BODY,
    CookieAction,
    CookieSettings,
    SaveErrors,
    parse_cookie,
    unavailable_headers,
)

if TYPE_CHECKING:
    from ._aio_store import AsyncMemcacheSessionStore
    from ._session import Session

__all__ = ["SCOPE_KEY", "STORE_SCOPE_KEY", "SessionMiddleware", "finish_session", "get_session"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope key under which the app finds the request's :class:`Session`.
SCOPE_KEY = "session"
#: The scope key under which the app finds the store (for ``regenerate`` on login).
STORE_SCOPE_KEY = "errpolicy.session_store"

_log = logging.getLogger("errpolicy_memcache.asgi")


def get_session(scope: Scope) -> Session:
    """The session :class:`SessionMiddleware` put in ``scope``; KeyError without one."""
    session: Session = scope[SCOPE_KEY]
    return session


async def finish_session(
    store: AsyncMemcacheSessionStore, session: Session, incoming: str | None
) -> CookieAction:
    """Store what the request did to ``session`` and say what to do with the cookie
    (the async twin of ``_frameworks.finish_session``, with the same rules): an emptied
    stored session is destroyed, a changed one saved, an unchanged one costs no write,
    an empty new one is not stored. Raises one of ``STORE_DOWN`` when the store cannot
    take the change."""
    if len(session) == 0 and session.modified and not session.new:
        await store.destroy(session)
        return CookieAction.DELETE if incoming is not None else CookieAction.KEEP
    if session.modified and len(session) > 0:
        await store.save(session)
        session.modified = False  # so a later change (while a body streams) can be noticed
    else:
        await store.release(session)
        if session.new:
            return CookieAction.DELETE if incoming is not None else CookieAction.KEEP
    return CookieAction.SET if session.id != incoming else CookieAction.KEEP


class SessionMiddleware:
    """Wrap an ASGI app so that every HTTP request has a session in ``scope["session"]``.

    - Before the app: ``await store.start(<cookie id>)``. If no replica could answer
      (the policy raised :class:`errpolicy.PolicyViolation`, or the store raised
      :class:`SessionUnavailable` under a relaxed policy), the answer is ``503`` with
      ``Retry-After`` and the app is not called.
    - When the app sends ``http.response.start``: a changed session is saved, an
      emptied one destroyed, and the cookie set or deleted only when needed. 5xx
      responses are not saved. If the save fails, ``save_errors`` decides: ``"503"``
      (default) replaces the response; ``"log"`` keeps it and logs the error.
    - Changes made after the response started are not saved; a warning says so.

    WebSocket connections get the session too (read-only: nothing is saved); one that
    cannot be loaded is closed with code 1013 ("try again later"). Other scopes pass.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: AsyncMemcacheSessionStore,
        *,
        cookie: CookieSettings | None = None,
        retry_after: int = 5,
        save_errors: SaveErrors = "503",
        scope_key: str = SCOPE_KEY,
    ) -> None:
        if save_errors not in ("503", "log"):
            raise ValueError(f'save_errors must be "503" or "log", not {save_errors!r}')
        self.app = app
        self.store = store
        self.cookie = cookie if cookie is not None else CookieSettings()
        self.retry_after = retry_after
        self.save_errors: SaveErrors = save_errors
        self.scope_key = scope_key

    def __repr__(self) -> str:
        return f"SessionMiddleware({self.app!r}, cookie={self.cookie.name!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = parse_cookie(_cookie_header(scope), self.cookie.name)
        try:
            session = await self.store.start(incoming)
        except STORE_DOWN as exc:
            _log.error("session store unavailable, answered 503 without calling the app: %s", exc)
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1013})
            else:
                await self._unavailable(send)
            return
        scope = dict(scope)
        scope[self.scope_key] = session
        scope[STORE_SCOPE_KEY] = self.store
        if kind == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                await self.store.release(session)
            return
        exchange = _Exchange(self, session, incoming, send)
        try:
            await self.app(scope, receive, exchange.send)
        finally:
            await self.store.release(session)
        if exchange.stored and session.modified:
            _log.warning("the session was changed after the response started; not saved")

    async def _unavailable(self, send: Send) -> None:
        headers = [
            (k.lower().encode(), v.encode()) for k, v in unavailable_headers(self.retry_after)
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})


class _Exchange:
    """One request's session bookkeeping between the app and the server."""

    def __init__(
        self, middleware: SessionMiddleware, session: Session, incoming: str | None, send: Send
    ) -> None:
        self.middleware = middleware
        self.session = session
        self.incoming = incoming
        self.server_send = send
        self.replaced = False  # a 503 went out instead of the app's response
        self.stored = False

    async def send(self, message: Message) -> None:
        if self.replaced:
            return  # the client has its 503: the app's response goes nowhere
        if message["type"] != "http.response.start":
            await self.server_send(message)
            return
        middleware = self.middleware
        if message.get("status", 200) >= 500:
            await middleware.store.release(self.session)
            await self.server_send(message)
            return
        try:
            action = await finish_session(middleware.store, self.session, self.incoming)
            self.stored = True
        except STORE_DOWN as exc:
            if middleware.save_errors == "503":
                _log.error("session store could not save, answered 503: %s", exc)
                self.replaced = True
                await middleware._unavailable(self.server_send)
                return
            _log.error("session store could not save; the change is lost: %s", exc)
            action = CookieAction.KEEP
        headers = list(message.get("headers", []))
        cookie = middleware.cookie
        if action is CookieAction.SET:
            headers.append((b"set-cookie", cookie.set_cookie(self.session.id).encode()))
        elif action is CookieAction.DELETE:
            headers.append((b"set-cookie", cookie.delete_cookie().encode()))
        if action is not CookieAction.KEEP or self.incoming is not None:
            headers.append((b"vary", b"Cookie"))
        await self.server_send({**message, "headers": headers})


def _cookie_header(scope: Scope) -> str | None:
    """The request's cookies as one header value (HTTP/2 may send several)."""
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"cookie"]
    return "; ".join(values) if values else None
