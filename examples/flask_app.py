"""The example Flask app: each user logs in and counts visits in a memcache session.

Run by the failover demo (``python -m examples.failover_demo``); on its own::

    from examples.flask_app import create_app
    app = create_app(["127.0.0.1:11211", "127.0.0.1:11212"], secret_key="change me")
    app.run(port=5000)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Flask, jsonify, request, session

from errpolicy_memcache.flask import init_app, regenerate_session


def create_app(servers: Sequence[str], secret_key: str, **store_options: Any) -> Flask:
    """A Flask app whose sessions live on ``servers`` with two replicas each."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key,
        ERRPOLICY_MEMCACHE_SERVERS=list(servers),
        ERRPOLICY_MEMCACHE_REPLICAS=2,
        ERRPOLICY_MEMCACHE_OPTIONS=store_options,
        ERRPOLICY_SESSION_RETRY_AFTER=1,
    )
    init_app(app)

    @app.get("/")
    def index() -> Any:
        """Who is logged in, without touching the counter."""
        return jsonify(user=session.get("user"), count=session.get("count"))

    @app.post("/login")
    def login() -> Any:
        """Start a fresh session for the user named in the JSON body, with a new id."""
        user = str((request.get_json(silent=True) or {}).get("user") or "anonymous")
        regenerate_session()  # a new id on login: no session fixation
        session.clear()
        session["user"] = user
        session["count"] = 0
        return jsonify(user=user, count=0)

    @app.post("/hit")
    def hit() -> Any:
        """Count one visit; 401 when the session does not know the user any more."""
        if "user" not in session:
            return jsonify(user=None, count=None), 401
        session["count"] = int(session["count"]) + 1
        return jsonify(user=session["user"], count=session["count"])

    @app.post("/logout")
    def logout() -> Any:
        """Forget the user: the emptied session is destroyed and the cookie deleted."""
        session.clear()
        return jsonify(user=None, count=None)

    return app
