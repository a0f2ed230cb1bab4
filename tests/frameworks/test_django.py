"""The Django session engine against real memcached: SessionBase API, middleware, 503."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import types
import uuid
from collections.abc import Iterator
from typing import Any

import django
import errpolicy
import pytest
from django.conf import settings

if not settings.configured:
    # Only what must be there before django.setup(); the rest is overridden per test,
    # so another module (or a docs example) that configured Django first does not matter.
    settings.configure(SECRET_KEY="django-secret-key-0123456789abcdef", USE_TZ=True)
    django.setup()

from django.contrib.sessions.backends.base import UpdateError  # after settings.configure
from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import path

from errpolicy_memcache.django import SessionStore, get_store
from errpolicy_memcache.testing import MemcachedCluster

_state: dict[str, Any] = {}


def kill_all(cluster: MemcachedCluster) -> None:
    """Every node down at once: no replica can answer."""
    for server in cluster.servers:
        server.kill()


def count(request: HttpRequest) -> JsonResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return JsonResponse({"n": request.session["n"]})


def peek(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"n": request.session.get("n")})


def logged_out_elsewhere(request: HttpRequest) -> JsonResponse:
    request.session["n"] = 99
    key = request.session.session_key
    assert key is not None
    SessionStore().delete(key)  # what a concurrent logout request does
    return JsonResponse({})


def outage_during_view(request: HttpRequest) -> JsonResponse:
    request.session["n"] = 1
    kill_all(_state["cluster"])
    return JsonResponse({})


_urls = types.ModuleType("frameworks_django_urls")
_urls.urlpatterns = [  # type: ignore[attr-defined]
    path("count", count),
    path("peek", peek),
    path("logged-out-elsewhere", logged_out_elsewhere),
    path("outage", outage_during_view),
]


@pytest.fixture(autouse=True)
def django_store(
    cluster: MemcachedCluster, recorded: list[Any], store_timeouts: dict[str, float]
) -> Iterator[None]:
    """Point the engine at the test cluster (a changed setting rebuilds the store)."""
    _state["cluster"] = cluster
    with override_settings(
        SESSION_ENGINE="errpolicy_memcache.django",
        ALLOWED_HOSTS=["testserver"],
        MIDDLEWARE=[
            "errpolicy_memcache.django.SessionUnavailableMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
        ],
        ROOT_URLCONF=_urls,
        ERRPOLICY_MEMCACHE_SERVERS=cluster.addresses,
        ERRPOLICY_MEMCACHE_OPTIONS={**store_timeouts, "retry_after": 60.0},
    ):
        yield
    _state.clear()


def saved(**data: Any) -> SessionStore:
    """A stored session holding ``data``."""
    session = SessionStore()
    session.update(data)
    session.save()
    return session


def test_new_session_is_empty():
    """A fresh SessionStore has no key, no data and nothing to save."""
    session = SessionStore()
    assert (None, {}, False) == (session.session_key, dict(session.items()), session.modified)


def test_saved_data_loads_back():
    """What one request saves, the next one loads."""
    session = saved(user="ada", n=1)
    assert {"user": "ada", "n": 1} == dict(SessionStore(session.session_key).items())


def test_create_makes_a_key_that_exists():
    """``create()`` stores an empty session under a fresh key."""
    session = SessionStore()
    session.create()
    assert True is session.exists(session.session_key)


def test_cycle_key_keeps_data_under_a_new_key():
    """``cycle_key()`` (Django's login) moves the data and makes the old key dead."""
    session = saved(user="ada")
    old = session.session_key
    session.cycle_key()
    assert (False, {"user": "ada"}) == (
        session.exists(old),
        dict(SessionStore(session.session_key).items()),
    )


def test_flush_forgets_data_and_key():
    """``flush()`` (Django's logout) clears the data and the stored session."""
    session = saved(user="ada")
    old = session.session_key
    session.flush()
    assert (None, {}, False) == (session.session_key, dict(session.items()), session.exists(old))


def test_delete_by_key():
    """``delete(key)`` makes the key stop existing."""
    session = saved(n=1)
    SessionStore().delete(session.session_key)
    assert False is SessionStore().exists(session.session_key)


def test_unknown_key_loads_empty_without_a_key():
    """An unknown key gives an empty session and is not adopted."""
    session = SessionStore("x" * 43)
    assert ({}, None) == (dict(session.items()), session.session_key)


def test_exists_without_a_key_is_false():
    """``exists`` of an empty key is False."""
    assert False is SessionStore().exists("")


def test_save_of_a_deleted_session_raises_update_error():
    """Saving a session that was deleted meanwhile raises UpdateError, as Django expects."""
    session = saved(n=1)
    SessionStore().delete(session.session_key)
    session["n"] = 2
    with pytest.raises(UpdateError):
        session.save()


def test_set_expiry_is_kept():
    """``set_expiry`` survives a save and a load."""
    session = saved(n=1)
    session.set_expiry(600)
    session.save()
    assert 600 == SessionStore(session.session_key).get_expiry_age()


def test_expiry_in_the_past_is_unreadable_at_once():
    """A session saved with an expiry in the past is gone, not kept for a second."""
    session = saved(n=1)
    session.set_expiry(-10)
    session.save()
    key = session.session_key
    assert ({}, False) == (dict(SessionStore(key).items()), SessionStore().exists(key))


def test_session_past_its_expiry_date_is_not_loaded():
    """An expiry date (set_expiry with a datetime) that passed since the save ends the
    session, though reads renewed the stored copy."""
    stored = get_store().new_session()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    stored.update({"_session_expiry": past.isoformat(), "n": 1})
    get_store().save(stored, ttl=600)
    session = SessionStore(stored.id)
    assert ({}, None) == (dict(session.items()), session.session_key)


def test_session_before_its_expiry_date_is_loaded():
    """An expiry date still ahead keeps the session."""
    session = saved(n=1)
    session.set_expiry(dt.timedelta(minutes=10))
    session.save()
    assert 1 == SessionStore(session.session_key)["n"]


def test_new_session_with_an_expiry_in_the_past_is_not_stored():
    """A new session that expired before its first save is never stored."""
    session = SessionStore()
    session["n"] = 1
    session.set_expiry(-10)
    session.save()
    assert False is SessionStore().exists(session.session_key)


DAY = 86400


def test_default_settings_keep_a_session_past_a_day():
    """With SESSION_COOKIE_AGE's two weeks a session outlives the store's one-day default."""
    now = [1_000_000.0]
    with override_settings(ERRPOLICY_MEMCACHE_OPTIONS={"clock": lambda: now[0]}):
        session = saved(n=1)
        now[0] += 2 * DAY
        assert {"n": 1} == dict(SessionStore(session.session_key).items())


def test_memcached_keeps_a_session_for_session_cookie_age(stored_ttls: Any):
    """The copies are written to live SESSION_COOKIE_AGE, not the store's absolute one day."""
    session = saved(n=1)
    ttls = stored_ttls(session.session_key)
    assert [True, True] == [settings.SESSION_COOKIE_AGE - 60 <= ttl for ttl in ttls]


def test_absolute_ttl_in_options_still_caps_the_lifetime():
    """An ``absolute_ttl`` set on purpose in ERRPOLICY_MEMCACHE_OPTIONS ends the session."""
    now = [1_000_000.0]
    options = {"clock": lambda: now[0], "absolute_ttl": 3600}
    with override_settings(ERRPOLICY_MEMCACHE_OPTIONS=options):
        session = saved(n=1)
        now[0] += 7200
        assert {} == dict(SessionStore(session.session_key).items())


def test_values_the_cache_engine_took_come_back_the_same():
    """datetime, date, time, UUID, Decimal, set, tuple and bytes survive a save and a load."""
    values = {
        "when": dt.datetime(2026, 11, 30, 14, 52, tzinfo=dt.UTC),
        "day": dt.date(2026, 11, 30),
        "at": dt.time(9, 30),
        "id": uuid.UUID(int=7),
        "price": decimal.Decimal("9.99"),
        "tags": {"a", "b"},
        "pair": (1, 2),
        "raw": b"\x00\x01",
    }
    session = saved(**values)
    back = dict(SessionStore(session.session_key).items())
    assert (values, {k: type(v) for k, v in values.items()}) == (
        back,
        {k: type(v) for k, v in back.items()},
    )


def test_expire_at_browser_close_is_kept():
    """``set_expiry(0)`` survives a save and a load."""
    session = saved(n=1)
    session.set_expiry(0)
    session.save()
    assert True is SessionStore(session.session_key).get_expire_at_browser_close()


def test_clear_expired_is_a_no_op():
    """memcached expires sessions itself: ``clear_expired`` does nothing and does not fail."""
    assert None is SessionStore.clear_expired()


async def test_async_api_round_trip():
    """``asave`` and ``aload`` work like their sync twins."""
    session = SessionStore()
    await session.aset("n", 5)
    await session.asave()
    assert 5 == await SessionStore(session.session_key).aget("n")


def test_all_nodes_down_raises_instead_of_empty_session(cluster: MemcachedCluster):
    """A load that no replica could answer raises; it never looks like a missing session."""
    session = saved(n=1)
    kill_all(cluster)
    with pytest.raises(errpolicy.PolicyViolation, match=r"session\.start"):
        SessionStore(session.session_key).load()


def test_one_node_killed_keeps_the_session(cluster: MemcachedCluster):
    """With two replicas one dead node is invisible."""
    session = saved(n=1)
    cluster[2].kill()
    assert {"n": 1} == dict(SessionStore(session.session_key).items())


def test_requests_keep_the_session():
    """Django's own SessionMiddleware with this engine keeps the session between requests."""
    client = Client()
    client.get("/count")
    assert {"n": 2} == client.get("/count").json()


def test_concurrent_logout_interrupts_the_request():
    """A session deleted during the request gives SessionInterrupted (400), not a revival."""
    client = Client()
    client.get("/count")
    response = client.get("/logged-out-elsewhere")
    key = client.cookies["sessionid"].value
    assert (400, False) == (response.status_code, SessionStore().exists(key))


def test_all_nodes_down_answers_503(cluster: MemcachedCluster):
    """A view that needs the session gets a 503 with Retry-After when no replica answers."""
    client = Client()
    client.get("/count")
    kill_all(cluster)
    response = client.get("/peek")
    assert (503, "5") == (response.status_code, response["Retry-After"])


def test_the_503_page_says_what_is_known(cluster: MemcachedCluster):
    """No "your session is safe" when the nodes that held the session were killed."""
    client = Client()
    client.get("/count")
    kill_all(cluster)
    with_cookie = client.get("/peek").content
    assert (False, True) == (b"safe" in with_cookie, b"your session is lost" in with_cookie)


def test_failed_save_answers_503():
    """A change that could not be stored is answered with a 503."""
    # As a real server does: the test client would re-raise what Django logged as a 500.
    response = Client(raise_request_exception=False).get("/outage")
    assert (503, None) == (response.status_code, response.cookies.get("sessionid"))


def test_store_is_built_from_settings(cluster: MemcachedCluster):
    """``ERRPOLICY_MEMCACHE_*`` settings decide the store's nodes."""
    expected = tuple(cluster.addresses)
    assert expected == tuple(node.address for node in get_store().nodes)


def test_read_only_request_releases_the_lock():
    """With ``locking=True`` the middleware frees the lock of a request that saved nothing."""
    with override_settings(ERRPOLICY_MEMCACHE_OPTIONS={"locking": True, "lock_timeout": 0.2}):
        client = Client()
        client.get("/count")
        statuses = [client.get("/peek").status_code for _ in range(3)]
        assert ([200, 200, 200], {"n": 2}) == (statuses, client.get("/count").json())


def test_save_errors_log_logs_the_lost_change_instead_of_raising(
    cluster: MemcachedCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """ERRPOLICY_SESSION_SAVE_ERRORS="log": a save no node took is logged, not raised."""
    kill_all(cluster)
    with (
        override_settings(ERRPOLICY_SESSION_SAVE_ERRORS="log"),
        caplog.at_level(logging.ERROR, logger="errpolicy_memcache.django"),
    ):
        session = SessionStore()
        session["n"] = 1
        session.create()
    lines = [r.getMessage() for r in caplog.records if r.name == "errpolicy_memcache.django"]
    assert [True] == ["the change is lost" in line for line in lines]
