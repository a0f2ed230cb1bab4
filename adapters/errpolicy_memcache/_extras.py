"""Optional dependencies, imported where first needed: a missing one names its extra."""

from __future__ import annotations

from typing import Any

from ._errors import MissingDependency

__all__ = ["pymemcache_client"]


def pymemcache_client() -> Any:
    """pymemcache's ``Client`` class; :class:`MissingDependency` if pymemcache is not installed."""
    try:
        import pymemcache  # noqa: F401  # the distribution itself, apart from its modules
    except ModuleNotFoundError as exc:
        if exc.name != "pymemcache":
            raise  # pymemcache is there but needs something missing: its own error says more
        raise MissingDependency(
            "pymemcache",
            "memcache",
            "needed by the default transport; transport='pipelined' needs none",
        ) from exc
    from pymemcache.client.base import Client

    return Client
