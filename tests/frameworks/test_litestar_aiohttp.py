"""The Litestar store and the aiohttp-session storage against real memcached, each in
a real app of its framework."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp_session import get_session, session_middleware
from litestar import Litestar, Request, get
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.testing import AsyncTestClient

from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.aiohttp import MemcacheStorage, unavailable_middleware
from errpolicy_memcache.litestar import MemcacheStore
from errpolicy_memcache.testing import MemcachedCluster

from .conftest import SECRET

# aiohttp-session's own request keys are plain strings (its warning, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:It is recommended to use web.RequestKey")


@pytest.fixture
async def async_store(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> AsyncIterator[AsyncMemcacheSessionStore]:
    """An async store with two replicas on the three nodes (``store_timeouts``)."""
    store = AsyncMemcacheSessionStore(cluster.addresses, SECRET, **store_timeouts, retry_after=60.0)
    yield store
    await store.aclose()


# -- Litestar ----------------------------------------------------------------------


async def test_the_litestar_store_keeps_values_and_their_expiry(
    async_store: AsyncMemcacheSessionStore,
) -> None:
    """set/get/exists/expires_in/delete, the expiry read back from the signed record."""
    store = MemcacheStore(async_store)
    await store.set("any key: litestar's", b"\x00\xffvalue", expires_in=600)
    found = await store.get("any key: litestar's")
    left = await store.expires_in("any key: litestar's")
    assert (b"\x00\xffvalue", True) == (found, await store.exists("any key: litestar's"))
    assert left is not None
    assert 590 <= left <= 600
    await store.delete("any key: litestar's")
    assert (None, None) == (
        await store.get("any key: litestar's"),
        await store.expires_in("any key: litestar's"),
    )


async def test_the_litestar_store_survives_a_killed_node(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster
) -> None:
    """One node down: the value is still served (a failover, not a miss)."""
    store = MemcacheStore(async_store)
    await store.set("k", "v")
    cluster.servers[0].kill()
    assert b"v" == await store.get("k")


async def test_litestar_server_side_sessions_run_on_the_store(
    async_store: AsyncMemcacheSessionStore,
) -> None:
    """A Litestar app's server-side sessions count across requests on the store."""

    @get("/count")
    async def count(request: Request) -> dict[str, int]:  # type: ignore[type-arg]
        n = request.session.get("n", 0) + 1
        request.set_session({"n": n})
        return {"n": n}

    app = Litestar(
        route_handlers=[count],
        middleware=[ServerSideSessionConfig(store="sessions").middleware],
        stores={"sessions": MemcacheStore(async_store)},
    )
    async with AsyncTestClient(app=app) as client:
        results = [(await client.get("/count")).json()["n"] for _ in range(3)]
    assert [1, 2, 3] == results


# -- aiohttp -----------------------------------------------------------------------


def aiohttp_app(store: AsyncMemcacheSessionStore, cluster: MemcachedCluster) -> web.Application:
    async def count(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["n"] = session.get("n", 0) + 1
        return web.json_response({"n": session["n"]})

    async def logout(request: web.Request) -> web.Response:
        (await get_session(request)).invalidate()
        return web.json_response({})

    async def outage(request: web.Request) -> web.Response:
        for server in cluster.servers:
            server.kill()
        return await count(request)

    app = web.Application(
        middlewares=[
            unavailable_middleware(retry_after=3),
            session_middleware(MemcacheStorage(store)),
        ]
    )
    app.router.add_get("/count", count)
    app.router.add_get("/logout", logout)
    app.router.add_get("/outage", outage)
    return app


async def test_aiohttp_sessions_count_across_requests(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster
) -> None:
    """The cookie names a stored session; each request finds the last one's data."""
    async with TestClient(TestServer(aiohttp_app(async_store, cluster))) as client:
        results = [await (await client.get("/count")).json() for _ in range(3)]
    assert [{"n": 1}, {"n": 2}, {"n": 3}] == results


async def test_aiohttp_logout_tombstones_the_session(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster
) -> None:
    """An invalidated session is gone: its old id starts over."""
    async with TestClient(TestServer(aiohttp_app(async_store, cluster))) as client:
        await client.get("/count")
        old = client.session.cookie_jar.filter_cookies(client.make_url("/"))[
            "AIOHTTP_SESSION"
        ].value
        await client.get("/logout")
        client.session.cookie_jar.update_cookies({"AIOHTTP_SESSION": old})
        again = await (await client.get("/count")).json()
    assert {"n": 1} == again


async def test_aiohttp_answers_503_when_no_node_can_save(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster
) -> None:
    """A save that no replica takes answers 503 with Retry-After, not a 200."""
    async with TestClient(TestServer(aiohttp_app(async_store, cluster))) as client:
        response = await client.get("/outage")
        assert (503, "3") == (response.status, response.headers["Retry-After"])
