"""The WSGI middleware against real memcached: cookies, saves, failover and the 503."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import pytest
from werkzeug.test import Client

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache._frameworks import CookieSettings, parse_cookie
from errpolicy_memcache.testing import MemcachedCluster
from errpolicy_memcache.wsgi import ENVIRON_KEY, STORE_ENVIRON_KEY, SessionMiddleware, get_session

Handler = Callable[[WSGIEnvironment], None]


def make_app(handler: Handler, calls: list[str], status: str = "200 OK") -> WSGIApplication:
    """A WSGI app that runs ``handler`` on the environ, then answers with the session."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        handler(environ)
        start_response(status, [("Content-Type", "text/plain")])
        return [repr(dict(get_session(environ))).encode()]

    return app


def count(environ: WSGIEnvironment) -> None:
    session = get_session(environ)
    session["n"] = session.get("n", 0) + 1


def read_only(environ: WSGIEnvironment) -> None:
    get_session(environ).get("n")


def kill_all(cluster: MemcachedCluster) -> None:
    """Every node down at once: no replica can answer."""
    for server in cluster.servers:
        server.kill()


def set_cookies(response: object) -> list[str]:
    return response.headers.getlist("Set-Cookie")  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def calls() -> list[str]:
    """Paths the app was called for."""
    return []


def test_untouched_new_session_sets_no_cookie(store: MemcacheSessionStore, calls: list[str]):
    """A request that does not change the new session gets no cookie and costs no write."""
    client = Client(SessionMiddleware(make_app(read_only, calls), store))
    response = client.get("/")
    assert [] == set_cookies(response)


def test_changed_session_sets_a_safe_cookie(store: MemcacheSessionStore, calls: list[str]):
    """The cookie is HttpOnly, SameSite=Lax, Path=/, and not Secure unless asked."""
    client = Client(SessionMiddleware(make_app(count, calls), store))
    (cookie,) = set_cookies(client.get("/"))
    attributes = cookie.split("; ")[1:]
    assert ["Path=/", "HttpOnly", "SameSite=Lax"] == attributes


def test_secure_cookie_when_configured(store: MemcacheSessionStore, calls: list[str]):
    """``secure=True`` adds the Secure attribute."""
    cookie = CookieSettings(name="sid", secure=True)
    client = Client(SessionMiddleware(make_app(count, calls), store, cookie=cookie))
    (header,) = set_cookies(client.get("/"))
    assert (True, True) == (header.startswith("sid="), "; Secure" in header)


def test_session_survives_between_requests(store: MemcacheSessionStore, calls: list[str]):
    """The cookie brings the stored session back on the next request."""
    client = Client(SessionMiddleware(make_app(count, calls), store))
    client.get("/")
    client.get("/")
    assert b"{'n': 3}" == client.get("/").data


def test_cookie_is_not_resent_when_unchanged_id(store: MemcacheSessionStore, calls: list[str]):
    """A saved session whose id did not change sends no new cookie."""
    client = Client(SessionMiddleware(make_app(count, calls), store))
    client.get("/")
    assert [] == set_cookies(client.get("/"))


def test_unknown_id_gets_a_new_session_and_loses_its_cookie(
    store: MemcacheSessionStore, calls: list[str]
):
    """An id the store does not know is never adopted; its cookie is deleted."""
    client = Client(SessionMiddleware(make_app(read_only, calls), store))
    client.set_cookie("session", "x" * 43)
    (cookie,) = set_cookies(client.get("/"))
    assert cookie.startswith("session=; Max-Age=0")


def test_session_in_environ(store: MemcacheSessionStore):
    """The app finds the session and the store under the documented environ keys."""
    seen: dict[str, object] = {}

    def handler(environ: WSGIEnvironment) -> None:
        seen["session"] = environ[ENVIRON_KEY]
        seen["store"] = environ[STORE_ENVIRON_KEY]

    Client(SessionMiddleware(make_app(handler, []), store)).get("/")
    assert (True, store) == (hasattr(seen["session"], "id"), seen["store"])


def test_all_nodes_down_answers_503_without_calling_the_app(
    store: MemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
):
    """No replica answering gives a 503 with Retry-After; the app never runs."""
    client = Client(SessionMiddleware(make_app(count, calls), store, retry_after=7))
    client.get("/")
    kill_all(cluster)
    response = client.get("/again")
    assert (503, "7", ["/"]) == (response.status_code, response.headers["Retry-After"], calls)


def test_one_node_killed_keeps_the_session(
    store: MemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
):
    """With two replicas, one dead node costs nothing visible to the user."""
    client = Client(SessionMiddleware(make_app(count, calls), store))
    for _ in range(3):
        client.get("/")
    cluster[0].kill()
    statuses = [client.get("/").status_code for _ in range(3)]
    assert ([200, 200, 200], b"{'n': 7}") == (statuses, client.get("/").data)


def test_failed_save_answers_503(
    store: MemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
):
    """A change the store could not keep is not reported to the client as done."""
    kill_all(cluster)
    response = Client(SessionMiddleware(make_app(count, calls), store)).get("/")
    assert (503, [], ["/"]) == (response.status_code, set_cookies(response), calls)


def test_failed_save_with_log_keeps_the_response(
    store: MemcacheSessionStore, cluster: MemcachedCluster, calls: list[str]
):
    """``save_errors="log"`` keeps the app's answer and sets no cookie."""
    kill_all(cluster)
    middleware = SessionMiddleware(make_app(count, calls), store, save_errors="log")
    response = Client(middleware).get("/")
    assert (200, []) == (response.status_code, set_cookies(response))


def test_failed_save_replaces_a_streamed_body(
    store: MemcacheSessionStore, cluster: MemcachedCluster
):
    """A generator app that starts its response lazily still gets the clean 503 body."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        get_session(environ)["n"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        yield b"rest"

    kill_all(cluster)
    response = Client(SessionMiddleware(app, store)).get("/")
    assert (503, False) == (response.status_code, b"partial" in response.data)


def test_server_error_is_not_saved(store: MemcacheSessionStore, calls: list[str]):
    """A 5xx answer does not store what the failed request changed."""
    client = Client(SessionMiddleware(make_app(count, calls, "500 Oops"), store))
    response = client.get("/")
    assert [] == set_cookies(response)


def test_regenerate_sends_a_new_id_and_kills_the_old(store: MemcacheSessionStore, calls: list[str]):
    """After ``store.regenerate`` the client gets the new id and the old one is dead."""

    def handler(environ: WSGIEnvironment) -> None:
        if environ["PATH_INFO"] == "/login":
            store.regenerate(get_session(environ))
        else:
            count(environ)

    client = Client(SessionMiddleware(make_app(handler, calls), store))
    client.get("/")
    old = client.get_cookie("session")
    assert old is not None
    client.get("/login")
    new = client.get_cookie("session")
    assert (True, False) == (new is not None and new.value != old.value, store.exists(old.value))


def test_emptied_session_is_destroyed(store: MemcacheSessionStore, calls: list[str]):
    """Clearing the session logs out: tombstone written, cookie deleted."""

    def handler(environ: WSGIEnvironment) -> None:
        if environ["PATH_INFO"] == "/logout":
            get_session(environ).clear()
        else:
            count(environ)

    client = Client(SessionMiddleware(make_app(handler, calls), store))
    client.get("/")
    cookie = client.get_cookie("session")
    assert cookie is not None
    response = client.get("/logout")
    assert (True, False) == (
        set_cookies(response)[0].startswith("session=; Max-Age=0"),
        store.exists(cookie.value),
    )


def test_parse_cookie_survives_malformed_neighbours():
    """A broken cookie next to ours does not hide the session id."""
    assert "abc" == parse_cookie('junk; =x; a="b; session=abc; other=1', "session")


def test_samesite_none_requires_secure():
    """Browsers drop SameSite=None without Secure, so the setting is refused."""
    with pytest.raises(ValueError, match="Secure"):
        CookieSettings(samesite="None")


def test_bad_save_errors_value_is_refused(store: MemcacheSessionStore):
    """Only "503" and "log" are accepted for ``save_errors``."""
    with pytest.raises(ValueError, match="save_errors"):
        SessionMiddleware(make_app(count, []), store, save_errors="ignore")  # type: ignore[arg-type]


def test_read_only_request_releases_the_lock(
    make_store: Callable[..., MemcacheSessionStore], calls: list[str]
):
    """With ``locking=True`` a request that saves nothing still frees the session."""
    store = make_store(locking=True, lock_timeout=0.2)

    def handler(environ: WSGIEnvironment) -> None:
        if environ["PATH_INFO"] == "/count":
            count(environ)

    client = Client(SessionMiddleware(make_app(handler, calls), store))
    client.get("/count")
    statuses = [client.get("/read").status_code for _ in range(3)]
    assert ([200, 200, 200], b"{'n': 2}") == (statuses, client.get("/count").data)


def test_change_after_start_response_is_reported(
    store: MemcacheSessionStore, caplog: pytest.LogCaptureFixture
):
    """A change made while the body streams is not saved, and a warning says so."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        get_session(environ)["late"] = True
        yield b"done"

    with caplog.at_level("WARNING", logger="errpolicy_memcache.wsgi"):
        Client(SessionMiddleware(app, store)).get("/").close()  # a server closes the body
    assert ["the session was changed after start_response; that change was not saved"] == [
        r.getMessage() for r in caplog.records
    ]


def test_unsaved_server_error_is_not_reported_as_late_change(
    store: MemcacheSessionStore, calls: list[str], caplog: pytest.LogCaptureFixture
):
    """A 5xx response leaves its change unsaved on purpose: no late-change warning."""
    with caplog.at_level("WARNING", logger="errpolicy_memcache.wsgi"):
        Client(SessionMiddleware(make_app(count, calls, "500 Oops"), store)).get("/").close()
    assert [] == caplog.records
