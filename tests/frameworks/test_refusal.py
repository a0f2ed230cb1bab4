"""The 503: a log line that names what happened, rate-limited; a page that tells the truth."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import pytest
from werkzeug.test import Client

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache import _refusal as refusal_module
from errpolicy_memcache._refusal import Throttle
from errpolicy_memcache.testing import MemcachedCluster
from errpolicy_memcache.wsgi import SessionMiddleware, get_session

if TYPE_CHECKING:
    from flask import Flask


class FrozenClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_app() -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


@pytest.fixture
def frozen_throttle(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """The process's throttle, replaced by a fresh one on a frozen clock."""
    clock = FrozenClock()
    monkeypatch.setattr(refusal_module, "THROTTLE", Throttle(interval=60.0, clock=clock))
    return clock


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "refusal")]


def test_throttle_logs_the_first_of_each_kind():
    """Two different signatures are both logged the first time they are seen."""
    throttle = Throttle(clock=FrozenClock())
    assert [0, 0] == [throttle.admit("a"), throttle.admit("b")]


def test_throttle_holds_back_repeats_and_counts_them():
    """Repeats within the interval are not logged; the next line after it tells how many."""
    clock = FrozenClock()
    throttle = Throttle(interval=10.0, clock=clock)
    seen = [throttle.admit("a") for _ in range(5)]
    clock.now += 10.0
    seen.append(throttle.admit("a"))
    assert [0, None, None, None, None, 4] == seen


def test_throttle_forgets_the_oldest_kind_when_full():
    """At most ``max_kinds`` signatures are remembered; a forgotten one logs again."""
    throttle = Throttle(max_kinds=2, clock=FrozenClock())
    for signature in ("a", "b", "c"):
        throttle.admit(signature)
    assert (0, None) == (throttle.admit("a"), throttle.admit("c"))


def test_log_line_names_outcome_key_and_each_node(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    caplog: pytest.LogCaptureFixture,
    frozen_throttle: FrozenClock,
):
    """The 503's log line gives the outcome, the key's short hash and every node's result."""
    client = Client(SessionMiddleware(counting_app(), store))
    client.get("/")
    for server in cluster.servers:
        server.kill()
    with caplog.at_level(logging.ERROR, logger="errpolicy_memcache.wsgi"):
        assert 503 == client.get("/").status_code
    (record,) = refusals(caplog)
    (outcome,) = record.refusal.outcomes  # type: ignore[attr-defined]
    message = record.getMessage()
    expected = ["session.start unavailable", f"key {outcome.key}"] + [
        f"{server.address} gets=refused" for server in cluster.servers
    ]
    assert expected == [part for part in expected if part in message]


def test_a_flood_of_refusals_logs_each_kind_once(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    caplog: pytest.LogCaptureFixture,
    frozen_throttle: FrozenClock,
):
    """Forty identical 503s log one line per kind of refusal, not forty."""
    client = Client(SessionMiddleware(counting_app(), store))
    client.get("/")
    for server in cluster.servers:
        server.kill()
    with caplog.at_level(logging.ERROR, logger="errpolicy_memcache.wsgi"):
        statuses = {client.get("/").status_code for _ in range(40)}
    lines = [r for r in caplog.records if r.name == "errpolicy_memcache.wsgi"]
    kinds = {getattr(r, "refusal", r).signature for r in lines}
    assert ({503}, len(kinds), True) == (statuses, len(lines), 1 <= len(lines) < 5)


def test_a_later_line_counts_what_was_held_back(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    caplog: pytest.LogCaptureFixture,
    frozen_throttle: FrozenClock,
    store_timeouts: dict[str, float],
):
    """After the interval, the same refusal is logged again with the count it held back."""
    store_down = MemcacheSessionStore(
        [cluster[0].address],
        "refusal-test-secret-0123456789",
        retry_after=60,
        replicas=1,
        **store_timeouts,
    )
    cluster[0].kill()
    client = Client(SessionMiddleware(counting_app(), store_down))
    with caplog.at_level(logging.ERROR, logger="errpolicy_memcache.wsgi"):
        client.get("/")  # refused: the breaker counts it
        for _ in range(10):  # refused until the breaker opens, then skipped
            client.get("/")
        frozen_throttle.now += 60.0
        client.get("/")
    store_down.close()
    assert True is any("more like it were not logged" in r.getMessage() for r in refusals(caplog))


def test_first_visit_page_promises_nothing(
    store: MemcacheSessionStore, cluster: MemcachedCluster, frozen_throttle: FrozenClock
):
    """A visitor without a session cookie is not told that a session is safe."""
    for server in cluster.servers:
        server.kill()
    response = Client(SessionMiddleware(counting_app(), store)).get("/")
    body = response.get_data()
    assert (503, False, True, str(len(body))) == (
        response.status_code,
        b"safe" in body,
        b"no session could be started" in body,
        response.headers["Content-Length"],
    )


def test_killed_nodes_page_says_the_session_may_be_lost(
    store: MemcacheSessionStore, cluster: MemcachedCluster, frozen_throttle: FrozenClock
):
    """When the nodes holding the session refuse connections, the page says it may be lost."""
    client = Client(SessionMiddleware(counting_app(), store))
    client.get("/")
    for server in cluster.servers:
        server.kill()
    body = client.get("/").get_data()
    assert (False, True) == (b"safe" in body, b"your session is lost" in body)


@pytest.mark.hangs
def test_hung_nodes_page_says_nothing_changed(
    store: MemcacheSessionStore, cluster: MemcachedCluster, frozen_throttle: FrozenClock
):
    """When the nodes only fail to answer in time, the page says nothing changed."""
    client = Client(SessionMiddleware(counting_app(), store))
    client.get("/")
    for server in cluster.servers:
        server.pause()
    try:
        body = client.get("/").get_data()
    finally:
        for server in cluster.servers:
            server.resume()
    assert (False, True) == (b"lost" in body, b"did not answer in time" in body)


def test_failed_save_page_says_the_change_may_be_lost(
    store: MemcacheSessionStore, cluster: MemcachedCluster, frozen_throttle: FrozenClock
):
    """A change that could not be stored is not called safe either."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        get_session(environ)["n"] = 2
        for server in cluster.servers:
            server.kill()  # after the load, before the save
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = Client(SessionMiddleware(counting_app(), store))
    client.get("/")
    client.application = SessionMiddleware(app, store)
    body = client.get("/").get_data()
    assert (False, True) == (b"safe" in body, b"may be lost" in body)


def counting_flask_app(store: MemcacheSessionStore) -> Flask:
    """A Flask app on ``store`` whose ``POST /hit`` counts in the session."""
    from flask import Flask, session

    from errpolicy_memcache.flask import init_app

    app = Flask(__name__)
    app.secret_key = "flask-refusal-test-secret-0123456789"

    @app.post("/hit")
    def hit() -> str:
        session["n"] = session.get("n", 0) + 1
        return "ok"

    init_app(app, store)
    return app


def test_flask_logs_the_same_line(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    caplog: pytest.LogCaptureFixture,
    frozen_throttle: FrozenClock,
):
    """The Flask glue's 503 log line names the outcome and the nodes too."""
    client = counting_flask_app(store).test_client()
    client.post("/hit")
    for server in cluster.servers:
        server.kill()
    with caplog.at_level(logging.ERROR, logger="errpolicy_memcache.flask"):
        assert 503 == client.post("/hit").status_code
    (record,) = refusals(caplog)
    assert True is ("session.start unavailable" in record.getMessage())


def test_flask_page_says_what_is_known(
    store: MemcacheSessionStore, cluster: MemcachedCluster, frozen_throttle: FrozenClock
):
    """Flask's 503 text is the WSGI middleware's: nothing promised that is not known."""
    app = counting_flask_app(store)
    client = app.test_client()
    client.post("/hit")
    for server in cluster.servers:
        server.kill()
    with_cookie = client.post("/hit").get_data()
    first_visit = app.test_client().post("/hit").get_data()
    assert (False, True, False, True) == (
        b"safe" in with_cookie,
        b"your session is lost" in with_cookie,
        b"safe" in first_visit,
        b"no session could be started" in first_visit,
    )
