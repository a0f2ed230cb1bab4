"""Django session engine: ``SESSION_ENGINE = "errpolicy_memcache.django"``.

A drop-in for Django's cache engine (``django.contrib.sessions.backends.cache``) with
Django's own ``SessionMiddleware`` unchanged: the full :class:`SessionBase` API,
``UpdateError`` (so ``SessionInterrupted``) when a session was deleted by a concurrent
request, and no silent logout: when no replica can answer, loading raises
:class:`errpolicy.PolicyViolation` instead of returning an empty session.
Add :class:`SessionUnavailableMiddleware` to turn that into a ``503``.

Settings (the same names as Flask's config keys):

- ``ERRPOLICY_MEMCACHE_SERVERS``: list of ``"host:port"`` (or one comma-separated string);
- ``ERRPOLICY_MEMCACHE_SECRET_KEY``: signs the stored sessions (default ``SECRET_KEY``);
- ``ERRPOLICY_MEMCACHE_REPLICAS``: copies per session (default: the store's, 2);
- ``ERRPOLICY_MEMCACHE_OPTIONS``: dict of further :class:`MemcacheSessionStore` arguments;
- ``ERRPOLICY_SESSION_RETRY_AFTER``: seconds in the 503's ``Retry-After`` (default 5);
- ``ERRPOLICY_SESSION_SAVE_ERRORS``: ``"503"`` (default) or ``"log"``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse

from ._django_aio import AsyncEngineMixin
from ._django_save import Saving
from ._frameworks import (
    CONFIG_KEYS,
    STORE_DOWN,
    UNAVAILABLE_BODY,
    server_ttl,
    store_from_config,
    unavailable_headers,
)
from ._refusal import log_refusal

if TYPE_CHECKING:
    from errpolicy_memcache import MemcacheSessionStore, Session

__all__ = [
    "SessionStore",
    "SessionUnavailableMiddleware",
    "get_store",
    "reset_store",
    "unavailable_response",
]

_log = logging.getLogger("errpolicy_memcache.django")
_T = TypeVar("_T")

_store: MemcacheSessionStore | None = None
_store_lock = threading.Lock()


def get_store() -> MemcacheSessionStore:
    """The process's store, built once from the settings (threads share its breakers)."""
    global _store
    with _store_lock:
        if _store is None:
            _store = store_from_config(
                lambda name: getattr(settings, name, None), settings.SECRET_KEY
            )
        return _store


def reset_store() -> None:
    """Close the store; the next request builds it again from the settings."""
    global _store
    with _store_lock:
        store, _store = _store, None
    if store is not None:
        store.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in CONFIG_KEYS or setting == "SECRET_KEY":
        reset_store()


setting_changed.connect(_on_setting_changed, dispatch_uid="errpolicy_memcache.django")


class SessionStore(AsyncEngineMixin, SessionBase):
    """Django's session API on :class:`MemcacheSessionStore`.

    ``unavailable`` holds the error (:class:`errpolicy.PolicyViolation`, or
    :class:`SessionUnavailable` under a relaxed policy) if the store could not answer
    during this request; :class:`SessionUnavailableMiddleware` reads it.
    """

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._store = get_store()
        self._loaded: Session | None = None
        self.unavailable: Exception | None = None

    def _guarded(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except STORE_DOWN as exc:
            self.unavailable = exc
            raise

    def load(self) -> dict[str, Any]:
        """The stored data, or ``{}`` (and no key) when the session does not exist.

        Raises :class:`errpolicy.PolicyViolation` when no replica could answer: a
        store failure is never mistaken for a missing session.
        """
        return self._loaded_data(self._guarded(lambda: self._store.start(self.session_key)))

    def _loaded_data(self, session: Session) -> dict[str, Any]:
        """What ``load``/``aload`` give for the store's answer: ``{}`` (and no key) for a
        new session or one past its expiry date."""
        expiry = None if session.new else session.get("_session_expiry")
        if session.new or (
            # set_expiry(datetime or timedelta): a point in time, which reads that renew
            # the stored copy must not outlive (Django's db engine checks it too).
            isinstance(expiry, str | datetime) and self.get_expiry_age(expiry=expiry) <= 0
        ):
            self._session_key = None
            self._loaded = None
            return {}
        self._loaded = session
        return dict(session)

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        return self._guarded(lambda: self._store.exists(session_key))

    def _get_new_session_key(self) -> str:
        # The store's ids carry 256 bits; a collision shows as CreateError in create().
        return self._store.new_session().id

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    def create(self) -> None:
        for _ in range(10):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("could not create a new session key in ten attempts")

    def save(self, must_create: bool = False) -> None:
        """Store the data; ``must_create`` refuses an existing key (``CreateError``);
        otherwise a session deleted meanwhile raises ``UpdateError`` (a concurrent
        logout), which Django's middleware turns into ``SessionInterrupted``."""
        data: dict[str, Any] = self._get_session(no_load=must_create)  # type: ignore[attr-defined]  # private, not in django-stubs
        key = self.session_key
        if key is None:
            return self.create()
        age = self.get_expiry_age()
        if age <= 0:
            # Expired before it was stored (set_expiry in the past): nothing may load it,
            # as with Django's cache engine, which stores it with a timeout in the past.
            if not must_create:
                self.delete(key)
            return None
        if not must_create and not self.exists(key):
            raise UpdateError
        session = self._session_for(key, data, new=must_create)
        ttl = server_ttl(age)  # the session lives as long as Django says (at most 30 days)
        with Saving(self, session):
            self._guarded(lambda: self._store.save(session, must_create=must_create, ttl=ttl))
        return None

    def _session_for(self, key: str, data: dict[str, Any], *, new: bool) -> Session:
        """The store's Session for ``key``, holding exactly ``data``."""
        from errpolicy_memcache import Session

        loaded = self._loaded
        if loaded is not None and loaded.id == key and not new:
            if dict(loaded) != data:
                loaded.clear()
                loaded.update(data)
            loaded.modified = True
            return loaded
        session = Session(key, data, new=new)
        session.modified = True
        return session

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        key = session_key
        self._guarded(lambda: self._store.delete(key))
        if self._loaded is not None and self._loaded.id == key:
            self._loaded = None

    def release(self) -> None:
        """Release the session's lock (``locking=True`` stores) if this request holds it."""
        if self._loaded is not None:
            self._store.release(self._loaded)

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: memcached expires sessions by itself."""


def unavailable_response(
    retry_after: int | None = None, body: bytes = UNAVAILABLE_BODY
) -> HttpResponse:
    """The ``503`` answer: plain text, ``Retry-After``, ``Cache-Control: no-store``;
    ``body``: what the client reads (the middleware says what it knows of the refusal)."""
    if retry_after is None:
        retry_after = int(getattr(settings, "ERRPOLICY_SESSION_RETRY_AFTER", None) or 5)
    response = HttpResponse(body, status=503)
    for key, value in unavailable_headers(retry_after):
        response[key] = value
    return response


class SessionUnavailableMiddleware:
    """Answer ``503`` with ``Retry-After`` when the session store could not answer.

    Put it before ``django.contrib.sessions.middleware.SessionMiddleware`` in
    ``MIDDLEWARE``: it then sees both a load that failed in a view (as the exception)
    and a save that failed in ``SessionMiddleware`` (as the 500 it became). With a
    ``locking=True`` store it is required: it releases a lock the request did not
    release by saving.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if isinstance(session, SessionStore):
            session.release()
        if (
            response.status_code >= 500
            and isinstance(session, SessionStore)
            and session.unavailable is not None
        ):
            had_cookie = settings.SESSION_COOKIE_NAME in request.COOKIES
            refusal = log_refusal(_log, session.unavailable, stage=None, had_cookie=had_cookie)
            return unavailable_response(body=refusal.body())
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view that reached an unavailable session gets the 503 instead of a 500."""
        if isinstance(exception, STORE_DOWN):
            session = getattr(request, "session", None)
            if isinstance(session, SessionStore) and session.unavailable is exception:
                had_cookie = settings.SESSION_COOKIE_NAME in request.COOKIES
                refusal = log_refusal(_log, exception, stage="load", had_cookie=had_cookie)
                return unavailable_response(body=refusal.body())
        return None
