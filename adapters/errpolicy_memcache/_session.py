"""The session object handed to the application: a mutable mapping with an id."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from ._data import dumps_data
from ._envelope import EnvelopeError, load_data
from ._errors import SessionDataError

__all__ = ["STORED_SLOTS", "Session"]


@dataclass(frozen=True, slots=True)
class _Lock:
    node: str
    key: str
    acquired: float  # time.monotonic() when taken


class Session(MutableMapping[str, Any]):
    """Session data (str keys; JSON values, or the datetime, UUID, Decimal, bytes, tuple
    and set values stored in tagged JSON) plus what the store needs to save it.

    ``id`` is the value for the cookie; ``new`` is True when no stored session was found
    (or none was asked for); ``modified`` is set by item assignment and deletion. Changes
    inside a nested value (``session["cart"].append(x)``) are not seen: assign the value
    again or set ``modified = True``. ``ttl`` is this session's idle lifetime in seconds
    (None: the store's ``idle_ttl``).
    """

    __slots__ = (
        "_created",
        "_data_cache",
        "_id",
        "_lock",
        "_payload",
        "_version",
        "modified",
        "new",
        "ttl",
    )

    def __init__(
        self,
        sid: str,
        data: dict[str, Any] | None = None,
        *,
        new: bool = True,
        version: int = 0,
        created: float = 0.0,
        ttl: int | None = None,
        payload: bytes | None = None,
    ) -> None:
        self._id = sid
        # Stored data stays JSON bytes (verified) until first used.
        self._data_cache: dict[str, Any] | None = dict(data) if data else None
        self._payload = payload if data is None else None
        if self._data_cache is None and payload is None:
            self._data_cache = {}
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

    @property
    def _data(self) -> dict[str, Any]:
        data = self._data_cache
        if data is None:
            assert self._payload is not None
            try:
                data = load_data(self._payload)
            except EnvelopeError as exc:
                raise SessionDataError(f"stored session data is unreadable: {exc}") from exc
            self._data_cache, self._payload = data, None
        return data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise SessionDataError(
                f"session keys must be str, not {type(key).__name__} ({key!r}): JSON would "
                f"store it as a str"
            )
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

    def _encoded(self) -> bytes:
        """The data as JSON bytes; unread stored data is passed on without parsing."""
        if self._data_cache is None and self._payload is not None:
            return self._payload
        return dumps_data(self._data).encode("utf-8")

    def _reset(self, sid: str, created: float) -> None:
        self._id = sid
        self._data_cache, self._payload = {}, None
        self.new = True
        self.modified = False
        self._version = 0
        self._created = created
        self._lock = None


#: Session's slots in the order of a stored session's values (``sid``, no data cache,
#: ``payload``, not new, not modified, ``version``, ``created``, ``ttl``, no lock):
#: what ``Session(sid, new=False, version=..., created=..., ttl=..., payload=...)``
#: sets, for the C ``slotted`` (every read makes one).
STORED_SLOTS = tuple(
    Session.__dict__[name]
    for name in (
        "_id",
        "_data_cache",
        "_payload",
        "new",
        "modified",
        "_version",
        "_created",
        "ttl",
        "_lock",
    )
)
