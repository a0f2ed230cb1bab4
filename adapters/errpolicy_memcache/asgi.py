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
    CookieAction,
    CookieSettings,
    Ending,
    SaveErrors,
    ending,
    parse_cookie,
)
from ._middleware import Glue

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
    (the async twin of ``_frameworks.finish_session``: the same decision,
    ``_frameworks.ending``). Raises one of ``STORE_DOWN`` when the store cannot take
    the change."""
    step, action = ending(session, incoming)
    if step is Ending.DESTROY:
        await store.destroy(session)
    elif step is Ending.SAVE:
        await store.save(session)
        session.modified = False  # so a later change (while a body streams) can be noticed
    else:
        await store.release(session)
    return action


class SessionMiddleware(Glue[ASGIApp, "AsyncMemcacheSessionStore"]):
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

    _log = _log

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
        super().__init__(
            app, store, cookie=cookie, retry_after=retry_after, save_errors=save_errors
        )
        self.scope_key = scope_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = parse_cookie(_cookie_header(scope), self.cookie.name)
        try:
            session = await self.store.start(incoming)
        except STORE_DOWN as exc:
            body, headers = self.refused(exc, stage="load", incoming=incoming)
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1013})
            else:
                await _unavailable(send, body, headers)
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
            replaced = middleware.save_failed(exc, self.incoming)
            if replaced is not None:
                self.replaced = True
                await _unavailable(self.server_send, *replaced)
                return
            action = CookieAction.KEEP
        headers = list(message.get("headers", []))
        headers += _encoded(middleware.cookie_headers(action, self.session.id, self.incoming))
        await self.server_send({**message, "headers": headers})


async def _unavailable(send: Send, body: bytes, headers: list[tuple[str, str]]) -> None:
    """Send the 503 (``Glue.refused``) as an ASGI response."""
    await send({"type": "http.response.start", "status": 503, "headers": _encoded(headers)})
    await send({"type": "http.response.body", "body": body})


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _cookie_header(scope: Scope) -> str | None:
    """The request's cookies as one header value (HTTP/2 may send several)."""
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"cookie"]
    return "; ".join(values) if values else None
