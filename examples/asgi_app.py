"""The example ASGI app: the Flask example's endpoints on FastAPI, with the sessions of
:class:`AsyncMemcacheSessionStore` through the pure-ASGI middleware.

Run by the failover demo (``python -m examples.failover_demo --asgi``); on its own::

    import uvicorn
    from examples.asgi_app import create_app
    app, store = create_app(["127.0.0.1:11211", "127.0.0.1:11212"], secret_key="change me")
    uvicorn.run(app, port=5000)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.asgi import STORE_SCOPE_KEY, SessionMiddleware


def create_app(
    servers: Sequence[str], secret_key: str, **store_options: Any
) -> tuple[SessionMiddleware, AsyncMemcacheSessionStore]:
    """The app (sessions on ``servers``, two replicas each) and its store."""
    store = AsyncMemcacheSessionStore(list(servers), secret_key, replicas=2, **store_options)
    app = FastAPI()

    @app.get("/")
    async def index(request: Request) -> Any:
        """Who is logged in, without touching the counter."""
        return {"user": request.session.get("user"), "count": request.session.get("count")}

    @app.post("/login")
    async def login(request: Request) -> Any:
        """Start a fresh session for the user named in the JSON body, with a new id."""
        body = await request.json() if await request.body() else {}
        user = str(body.get("user") or "anonymous")
        session = request.session
        await request.scope[STORE_SCOPE_KEY].regenerate(session)  # no session fixation
        session.clear()
        session["user"] = user
        session["count"] = 0
        return {"user": user, "count": 0}

    @app.post("/hit")
    async def hit(request: Request) -> Any:
        """Count one visit; 401 when the session does not know the user any more."""
        session = request.session
        if "user" not in session:
            return JSONResponse({"user": None, "count": None}, status_code=401)
        session["count"] = int(session["count"]) + 1
        return {"user": session["user"], "count": session["count"]}

    @app.post("/logout")
    async def logout(request: Request) -> Any:
        """Forget the user: the emptied session is destroyed and the cookie deleted."""
        request.session.clear()
        return {"user": None, "count": None}

    return SessionMiddleware(app, store, retry_after=1), store
