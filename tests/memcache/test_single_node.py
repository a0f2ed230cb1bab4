"""One local memcached (the usual dev setup): one copy, and one boot warning: no failover."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from errpolicy.testing import ErrGuard

from errpolicy_memcache import ConfigurationError, MemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import SECRET


def test_one_server_keeps_sessions(
    make_store: Callable[..., MemcacheSessionStore], cluster: MemcachedCluster
) -> None:
    """A store on one server, replicas left unset, saves and reads a session."""
    store = make_store([cluster[0].address])
    session = store.new_session()
    session["user"] = "ada"
    store.save(session)
    assert (1, {"user": "ada"}) == (store._core._replicas, dict(store.start(session.id)))


def test_one_server_warns_once_at_boot(
    make_store: Callable[..., MemcacheSessionStore],
    cluster: MemcachedCluster,
    errguard: ErrGuard,
) -> None:
    """Building the store warns once that there is no failover; requests add no warning."""
    store = make_store([cluster[0].address])
    for _ in range(3):
        session = store.new_session()
        session["n"] = 1
        store.save(session)
        store.start(session.id)
    (event,) = errguard.assert_logged(logger="errpolicy_memcache", level=logging.WARNING)
    assert True is ("no failover" in event.message)


def test_two_servers_keep_two_copies_without_warning(
    make_store: Callable[..., MemcacheSessionStore],
    cluster: MemcachedCluster,
    errguard: ErrGuard,
) -> None:
    """The default stays two copies when there are two servers or more."""
    store = make_store(cluster.addresses[:2])
    assert (2, ()) == (store._core._replicas, errguard.events)


def test_two_copies_on_one_server_name_the_setting() -> None:
    """``replicas=2`` given on purpose with one server is refused, naming what to set."""
    with pytest.raises(ConfigurationError) as caught:
        MemcacheSessionStore(["127.0.0.1:11211"], SECRET, replicas=2)
    assert True is ("set replicas=1" in str(caught.value))
