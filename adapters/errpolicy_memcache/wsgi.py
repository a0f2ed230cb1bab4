"""WSGI middleware: a session from :class:`MemcacheSessionStore` for any WSGI app.

The session is loaded before the app runs and stored when the app starts its response,
so a failure to store it can still change the status. When no replica can answer,
the client gets a clean ``503`` and the app is not called: never an empty session.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._frameworks import (
    STORE_DOWN,
    CookieAction,
    CookieSettings,
    SaveErrors,
    finish_session,
    parse_cookie,
)
from ._middleware import Glue

if TYPE_CHECKING:
    from types import TracebackType
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from errpolicy_memcache import MemcacheSessionStore, Session

__all__ = ["ENVIRON_KEY", "STORE_ENVIRON_KEY", "SessionMiddleware", "get_session"]

#: The ``environ`` key under which the app finds the request's :class:`Session`.
ENVIRON_KEY = "errpolicy.session"
#: The ``environ`` key under which the app finds the store (for ``regenerate`` on login).
STORE_ENVIRON_KEY = "errpolicy.session_store"

_log = logging.getLogger("errpolicy_memcache.wsgi")

_ExcInfo = tuple[type[BaseException], BaseException, "TracebackType"] | tuple[None, None, None]


def get_session(environ: WSGIEnvironment) -> Session:
    """The session :class:`SessionMiddleware` put in ``environ``; KeyError without one."""
    session: Session = environ[ENVIRON_KEY]
    return session


class SessionMiddleware(Glue["WSGIApplication", "MemcacheSessionStore"]):
    """Wrap a WSGI app so that every request has a session in ``environ[ENVIRON_KEY]``.

    - Before the app: ``store.start(<cookie id>)``. If no replica could answer (the
      policy raised :class:`errpolicy.PolicyViolation`, or the store raised
      :class:`SessionUnavailable` under a relaxed policy), the answer is ``503`` with
      ``Retry-After`` and the app is not called.
    - When the app calls ``start_response``: a changed session is saved, an emptied
      one destroyed, and the cookie set or deleted only when that is needed. Responses
      with a 5xx status are not saved (as in Django). If the save fails, ``save_errors``
      decides: ``"503"`` (default) replaces the response, since the client must not
      believe a change was kept that was not; ``"log"`` keeps the app's response.
    - Changes made after ``start_response`` (while a body streams) are not saved; a
      warning on the ``errpolicy_memcache.wsgi`` logger says so.
    """

    _log = _log

    def __init__(
        self,
        app: WSGIApplication,
        store: MemcacheSessionStore,
        *,
        cookie: CookieSettings | None = None,
        retry_after: int = 5,
        save_errors: SaveErrors = "503",
        environ_key: str = ENVIRON_KEY,
    ) -> None:
        super().__init__(
            app, store, cookie=cookie, retry_after=retry_after, save_errors=save_errors
        )
        self.environ_key = environ_key

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        incoming = parse_cookie(environ.get("HTTP_COOKIE"), self.cookie.name)
        try:
            session = self.store.start(incoming)
        except STORE_DOWN as exc:
            text, headers = self.refused(exc, stage="load", incoming=incoming)
            start_response("503 Service Unavailable", headers)
            return [text]
        environ[self.environ_key] = session
        environ[STORE_ENVIRON_KEY] = self.store
        exchange = _Exchange(self, session, incoming, start_response)
        try:
            body = self.app(environ, exchange.start_response)
        except BaseException:
            self.store.release(session)
            raise
        return _Response(exchange, body)


class _Exchange:
    """One request's session bookkeeping between the app and the server."""

    def __init__(
        self,
        middleware: SessionMiddleware,
        session: Session,
        incoming: str | None,
        start_response: StartResponse,
    ) -> None:
        self.middleware = middleware
        self.session = session
        self.incoming = incoming
        self.server_start_response = start_response
        self.started = False
        self.replaced: bytes | None = None  # the 503 body that replaced the app's
        self.stored = False  # the session was stored as it was at start_response

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: _ExcInfo | None = None,
        /,
    ) -> Any:
        if exc_info is not None and exc_info[0] is not None and self.started:
            # PEP 3333: the headers are gone, so the error goes to the server.
            return self.server_start_response(status, headers, exc_info)
        self.started = True
        middleware = self.middleware
        if status[:1] == "5":
            middleware.store.release(self.session)
            return self.server_start_response(status, headers, exc_info)
        try:
            action = finish_session(middleware.store, self.session, self.incoming)
            self.stored = True
        except STORE_DOWN as exc:
            replaced = middleware.save_failed(exc, self.incoming)
            if replaced is not None:
                self.replaced, refused = replaced
                return self.server_start_response("503 Service Unavailable", refused, exc_info)
            action = CookieAction.KEEP
        headers = list(headers)
        headers += middleware.cookie_headers(action, self.session.id, self.incoming)
        return self.server_start_response(status, headers, exc_info)


class _Response:
    """The app's body, replaced by the 503 body when the save failed; closes the app's."""

    def __init__(self, exchange: _Exchange, body: Iterable[bytes]) -> None:
        self.exchange = exchange
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        # A generator app calls start_response on its first step, so the save (and its
        # failure) can happen while this loop runs: look again after every chunk.
        for chunk in self.body:
            if self.exchange.replaced is not None:
                break
            yield chunk
        if self.exchange.replaced is not None:
            yield self.exchange.replaced

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            exchange = self.exchange
            exchange.middleware.store.release(exchange.session)
            if exchange.stored and exchange.session.modified:
                _log.warning(
                    "the session was changed after start_response; that change was not saved"
                )
