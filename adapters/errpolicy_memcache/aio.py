"""errpolicy_memcache for asyncio: the session store as coroutines, and the ASGI middleware.

>>> from errpolicy_memcache.aio import AsyncMemcacheSessionStore   # doctest: +SKIP
"""

from __future__ import annotations

from ._aio_store import AsyncMemcacheSessionStore

__all__ = ["AsyncMemcacheSessionStore"]
