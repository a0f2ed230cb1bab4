"""The Django engine's native async methods against real memcached: they run on the
async store, not through the sync methods in a thread."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import django
import errpolicy
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(SECRET_KEY="django-secret-key-0123456789abcdef", USE_TZ=True)
    django.setup()

from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.test import override_settings

from errpolicy_memcache._django_aio import get_async_store
from errpolicy_memcache.django import SessionStore
from errpolicy_memcache.testing import MemcachedCluster


@pytest.fixture(autouse=True)
def django_store(
    cluster: MemcachedCluster, monkeypatch: pytest.MonkeyPatch, store_timeouts: dict[str, float]
) -> Iterator[None]:
    """Point the engine at the test cluster; the sync methods fail if called."""
    with override_settings(
        SESSION_ENGINE="errpolicy_memcache.django",
        ERRPOLICY_MEMCACHE_SERVERS=cluster.addresses,
        ERRPOLICY_MEMCACHE_OPTIONS={**store_timeouts, "retry_after": 60.0},
    ):
        for name in ("load", "save", "exists", "delete", "create"):
            monkeypatch.setattr(SessionStore, name, _no_sync(name))
        yield


def _no_sync(name: str) -> Any:
    def called(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"the sync {name}() ran")

    return called


async def _saved(**data: Any) -> SessionStore:
    session = SessionStore()
    await session.aupdate(data)
    await session.asave()
    return session


async def test_asave_and_aload_round_trip() -> None:
    """Data saved with asave loads back with aload, on the async store."""
    session = await _saved(n=5)
    assert 5 == await SessionStore(session.session_key).aget("n")


async def test_acreate_makes_a_key_that_exists() -> None:
    """acreate stores an empty session whose key aexists reports."""
    session = SessionStore()
    await session.acreate()
    assert await session.aexists(session.session_key)


async def test_acycle_key_keeps_the_data_under_a_new_key() -> None:
    """Django's acycle_key (acreate + adelete): new key, same data, old key gone."""
    session = await _saved(n=1)
    old = session.session_key
    await session.acycle_key()
    assert (1, False) == (
        await SessionStore(session.session_key).aget("n"),
        await session.aexists(old),
    )


async def test_aflush_forgets_data_and_key() -> None:
    """aflush deletes the stored session and leaves no key."""
    session = await _saved(n=1)
    old = session.session_key
    await session.aflush()
    assert (None, False) == (session.session_key, await SessionStore().aexists(old))


async def test_asave_of_a_deleted_session_raises_update_error() -> None:
    """A session deleted meanwhile (a concurrent logout) is not saved again."""
    session = await _saved(n=1)
    await SessionStore().adelete(session.session_key)
    await session.aset("n", 2)
    with pytest.raises(UpdateError):
        await session.asave()


async def test_asave_must_create_refuses_a_taken_key() -> None:
    """must_create on a stored key raises CreateError."""
    session = await _saved(n=1)
    again = SessionStore(session.session_key)
    await again.aset("n", 2)
    with pytest.raises(CreateError):
        await again.asave(must_create=True)


async def test_aload_raises_when_no_node_answers(cluster: MemcachedCluster) -> None:
    """No silent logout: aload raises, and the engine keeps the error for the 503."""
    session = await _saved(n=1)
    for server in cluster.servers:
        server.kill()
    loading = SessionStore(session.session_key)
    with pytest.raises(errpolicy.PolicyViolation):
        await loading.aget("n")
    assert isinstance(loading.unavailable, errpolicy.PolicyViolation)


def test_the_async_store_is_built_from_the_settings(cluster: MemcachedCluster) -> None:
    """The async store runs on the configured nodes."""
    assert cluster.addresses == [node.address for node in get_async_store().nodes]


async def test_asave_errors_log_logs_the_lost_change_instead_of_raising(
    cluster: MemcachedCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """ERRPOLICY_SESSION_SAVE_ERRORS="log": a save no node took is logged, not raised."""
    for server in cluster.servers:
        server.kill()
    with (
        override_settings(ERRPOLICY_SESSION_SAVE_ERRORS="log"),
        caplog.at_level(logging.ERROR, logger="errpolicy_memcache.django"),
    ):
        session = SessionStore()
        await session.aset("n", 1)
        await session.acreate()
    lines = [r.getMessage() for r in caplog.records if r.name == "errpolicy_memcache.django"]
    assert [True] == ["the change is lost" in line for line in lines]


async def test_asave_raises_when_no_node_takes_it(cluster: MemcachedCluster) -> None:
    """By default a save no node took raises (the 503 of the middleware)."""
    for server in cluster.servers:
        server.kill()
    session = SessionStore()
    await session.aset("n", 1)
    with pytest.raises(errpolicy.PolicyViolation):
        await session.acreate()
