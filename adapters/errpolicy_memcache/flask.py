"""Flask integration: a :class:`flask.sessions.SessionInterface` on the memcache store.

``init_app(app)`` is the one call most apps need: it installs the interface and turns
an unreachable store into a ``503`` with ``Retry-After``, before any view runs.
The store comes from ``app.config`` (``ERRPOLICY_MEMCACHE_*``) unless one is given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.exceptions import ServiceUnavailable

from ._frameworks import (
    STORE_DOWN,
    UNAVAILABLE_BODY,
    CookieAction,
    SaveErrors,
    finish_session,
    save_errors_from_config,
    server_ttl,
    store_from_config,
    unavailable_headers,
)
from ._refusal import log_refusal

if TYPE_CHECKING:
    from errpolicy_memcache import MemcacheSessionStore, Session

__all__ = [
    "FlaskSession",
    "MemcacheSessionInterface",
    "SessionStoreUnavailable",
    "UnavailableSession",
    "init_app",
    "regenerate_session",
    "unavailable_response",
]

_EXTENSION = "errpolicy_memcache"
_UNAVAILABLE = "errpolicy_memcache.unavailable"  # the environ key of a failed load
_log = logging.getLogger("errpolicy_memcache.flask")


class FlaskSession(SessionMixin):
    """Flask's view of a store :class:`Session`: the same mapping, plus ``permanent``.

    ``accessed`` is set by every read or write (Flask 3.1.3 also sets it whenever the
    ``session`` proxy is used): the response then varies on ``Cookie``.
    """

    def __init__(self, inner: Session, incoming: str | None) -> None:
        self.inner = inner
        self.incoming = incoming
        self.accessed = False

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return self.inner[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = True
        self.inner[key] = value

    def __delitem__(self, key: str) -> None:
        self.accessed = True
        del self.inner[key]

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return iter(self.inner)

    def __len__(self) -> int:
        self.accessed = True
        return len(self.inner)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return key in self.inner

    def __repr__(self) -> str:
        return f"<FlaskSession new={self.new} keys={sorted(self.inner)!r}>"

    @property
    def id(self) -> str:
        """The session id (the cookie's value)."""
        return self.inner.id

    @property
    def new(self) -> bool:
        """True when no stored session was found (or the client sent none)."""
        return self.inner.new

    @new.setter
    def new(self, value: bool) -> None:
        self.inner.new = value

    @property
    def modified(self) -> bool:
        """Set by assignment; set it yourself after changing a nested value."""
        return self.inner.modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self.inner.modified = value


class UnavailableSession(SessionMixin):
    """Stands in when the store could not load the session: every access raises.

    So code that reaches the session anyway gets the original error
    (:class:`errpolicy.PolicyViolation`), never an empty session.
    """

    modified = False

    def __init__(self, error: Exception) -> None:
        self.error = error

    def _raise(self, *args: object) -> NoReturn:
        raise self.error

    __getitem__ = __setitem__ = __delitem__ = _raise

    def __iter__(self) -> Iterator[str]:
        self._raise()

    def __len__(self) -> int:
        self._raise()

    def __repr__(self) -> str:
        return "<UnavailableSession>"


class MemcacheSessionInterface(SessionInterface):
    """Sessions kept in :class:`MemcacheSessionStore`, cookie settings from ``app.config``.

    Cookie: ``SESSION_COOKIE_NAME``, ``_DOMAIN``, ``_PATH``, ``_HTTPONLY``, ``_SECURE``,
    ``_SAMESITE``, ``_PARTITIONED``, ``PERMANENT_SESSION_LIFETIME`` as in Flask.
    A save that fails (:class:`errpolicy.PolicyViolation`) turns the response into a
    ``503`` unless ``save_errors="log"`` (or ``ERRPOLICY_SESSION_SAVE_ERRORS = "log"``).
    """

    def __init__(
        self,
        store: MemcacheSessionStore | None = None,
        *,
        retry_after: int | None = None,
        save_errors: SaveErrors | None = None,
    ) -> None:
        self.store = store
        self.retry_after = retry_after
        self.save_errors = save_errors

    def get_store(self, app: Flask) -> MemcacheSessionStore:
        """The store given, else the one built once from ``app.config``."""
        if self.store is not None:
            return self.store
        store: MemcacheSessionStore | None = app.extensions.get(_EXTENSION)
        if store is None:
            store = store_from_config(app.config.get, app.secret_key)
            app.extensions[_EXTENSION] = store
        return store

    def get_retry_after(self, app: Flask) -> int:
        """Seconds in ``Retry-After``: the argument, ``ERRPOLICY_SESSION_RETRY_AFTER``, or 5."""
        if self.retry_after is not None:
            return self.retry_after
        return int(app.config.get("ERRPOLICY_SESSION_RETRY_AFTER") or 5)

    def get_session_ttl(self, app: Flask, session: SessionMixin) -> int | None:
        """How long the stored session lives without a request: a permanent session as
        long as its cookie (``PERMANENT_SESSION_LIFETIME``, at most memcached's 30 days),
        a browser session the store's ``idle_ttl`` (None)."""
        if not session.permanent:
            return None
        return server_ttl(app.permanent_session_lifetime.total_seconds())

    def open_session(self, app: Flask, request: Request) -> SessionMixin:
        incoming = request.cookies.get(self.get_cookie_name(app)) or None
        try:
            inner = self.get_store(app).start(incoming)
        except STORE_DOWN as exc:
            # Where init_app's hook finds it without touching the session (which
            # would mark it accessed, so every response would vary on Cookie).
            request.environ[_UNAVAILABLE] = exc
            return UnavailableSession(exc)
        return FlaskSession(inner, incoming)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession):
            return
        accessed = session.accessed  # what the view did, before this method reads it too
        store = self.get_store(app)
        if response.status_code >= 500:
            store.release(session.inner)
            return
        session.inner.ttl = self.get_session_ttl(app, session)
        try:
            action = finish_session(store, session.inner, session.incoming)
        except STORE_DOWN as exc:
            save_errors = self.save_errors or save_errors_from_config(
                app.config.get("ERRPOLICY_SESSION_SAVE_ERRORS")
            )
            if save_errors == "503":
                refusal = log_refusal(
                    _log, exc, stage="save", had_cookie=session.incoming is not None
                )
                _make_unavailable(response, self.get_retry_after(app), refusal.body())
                return
            _log.error("session store could not save; the change is lost: %s", exc)
            return
        if (
            action is CookieAction.KEEP
            and not session.new
            and session.permanent
            and app.config["SESSION_REFRESH_EACH_REQUEST"]
        ):
            action = CookieAction.SET
        if accessed or session.incoming is not None or action is not CookieAction.KEEP:
            # A page that read the session (even a new, empty one) differs per client:
            # a shared cache must not serve it to another.
            response.vary.add("Cookie")
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        secure = self.get_cookie_secure(app)
        partitioned = self.get_cookie_partitioned(app)
        samesite = self.get_cookie_samesite(app)
        httponly = self.get_cookie_httponly(app)
        if action is CookieAction.DELETE:
            response.delete_cookie(
                name,
                domain=domain,
                path=path,
                secure=secure,
                partitioned=partitioned,
                samesite=samesite,
                httponly=httponly,
            )
        elif action is CookieAction.SET:
            response.set_cookie(
                name,
                session.id,
                expires=self.get_expiration_time(app, session),
                httponly=httponly,
                domain=domain,
                path=path,
                secure=secure,
                partitioned=partitioned,
                samesite=samesite,
            )


def _make_unavailable(response: Response, retry_after: int, body: bytes) -> None:
    response.status_code = 503
    response.set_data(body)
    response.headers.pop("Set-Cookie", None)
    for key, value in unavailable_headers(retry_after):
        response.headers[key] = value


def unavailable_response(retry_after: int = 5, body: bytes = UNAVAILABLE_BODY) -> Response:
    """The ``503`` answer (plain text, ``Retry-After``, ``Cache-Control: no-store``);
    ``body``: what the client reads (the glue says what it knows of the refusal)."""
    return Response(body, 503, unavailable_headers(retry_after))


def init_app(
    app: Flask,
    store: MemcacheSessionStore | None = None,
    *,
    retry_after: int | None = None,
    save_errors: SaveErrors | None = None,
) -> MemcacheSessionInterface:
    """Use the memcache store for ``app``'s sessions, with a ``503`` when it is down.

    A ``store`` given whose ``absolute_ttl`` is shorter than ``PERMANENT_SESSION_LIFETIME``
    is logged at WARNING: it ends sessions that Flask would keep (a store built from
    ``app.config`` has no ``absolute_ttl`` unless ``ERRPOLICY_MEMCACHE_OPTIONS`` sets one).
    Installs :class:`MemcacheSessionInterface` and a ``before_request`` hook, run before
    any other, that raises :class:`SessionStoreUnavailable` (a ``503``: plain text,
    ``Retry-After``) when the session could not be loaded, so no view runs without
    its session. ``@app.errorhandler(503)`` can answer differently.
    """
    interface = MemcacheSessionInterface(store, retry_after=retry_after, save_errors=save_errors)
    built = interface.get_store(
        app
    )  # a configuration mistake shows at boot, not on the first request
    cap = built._absolute_ttl
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    if store is not None and cap is not None and cap < lifetime:
        # A store built by hand keeps the store's one-day default unless told otherwise.
        _log.warning(
            "the store's absolute_ttl (%d s) ends sessions before PERMANENT_SESSION_LIFETIME "
            "(%d s); build the store with absolute_ttl=None to let Flask decide",
            cap,
            lifetime,
        )
    app.session_interface = interface

    def refuse_without_session() -> None:
        from flask import request

        error = request.environ.get(_UNAVAILABLE)
        if error is not None:
            had_cookie = bool(request.cookies.get(interface.get_cookie_name(app)))
            refusal = log_refusal(_log, error, stage="load", had_cookie=had_cookie)
            raise SessionStoreUnavailable(error, interface.get_retry_after(app), refusal.body())

    app.before_request_funcs.setdefault(None, []).insert(0, refuse_without_session)
    return interface


class SessionStoreUnavailable(ServiceUnavailable):
    """The ``503`` raised before the view when no replica could load the session.

    ``error`` is the store's error (:class:`errpolicy.PolicyViolation`, whose
    ``report`` tells which nodes failed). Without a handler of yours the client
    gets :func:`unavailable_response`.
    """

    def __init__(
        self, error: Exception, retry_after: int = 5, body: bytes = UNAVAILABLE_BODY
    ) -> None:
        super().__init__(
            body.decode(),
            response=unavailable_response(retry_after, body),
            retry_after=retry_after,
        )
        self.error = error


def regenerate_session() -> None:
    """Give the current request's session a new id and invalidate the old one.

    Call it on login (no session fixation). The data is kept; the new cookie is sent
    with the response. A session that is still new has a fresh id already.
    """
    from flask import current_app, session

    current = session._get_current_object()  # type: ignore[attr-defined]  # werkzeug LocalProxy
    if not isinstance(current, FlaskSession):
        raise RuntimeError("the app does not use MemcacheSessionInterface (see init_app)")
    if current.new:
        return
    interface = current_app.session_interface
    if not isinstance(interface, MemcacheSessionInterface):
        raise RuntimeError("the app does not use MemcacheSessionInterface (see init_app)")
    interface.get_store(current_app).regenerate(current.inner)
