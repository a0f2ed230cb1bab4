"""The Flask session interface against real memcached."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from errpolicy.testing import ErrGuard
from flask import Flask, session

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache.flask import (
    MemcacheSessionInterface,
    SessionStoreUnavailable,
    UnavailableSession,
    init_app,
    regenerate_session,
)
from errpolicy_memcache.testing import MemcachedCluster

SECRET = "flask-secret-key-0123456789abcdef"


def kill_all(cluster: MemcachedCluster) -> None:
    """Every node down at once: no replica can answer."""
    for server in cluster.servers:
        server.kill()


def make_app(store: MemcacheSessionStore | None = None, **config: Any) -> Flask:
    """A small app: /count counts, /login regenerates, /logout clears, /peek reads."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, **config)
    app.extensions["views_run"] = []
    init_app(app, store)

    @app.get("/count")
    def count() -> dict[str, Any]:
        app.extensions["views_run"].append("count")
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}

    @app.get("/login")
    def login() -> dict[str, Any]:
        regenerate_session()
        session["user"] = "ada"
        return {"user": "ada"}

    @app.get("/logout")
    def logout() -> dict[str, Any]:
        session.clear()
        return {}

    @app.get("/peek")
    def peek() -> dict[str, Any]:
        return {"n": session.get("n"), "user": session.get("user")}

    @app.get("/remember-me")
    def remember_me() -> dict[str, Any]:
        session.permanent = True
        session["user"] = "ada"
        return {}

    @app.get("/cart")
    def cart() -> dict[str, Any]:
        session.setdefault("cart", [])
        session["cart"].append(1)
        session.modified = True  # a nested change, made visible as Flask documents
        return {"cart": session["cart"]}

    return app


@pytest.fixture
def app(store: MemcacheSessionStore) -> Flask:
    """The app on the test store."""
    return make_app(store)


def test_session_survives_between_requests(app: Flask):
    """The cookie brings the stored session back."""
    client = app.test_client()
    client.get("/count")
    assert {"n": 2} == client.get("/count").json


def cookie_flags(header: str) -> list[str]:
    """The flags of a Set-Cookie header (and its SameSite), sorted."""
    return sorted(part for part in header.split("; ")[1:] if "=" not in part or "Same" in part)


def test_cookie_flags_follow_flask_config(store: MemcacheSessionStore):
    """Flask's SESSION_COOKIE_* settings shape the cookie; SameSite is unset, as in Flask."""
    app = make_app(store, SESSION_COOKIE_NAME="sid", SESSION_COOKIE_SECURE=True)
    header = app.test_client().get("/count").headers["Set-Cookie"]
    assert (True, ["HttpOnly", "Secure"]) == (header.startswith("sid="), cookie_flags(header))


def test_cookie_samesite_and_partitioned_follow_flask_config(store: MemcacheSessionStore):
    """SESSION_COOKIE_SAMESITE and SESSION_COOKIE_PARTITIONED (Flask 3.1) reach the cookie."""
    app = make_app(store, SESSION_COOKIE_SAMESITE="None", SESSION_COOKIE_PARTITIONED=True)
    header = app.test_client().get("/count").headers["Set-Cookie"]
    assert ["HttpOnly", "Partitioned", "SameSite=None", "Secure"] == cookie_flags(header)


def test_deleted_cookie_is_partitioned_too(store: MemcacheSessionStore):
    """The cookie that logs out names the same partition, or the browser keeps the old one."""
    app = make_app(store, SESSION_COOKIE_PARTITIONED=True)
    client = app.test_client()
    client.get("/count")
    header = client.get("/logout").headers["Set-Cookie"]
    assert (True, True) == (header.startswith("session=;"), "Partitioned" in cookie_flags(header))


def test_reading_a_session_without_a_cookie_varies_on_cookie(app: Flask):
    """A view that read the session adds Vary: Cookie even when no cookie came."""
    response = app.test_client().get("/peek")
    assert (None, True) == (response.headers.get("Set-Cookie"), "Cookie" in response.vary)


def test_a_view_that_never_reads_the_session_does_not_vary(app: Flask):
    """A page that did not touch the session can be shared by caches: no Vary: Cookie."""

    @app.get("/static-page")
    def static_page() -> str:
        return "the same for everyone"

    assert "Cookie" not in app.test_client().get("/static-page").vary


def test_reading_a_new_session_sets_no_cookie(app: Flask):
    """An untouched new session is not stored and sends no cookie."""
    assert None is app.test_client().get("/peek").headers.get("Set-Cookie")


def test_all_nodes_down_answers_503_before_the_view(app: Flask, cluster: MemcachedCluster):
    """No replica answering gives a 503 with Retry-After, and the view does not run."""
    client = app.test_client()
    client.get("/count")
    kill_all(cluster)
    response = client.get("/count")
    assert (503, "5", ["count"]) == (
        response.status_code,
        response.headers["Retry-After"],
        app.extensions["views_run"],
    )


def test_one_node_killed_keeps_the_session(app: Flask, cluster: MemcachedCluster):
    """With two replicas a dead node is invisible to the user."""
    client = app.test_client()
    client.get("/count")
    cluster[1].kill()
    client.get("/count")
    assert {"n": 3} == client.get("/count").json


def test_failed_save_answers_503(app: Flask, cluster: MemcachedCluster):
    """A change that could not be stored is answered with a 503, not a 200."""
    kill_all(cluster)
    response = app.test_client().get("/count")
    assert (503, None) == (response.status_code, response.headers.get("Set-Cookie"))


def test_failed_save_with_log_keeps_the_response(
    store: MemcacheSessionStore, cluster: MemcachedCluster
):
    """``ERRPOLICY_SESSION_SAVE_ERRORS = "log"`` keeps the view's answer."""
    app = make_app(store, ERRPOLICY_SESSION_SAVE_ERRORS="log")
    kill_all(cluster)
    assert 200 == app.test_client().get("/count").status_code


def test_clear_logs_out(app: Flask, store: MemcacheSessionStore):
    """``session.clear()`` destroys the stored session and deletes the cookie."""
    client = app.test_client()
    client.get("/count")
    cookie = client.get_cookie("session")
    assert cookie is not None
    response = client.get("/logout")
    assert (True, False) == (
        "session=;" in response.headers["Set-Cookie"],
        store.exists(cookie.value),
    )


def test_regenerate_session_changes_the_id(app: Flask, store: MemcacheSessionStore):
    """``regenerate_session()`` sends a new id and the old one stops working."""
    client = app.test_client()
    client.get("/count")
    old = client.get_cookie("session")
    assert old is not None
    client.get("/login")
    new = client.get_cookie("session")
    assert (True, False, {"n": 1, "user": "ada"}) == (
        new is not None and new.value != old.value,
        store.exists(old.value),
        client.get("/peek").json,
    )


def test_nested_change_marked_modified_is_saved(app: Flask):
    """Setting ``session.modified = True`` after a nested change stores it."""
    client = app.test_client()
    client.get("/cart")
    assert {"cart": [1, 1]} == client.get("/cart").json


def test_store_from_config(cluster: MemcachedCluster):
    """Without a store argument, ``ERRPOLICY_MEMCACHE_*`` in app.config builds one."""
    app = make_app(
        None,
        ERRPOLICY_MEMCACHE_SERVERS=",".join(cluster.addresses),
        ERRPOLICY_MEMCACHE_REPLICAS=3,
    )
    client = app.test_client()
    client.get("/count")
    store = app.extensions["errpolicy_memcache"]
    assert (3, {"n": 2}) == (store._core._replicas, client.get("/count").json)


def test_missing_servers_fail_at_init(memcached_binary: str):
    """A configuration mistake shows at ``init_app``, not on the first request."""
    with pytest.raises(ValueError, match="ERRPOLICY_MEMCACHE_SERVERS"):
        make_app(None)


def test_unavailable_session_raises_on_access():
    """Code that reaches an unloadable session gets the error, never empty data."""
    placeholder = UnavailableSession(RuntimeError("down"))
    with pytest.raises(RuntimeError, match="down"):
        placeholder.get("user")


def test_interface_without_init_app_fails_loudly(
    store: MemcacheSessionStore, cluster: MemcachedCluster
):
    """Installed by hand, a view that touches an unloadable session gets a 500, not {}."""
    app = Flask(__name__)
    app.secret_key = SECRET
    app.session_interface = MemcacheSessionInterface(store)

    @app.get("/peek")
    def peek() -> dict[str, Any]:
        return {"user": session.get("user")}

    client = app.test_client()
    client.set_cookie("session", store.new_session().id)
    kill_all(cluster)
    assert 500 == client.get("/peek").status_code


def test_app_can_answer_the_503_itself(store: MemcacheSessionStore, cluster: MemcachedCluster):
    """An ``errorhandler(503)`` of the app replaces the default plain-text answer."""
    app = make_app(store)

    @app.errorhandler(SessionStoreUnavailable)
    def sorry(error: SessionStoreUnavailable) -> tuple[str, int]:
        return f"sorry, retry in {error.retry_after}s", 503

    client = app.test_client()
    client.get("/count")
    kill_all(cluster)
    assert b"sorry, retry in 5s" == client.get("/count").data


def stored_id(client: Any) -> str:
    """The session id in the client's cookie."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    return str(cookie.value)


def test_permanent_session_lives_permanent_session_lifetime(
    make_store: Callable[..., MemcacheSessionStore], stored_ttls: Callable[[str], list[int]]
):
    """A permanent session's copies live PERMANENT_SESSION_LIFETIME, as its cookie does."""
    store = make_store(absolute_ttl=None)
    app = make_app(store, PERMANENT_SESSION_LIFETIME=timedelta(days=7))
    client = app.test_client()
    client.get("/remember-me")
    ttls = stored_ttls(stored_id(client))
    assert [True, True] == [7 * 86400 - 60 <= ttl <= 7 * 86400 for ttl in ttls]


def test_default_permanent_lifetime_is_capped_at_30_days(
    make_store: Callable[..., MemcacheSessionStore], stored_ttls: Callable[[str], list[int]]
):
    """Flask's default 31 days is stored as memcached's longest relative TTL, 30 days."""
    client = make_app(make_store(absolute_ttl=None)).test_client()
    client.get("/remember-me")
    ttls = stored_ttls(stored_id(client))
    assert [True, True] == [30 * 86400 - 60 <= ttl <= 30 * 86400 for ttl in ttls]


def test_browser_session_lives_the_idle_ttl(
    store: MemcacheSessionStore, stored_ttls: Callable[[str], list[int]]
):
    """A session that is not permanent lives the store's idle_ttl (its cookie dies with the
    browser)."""
    client = make_app(store).test_client()
    client.get("/count")
    ttls = stored_ttls(stored_id(client))
    assert [True, True] == [1800 - 60 <= ttl <= 1800 for ttl in ttls]


def test_store_from_config_has_no_absolute_ttl(cluster: MemcachedCluster):
    """A store built from app.config leaves the lifetime to Flask: no absolute_ttl."""
    app = make_app(None, ERRPOLICY_MEMCACHE_SERVERS=cluster.addresses)
    assert None is app.extensions["errpolicy_memcache"]._absolute_ttl


def test_given_store_with_a_shorter_absolute_ttl_is_logged(
    store: MemcacheSessionStore, errguard: ErrGuard
):
    """A store built by hand with the one-day default is named at init_app: it would end
    sessions that Flask keeps for 31 days."""
    make_app(store)
    errguard.assert_logged(r"absolute_ttl \(86400 s\)", logger="errpolicy_memcache.flask")


def test_store_from_config_logs_nothing_about_lifetimes(
    cluster: MemcachedCluster, errguard: ErrGuard
):
    """A store built from app.config leaves the lifetime to Flask and warns of nothing."""
    make_app(None, ERRPOLICY_MEMCACHE_SERVERS=cluster.addresses)
    assert () == errguard.events


def test_values_json_cannot_hold_come_back_the_same(store: MemcacheSessionStore):
    """A datetime and a tuple stored by one request are the same objects in the next."""
    app = make_app(store)
    stamp = datetime(2026, 11, 30, 14, 52, tzinfo=UTC)

    @app.get("/stamp")
    def stamp_view() -> dict[str, Any]:
        if "at" not in session:
            session["at"] = stamp
            session["pair"] = (1, 2)
            return {}
        return {"same": session["at"] == stamp and session["pair"] == (1, 2)}

    client = app.test_client()
    client.get("/stamp")
    assert {"same": True} == client.get("/stamp").json
