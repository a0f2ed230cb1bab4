"""The session object handed to the application: a mutable mapping with an id."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from ._errors import SessionDataError

__all__ = ["Session"]


@dataclass(frozen=True, slots=True)
class _Lock:
    node: str
    key: str
    acquired: float  # time.monotonic() when taken


class Session(MutableMapping[str, Any]):
    """Session data (str keys, JSON values) plus what the store needs to save it.

    ``id`` is the value for the cookie; ``new`` is True when no stored session was found
    (or none was asked for); ``modified`` is set by item assignment and deletion. Changes
    inside a nested value (``session["cart"].append(x)``) are not seen: assign the value
    again or set ``modified = True``. ``ttl`` is this session's idle lifetime in seconds
    (None: the store's ``idle_ttl``).
    """

    __slots__ = ("_created", "_data", "_id", "_lock", "_version", "modified", "new", "ttl")

    def __init__(
        self,
        sid: str,
        data: dict[str, Any] | None = None,
        *,
        new: bool = True,
        version: int = 0,
        created: float = 0.0,
        ttl: int | None = None,
    ) -> None:
        self._id = sid
        self._data: dict[str, Any] = dict(data) if data else {}
        self.new = new
        self.modified = False
        self._version = version
        self._created = created
        self.ttl = ttl
        self._lock: _Lock | None = None

    @property
    def id(self) -> str:
        """The session id: 43 url-safe characters, 256 bits from :mod:`secrets`."""
        return self._id

    @property
    def version(self) -> int:
        """The version of the stored copy this session was read from or last saved as."""
        return self._version

    @property
    def created(self) -> float:
        """When the session was first created (UNIX time); the absolute lifetime counts from it."""
        return self._created

    @property
    def locked(self) -> bool:
        """True while this request holds the session's lock (``locking=True`` stores)."""
        return self._lock is not None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise SessionDataError(f"session keys must be str, not {type(key).__name__}: {key!r}")
        self._data[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def clear(self) -> None:
        if self._data:
            self._data.clear()
            self.modified = True

    def __repr__(self) -> str:
        # The id is a bearer secret: show only enough of it to tell sessions apart.
        flags = " new" if self.new else ""
        flags += " modified" if self.modified else ""
        return f"<Session {self._id[:6]}...{flags} keys={sorted(self._data)!r}>"

    def _data_copy(self) -> dict[str, Any]:
        return dict(self._data)
