"""What the WSGI and ASGI middleware decide, apart from their I/O: their options, what
a request's end does to the store and the cookie, the 503 they answer (its log line
and body, ``_refusal``), and what a failed save does. Each middleware only carries the
decisions out, in its own protocol (``start_response`` or ASGI messages); what a
request's end does is ``_frameworks.ending``, which the Flask and Django glue use too."""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

from ._frameworks import CookieAction, CookieSettings, SaveErrors
from ._refusal import Stage, log_refusal, refusal_headers

__all__ = ["Glue"]

App = TypeVar("App")
Store = TypeVar("Store")
Headers = list[tuple[str, str]]


class Glue(Generic[App, Store]):
    """The options and decisions the WSGI and ASGI middleware share; ``_log`` is the
    logger a subclass writes its 503s and lost changes to."""

    _log: logging.Logger

    def __init__(
        self,
        app: App,
        store: Store,
        *,
        cookie: CookieSettings | None = None,
        retry_after: int = 5,
        save_errors: SaveErrors = "503",
    ) -> None:
        if save_errors not in ("503", "log"):
            raise ValueError(f'save_errors must be "503" or "log", not {save_errors!r}')
        self.app = app
        self.store = store
        self.cookie = cookie if cookie is not None else CookieSettings()
        self.retry_after = retry_after
        self.save_errors: SaveErrors = save_errors

    def __repr__(self) -> str:
        return f"SessionMiddleware({self.app!r}, cookie={self.cookie.name!r})"

    def refused(
        self, error: BaseException, *, stage: Stage, incoming: str | None
    ) -> tuple[bytes, Headers]:
        """The 503 that ``error`` (raised by the store) causes: its log line is written
        (rate-limited, ``_refusal``), its body and headers returned."""
        refusal = log_refusal(self._log, error, stage=stage, had_cookie=incoming is not None)
        body = refusal.body()
        return body, refusal_headers(body, self.retry_after)

    def save_failed(
        self, error: BaseException, incoming: str | None
    ) -> tuple[bytes, Headers] | None:
        """The 503 that replaces the app's response when its session could not be
        saved (``save_errors="503"``), or None: the app's response stands, and the lost
        change is logged (``"log"``)."""
        if self.save_errors == "503":
            return self.refused(error, stage="save", incoming=incoming)
        self._log.error("session store could not save; the change is lost: %s", error)
        return None

    def cookie_headers(self, action: CookieAction, sid: str, incoming: str | None) -> Headers:
        """The headers a response needs for ``action`` on the session ``sid``: the
        cookie, and ``Vary: Cookie`` whenever the answer depends on it."""
        headers: Headers = []
        if action is CookieAction.SET:
            headers.append(("Set-Cookie", self.cookie.set_cookie(sid)))
        elif action is CookieAction.DELETE:
            headers.append(("Set-Cookie", self.cookie.delete_cookie()))
        if action is not CookieAction.KEEP or incoming is not None:
            headers.append(("Vary", "Cookie"))
        return headers
