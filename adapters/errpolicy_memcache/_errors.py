"""The adapter's exceptions: one root, each also subclassing the builtin it resembles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import errpolicy

if TYPE_CHECKING:
    from ._outcome import Outcome

__all__ = [
    "ConfigurationError",
    "InvalidSessionId",
    "MemcacheSessionError",
    "MissingDependency",
    "SessionDataError",
    "SessionExists",
    "SessionTooLarge",
    "SessionUnavailable",
]


class MemcacheSessionError(Exception):
    """Root of every error raised by :mod:`errpolicy_memcache`."""


class ConfigurationError(MemcacheSessionError, ValueError):
    """An option given to :class:`~errpolicy_memcache.MemcacheSessionStore` is invalid."""


class MissingDependency(errpolicy.MissingDependency, MemcacheSessionError):
    """An optional dependency is not installed; the message names the extra that brings it.

    errpolicy's own :class:`errpolicy.MissingDependency` (its message, ``name`` and
    ``extra``), also under this package's root error.
    """


class InvalidSessionId(MemcacheSessionError, ValueError):
    """A session id does not have the shape of one this store issues."""


class SessionDataError(MemcacheSessionError, TypeError, ValueError):
    """Session data that would not come back the same from JSON (a key that is not a
    str, a tuple, a set, NaN, data nested deeper than ``MAX_DEPTH``, ...).

    Raised before any I/O: nothing stored is changed, and the session keeps its data.
    ``path`` leads to the bad value (``("cart", 3)``: ``session["cart"][3]``; empty
    for the data itself). A TypeError, as json's own error for such data, and a
    ValueError (a depth or a NaN is a bad value, not a bad type).
    """

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


class SessionTooLarge(MemcacheSessionError, ValueError):
    """The signed record is bigger than ``max_size``; raised before anything is sent.

    ``size`` and ``limit`` are in bytes. Nothing stored is changed.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the session record is {size} bytes, over the limit of {limit} bytes "
            f"(max_size); store less in the session, or raise max_size (memcached's item "
            f"size limit, -I, is 1 MiB by default)"
        )
        self.size = size
        self.limit = limit


class SessionExists(MemcacheSessionError, KeyError):
    """``save(session, must_create=True)`` found the id already taken (memcached ``add``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "session id already exists"


class SessionUnavailable(MemcacheSessionError, ConnectionError):
    """No memcached node could serve the operation, and the policy did not raise.

    With the default policies :class:`errpolicy.PolicyViolation` is raised instead; this
    error is what remains when an application relaxed the policy: the store never
    answers an outage with an empty session or a silently dropped write. ``outcome``
    holds the per-node results.
    """

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"{outcome.operation}: no memcached node could serve it ({outcome})")
        self.outcome = outcome
