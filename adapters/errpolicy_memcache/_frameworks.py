"""What the WSGI, Flask and Django glue share: cookie handling and the 503 answer.

Imports no web framework, so every integration module can use it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from errpolicy import PolicyViolation

from ._errors import SessionUnavailable

if TYPE_CHECKING:
    from errpolicy_memcache import MemcacheSessionStore, Session

__all__ = [
    "CONFIG_KEYS",
    "STORE_DOWN",
    "UNAVAILABLE_BODY",
    "CookieAction",
    "CookieSettings",
    "Ending",
    "SaveErrors",
    "ending",
    "finish_session",
    "parse_cookie",
    "save_errors_from_config",
    "server_ttl",
    "store_from_config",
    "unavailable_headers",
]

#: What the store raises when no replica could answer: the policy's
#: :class:`errpolicy.PolicyViolation` (the default policies), or
#: :class:`SessionUnavailable` when the application relaxed the policy.
STORE_DOWN: tuple[type[Exception], ...] = (PolicyViolation, SessionUnavailable)

#: What a client reads when no replica of the session store could answer.
UNAVAILABLE_BODY = (
    b"503 Service Unavailable: the session store cannot be reached right now. "
    b"Please retry in a few seconds.\n"
)

#: What the glue does when ``store.save`` raises :class:`errpolicy.PolicyViolation`:
#: ``"503"`` replaces the app's response by a 503 (the change was not stored, so the
#: client must not believe it was); ``"log"`` keeps the app's response and logs the error.
SaveErrors = Literal["503", "log"]

_SAMESITE = ("Strict", "Lax", "None")
# RFC 6265 cookie-name token and a value without separators that would need quoting.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VALUE = re.compile(r"^[!#-+\--:<-\[\]-~]*$")


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """How the session cookie is written; the defaults suit a same-site web app.

    ``max_age=None`` makes a browser-session cookie: the server-side idle TTL still
    decides how long the session lives.
    """

    name: str = "session"
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = True
    samesite: str | None = "Lax"
    max_age: int | None = None

    def __post_init__(self) -> None:
        if not _TOKEN.match(self.name):
            raise ValueError(f"invalid cookie name {self.name!r}")
        if self.samesite is not None and self.samesite not in _SAMESITE:
            raise ValueError(f"samesite must be one of {_SAMESITE} or None, not {self.samesite!r}")
        if self.samesite == "None" and not self.secure:
            raise ValueError("browsers reject SameSite=None without Secure; set secure=True")
        for label, text in (("path", self.path), ("domain", self.domain or "")):
            if any(c in text for c in ";\r\n,"):
                raise ValueError(f"invalid cookie {label} {text!r}")

    def set_cookie(self, value: str) -> str:
        """The ``Set-Cookie`` header value that stores ``value`` on the client."""
        if not _VALUE.match(value):
            raise ValueError("a session id must not need quoting in a cookie")
        parts = [f"{self.name}={value}"]
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        return self._attributes(parts)

    def delete_cookie(self) -> str:
        """The ``Set-Cookie`` header value that removes the cookie from the client."""
        parts = [f"{self.name}=", "Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
        return self._attributes(parts)

    def _attributes(self, parts: list[str]) -> str:
        parts.append(f"Path={self.path}")
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.httponly:
            parts.append("HttpOnly")
        if self.samesite:
            parts.append(f"SameSite={self.samesite}")
        return "; ".join(parts)


def parse_cookie(header: str | None, name: str) -> str | None:
    """The first value of cookie ``name`` in a ``Cookie`` request header, else None.

    Tolerant on purpose: a malformed neighbour cookie must not hide the session cookie.
    Browsers send the most specific path first, so the first value wins.
    """
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value or None
    return None


def unavailable_headers(retry_after: int) -> list[tuple[str, str]]:
    """Headers of the 503 answer: plain text, never cached, with ``Retry-After``."""
    return [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(UNAVAILABLE_BODY))),
        ("Retry-After", str(retry_after)),
        ("Cache-Control", "no-store"),
    ]


class CookieAction(enum.Enum):
    """What the response must do with the session cookie once the session is stored."""

    KEEP = "keep"
    SET = "set"
    DELETE = "delete"


class Ending(enum.Enum):
    """What the store does with a session when its request ends."""

    DESTROY = "destroy"  # the request emptied a stored session: a tombstone
    SAVE = "save"  # the request changed it
    RELEASE = "release"  # nothing to write (its lock, if any, is released)


def ending(session: Session, incoming: str | None) -> tuple[Ending, CookieAction]:
    """What the store does with ``session`` at the end of its request, and then the
    cookie (``incoming`` is the id the client sent). A stored session the request
    emptied is destroyed; a changed one saved; an unchanged one costs no write; a new
    one that holds nothing is not stored and sets no cookie (a client that sent an
    unknown or invalid id loses it)."""
    gone = CookieAction.DELETE if incoming is not None else CookieAction.KEEP
    if len(session) == 0 and session.modified and not session.new:
        return Ending.DESTROY, gone
    kept = CookieAction.SET if session.id != incoming else CookieAction.KEEP
    if session.modified and len(session) > 0:
        return Ending.SAVE, kept
    return Ending.RELEASE, gone if session.new else kept


def finish_session(
    store: MemcacheSessionStore, session: Session, incoming: str | None
) -> CookieAction:
    """Store what the request did to ``session`` (see :func:`ending`) and say what to
    do with the cookie; ``incoming`` is the id the client sent. Raises one of
    :data:`STORE_DOWN` when the store cannot take the change.
    """
    step, action = ending(session, incoming)
    if step is Ending.DESTROY:
        store.destroy(session)
    elif step is Ending.SAVE:
        store.save(session)
        session.modified = False  # so a later change (while a body streams) can be noticed
    else:
        store.release(session)
    return action


#: Configuration keys, the same in Flask's ``app.config`` and Django's settings.
CONFIG_KEYS = (
    "ERRPOLICY_MEMCACHE_SERVERS",
    "ERRPOLICY_MEMCACHE_SECRET_KEY",
    "ERRPOLICY_MEMCACHE_REPLICAS",
    "ERRPOLICY_MEMCACHE_OPTIONS",
    "ERRPOLICY_SESSION_RETRY_AFTER",
    "ERRPOLICY_SESSION_SAVE_ERRORS",
)


def store_from_config(get: Callable[[str], Any], default_secret: Any) -> MemcacheSessionStore:
    """Build a store from ``ERRPOLICY_MEMCACHE_*`` configuration values.

    ``get(name)`` returns a value or None. ``SERVERS`` is a list of ``"host:port"`` or one
    comma-separated string; ``SECRET_KEY`` defaults to the framework's own secret;
    ``OPTIONS`` is a dict of further keyword arguments for :class:`MemcacheSessionStore`.
    The framework's session lifetime decides how long a session lives, so the store's
    ``absolute_ttl`` is off unless ``OPTIONS`` sets it (a cap chosen on purpose).
    """
    from errpolicy_memcache import MemcacheSessionStore

    servers = get("ERRPOLICY_MEMCACHE_SERVERS")
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",") if s.strip()]
    if not servers:
        raise ValueError("set ERRPOLICY_MEMCACHE_SERVERS to the memcached nodes, host:port each")
    secret = get("ERRPOLICY_MEMCACHE_SECRET_KEY") or default_secret
    if not secret:
        raise ValueError("set ERRPOLICY_MEMCACHE_SECRET_KEY (or the framework's secret key)")
    options: dict[str, Any] = dict(get("ERRPOLICY_MEMCACHE_OPTIONS") or {})
    # The store's default (one day) would log out daily users whom the framework keeps
    # for weeks (SESSION_COOKIE_AGE, PERMANENT_SESSION_LIFETIME).
    options.setdefault("absolute_ttl", None)
    replicas = get("ERRPOLICY_MEMCACHE_REPLICAS")
    if replicas is not None:
        options["replicas"] = int(replicas)
    return MemcacheSessionStore(servers=list(servers), secret_key=secret, **options)


#: memcached's longest relative expiry: a longer one would be read as a UNIX time.
MAX_TTL = 30 * 24 * 3600


def server_ttl(seconds: float) -> int:
    """The idle TTL to store a session with for a framework lifetime of ``seconds``
    (more than 0): whole seconds, at most memcached's 30 days (:data:`MAX_TTL`)."""
    return max(1, min(int(seconds), MAX_TTL))


def save_errors_from_config(value: Any) -> SaveErrors:
    """Check an ``ERRPOLICY_SESSION_SAVE_ERRORS`` value; None means the default ``"503"``."""
    if value is None or value == "503":
        return "503"
    if value == "log":
        return "log"
    raise ValueError(f'ERRPOLICY_SESSION_SAVE_ERRORS must be "503" or "log", not {value!r}')
