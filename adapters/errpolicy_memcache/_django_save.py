"""What the Django engine's ``save`` and ``asave`` share around the store's save: the
session and TTL to store, and what each answer of the store means to Django."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError

from ._errors import SessionExists
from ._frameworks import STORE_DOWN, save_errors_from_config

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Saving"]

_log = logging.getLogger("errpolicy_memcache.django")


class Saving:
    """Wraps the store's save of ``session`` (sync or awaited inside): a taken key
    raises ``CreateError``; a store that cannot answer raises, unless
    ``ERRPOLICY_SESSION_SAVE_ERRORS = "log"``: then the lost change is logged and the
    engine goes on. On success the session is the engine's loaded one (``done``)."""

    __slots__ = ("_engine", "_save_errors", "_session")

    def __init__(self, engine: Any, session: Session) -> None:
        self._engine = engine
        self._session = session
        self._save_errors = save_errors_from_config(
            getattr(settings, "ERRPOLICY_SESSION_SAVE_ERRORS", None)
        )

    def __enter__(self) -> Saving:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if error is None:
            self._session.modified = False
            self._engine._loaded = self._session
            return False
        if isinstance(error, SessionExists):
            raise CreateError from None
        if isinstance(error, STORE_DOWN) and self._save_errors == "log":
            _log.error("session store could not save; the change is lost: %s", error)
            return True
        return False
