"""The ASGI middleware against real memcached, in real Starlette and FastAPI apps:
cookies, saves, failover, the 503, and guards around sync endpoints."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread
import errpolicy
import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from errpolicy_memcache import _refusal as refusal_module
from errpolicy_memcache._refusal import Throttle
from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.asgi import STORE_SCOPE_KEY, SessionMiddleware
from errpolicy_memcache.testing import MemcachedCluster

from .conftest import SECRET

MakeClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def async_store(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> AsyncIterator[AsyncMemcacheSessionStore]:
    """An async store with two replicas on the three nodes. The tests kill nodes (refused at
    once), never hang them: long timeouts (``store_timeouts``) keep a loaded machine from
    failing a node."""
    store = AsyncMemcacheSessionStore(cluster.addresses, SECRET, **store_timeouts, retry_after=60.0)
    yield store
    await store.aclose()


def kill_all(cluster: MemcachedCluster) -> None:
    for server in cluster.servers:
        server.kill()


def starlette_app(calls: list[str], cluster: MemcachedCluster) -> Starlette:
    """Count requests in the session; /logout empties it; /outage counts, then kills
    every node before the response starts."""

    async def count(request: StarletteRequest) -> JSONResponse:
        calls.append(request.url.path)
        request.session["n"] = request.session.get("n", 0) + 1
        if request.url.path == "/outage":
            kill_all(cluster)
        return JSONResponse({"n": request.session["n"]})

    async def read(request: StarletteRequest) -> JSONResponse:
        calls.append(request.url.path)
        return JSONResponse({"n": request.session.get("n")})

    async def logout(request: StarletteRequest) -> JSONResponse:
        request.session.clear()
        return JSONResponse({})

    async def login(request: StarletteRequest) -> JSONResponse:
        await request.scope[STORE_SCOPE_KEY].regenerate(request.session)
        return JSONResponse({})

    routes = [
        Route("/count", count),
        Route("/outage", count),
        Route("/read", read),
        Route("/logout", logout),
        Route("/login", login),
    ]
    return Starlette(routes=routes)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def calls() -> list[str]:
    """Paths the app was called for."""
    return []


async def test_a_counted_session_survives_requests(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
) -> None:
    """The first request sets the cookie; the next ones find their session."""
    app = SessionMiddleware(starlette_app(calls, cluster), async_store)
    async with client(app) as http:
        first = await http.get("/count")
        second = await http.get("/count")
    assert ({"n": 1}, {"n": 2}) == (first.json(), second.json())
    assert "session=" in first.headers["set-cookie"]
    assert "set-cookie" not in second.headers  # same id: no new cookie


async def test_an_untouched_new_session_sets_no_cookie(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
) -> None:
    """A request that only reads a new session gets no cookie."""
    app = SessionMiddleware(starlette_app(calls, cluster), async_store)
    async with client(app) as http:
        response = await http.get("/read")
    assert (200, None) == (response.status_code, response.headers.get("set-cookie"))


async def test_no_replica_answers_503_without_calling_the_app(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
) -> None:
    """session.start raising answers 503 with Retry-After; the app is not called."""
    app = SessionMiddleware(starlette_app(calls, cluster), async_store, retry_after=7)
    async with client(app) as http:
        await http.get("/count")
        kill_all(cluster)
        response = await http.get("/count")
    assert (503, "7", ["/count"]) == (
        response.status_code,
        response.headers["retry-after"],
        calls,
    )


async def test_a_failed_save_replaces_the_response_with_503(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
) -> None:
    """The client must not believe a change was kept that was not."""
    app = SessionMiddleware(starlette_app(calls, cluster), async_store)
    async with client(app) as http:
        response = await http.get("/outage")
    assert (503, "5") == (response.status_code, response.headers["retry-after"])
    assert b"503 Service Unavailable" in response.content


async def test_a_refused_load_logs_the_refusal_line_and_tells_what_is_known(
    async_store: AsyncMemcacheSessionStore,
    cluster: MemcachedCluster,
    calls: list[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The load's 503 logs the WSGI middleware's line (outcome, key, each node) on the
    asgi logger, and its page says what is known: the session's nodes refuse."""
    monkeypatch.setattr(refusal_module, "THROTTLE", Throttle())  # nothing held back yet
    app = SessionMiddleware(starlette_app(calls, cluster), async_store)
    async with client(app) as http:
        await http.get("/count")
        kill_all(cluster)
        with caplog.at_level(logging.ERROR, logger="errpolicy_memcache.asgi"):
            response = await http.get("/count")
    (record,) = [r for r in caplog.records if hasattr(r, "refusal")]
    message = record.getMessage()
    assert (503, "errpolicy_memcache.asgi", True, True) == (
        response.status_code,
        record.name,
        "session.start unavailable" in message,
        b"refuse connections" in response.content,
    )


async def test_a_failed_save_page_says_the_change_may_be_lost(
    async_store: AsyncMemcacheSessionStore,
    cluster: MemcachedCluster,
    calls: list[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A save's 503 is logged as a refusal at the save stage, and says the change may be lost."""
    monkeypatch.setattr(refusal_module, "THROTTLE", Throttle())
    app = SessionMiddleware(starlette_app(calls, cluster), async_store)
    async with client(app) as http:
        await http.get("/count")
        with caplog.at_level(logging.ERROR, logger="errpolicy_memcache.asgi"):
            response = await http.get("/outage")
    (record,) = [r for r in caplog.records if hasattr(r, "refusal")]
    assert (503, "save", True) == (
        response.status_code,
        record.refusal.stage,
        b"may be lost" in response.content,
    )


async def test_save_errors_log_keeps_the_apps_response(
    async_store: AsyncMemcacheSessionStore,
    cluster: MemcachedCluster,
    calls: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """save_errors="log": the app's answer stands, and the lost change is logged."""
    app = SessionMiddleware(starlette_app(calls, cluster), async_store, save_errors="log")
    async with client(app) as http:
        response = await http.get("/outage")
    assert 200 == response.status_code
    assert any("the change is lost" in r.message for r in caplog.records)


async def test_logout_deletes_the_cookie_and_the_session(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
) -> None:
    """An emptied session is destroyed: the cookie goes, and the old id gets a new session."""
    app = SessionMiddleware(starlette_app(calls, cluster), async_store)
    async with client(app) as http:
        await http.get("/count")
        old = http.cookies["session"]
        response = await http.get("/logout")
        http.cookies.clear()
        http.cookies.set("session", old)
        again = await http.get("/read")
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert {"n": None} == again.json()


async def test_login_regenerates_the_id(
    async_store: AsyncMemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
) -> None:
    """regenerate() through the store in the scope: a new cookie, the data kept."""
    app = SessionMiddleware(starlette_app(calls, cluster), async_store)
    async with client(app) as http:
        await http.get("/count")
        old = http.cookies["session"]
        await http.get("/login")
        new = http.cookies["session"]
        counted = await http.get("/count")
    assert old != new
    assert {"n": 2} == counted.json()


def fastapi_app() -> FastAPI:
    """Sync and async endpoints over the session; /carried logs from a worker thread."""
    app = FastAPI()
    log = logging.getLogger("shop.endpoint")

    @app.get("/sync")
    def sync_count(request: Request) -> dict[str, int]:  # run in anyio's thread pool
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    @app.get("/async")
    async def async_count(request: Request) -> dict[str, int]:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    @app.get("/warn-sync")
    def warn_sync() -> dict[str, str]:
        log.warning("price feed stale")
        return {"ok": "yes"}

    @app.get("/warn-carried")
    async def warn_carried() -> dict[str, str]:
        def work() -> None:
            log.warning("price feed stale")

        await anyio.to_thread.run_sync(errpolicy.carry(work))
        return {"ok": "yes"}

    return app


def guarded(app: Any, reports: list[errpolicy.Report]) -> Any:
    """A pure ASGI middleware that opens a guard around each request."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        policy = errpolicy.Policy(raise_on="NONE", record="ALL")
        async with errpolicy.guard("request", policy=policy) as report:
            await app(scope, receive, send)
        reports.append(report)

    return middleware


async def test_fastapi_sync_and_async_endpoints_share_the_session(
    async_store: AsyncMemcacheSessionStore,
) -> None:
    """A sync endpoint (in the thread pool) and an async one change the same session."""
    app = SessionMiddleware(fastapi_app(), async_store)
    async with client(app) as http:
        results = [(await http.get(path)).json()["n"] for path in ("/sync", "/async", "/sync")]
    assert [1, 2, 3] == results


async def test_a_guard_in_async_middleware_sees_a_thread_only_when_carried(
    async_store: AsyncMemcacheSessionStore,
) -> None:
    """A sync endpoint runs in a worker thread, outside the middleware's guard; work
    handed to a thread with errpolicy.carry reports to it."""
    reports: list[errpolicy.Report] = []
    app = guarded(SessionMiddleware(fastapi_app(), async_store), reports)
    async with client(app) as http:
        await http.get("/warn-sync")
        await http.get("/warn-carried")
    seen = [[event.message for event in report.events] for report in reports]
    assert [[], ["price feed stale"]] == seen
