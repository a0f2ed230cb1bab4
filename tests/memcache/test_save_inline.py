"""The usual save's bookkeeping, written inline in ``home_saved``, keeps what the general
path keeps: the acknowledged version (``Known.ack``'s rule) and the remembered copy."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from errpolicy_memcache import MemcacheSessionStore, Session, _machine_write
from errpolicy_memcache._ids import new_session_id
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import SECRET

pytestmark = pytest.mark.memcached  # real memcached processes

Build = Callable[..., MemcacheSessionStore]


def _after(
    build_store: Build, cluster: MemcachedCluster, sid: str, *, short: bool, destroy: bool
) -> tuple[Any, ...]:
    """Save ``sid`` twice (destroying it between, from another copy of the session when
    ``destroy``), another session between; what the store then keeps for ``sid``, and
    whether it is the most recently kept."""
    store = build_store(cluster, secret_key=SECRET)
    with pytest.MonkeyPatch.context() as patch:
        if not short:  # the short save is taken only when every home breaker is CLOSED
            patch.setattr(_machine_write, "CLOSED", SimpleNamespace())
        first = Session(sid)
        first["n"] = 1
        store.save(first)
        stale = Session(sid, {"n": 2}, new=False, version=first.version)
        if destroy:
            store.destroy(first)
        store.save(Session(new_session_id(), {"other": 1}))  # kept after sid
        store.save(stale)
    known = store._core._known[sid]
    acked = known.acked
    assert acked is not None
    verified = None if known.verified is None else known.verified[1].payload
    order = list(store._core._known).index(sid) == len(store._core._known) - 1
    return (acked.tombstone, acked.version > first.version, verified, order, stale.new)


@pytest.mark.parametrize("destroy", [False, True], ids=["saved again", "destroyed meanwhile"])
def test_the_short_save_keeps_what_the_general_path_keeps(
    build_store: Build, cluster: MemcachedCluster, destroy: bool
) -> None:
    """A second save, after a destroy or not, leaves the same acknowledgement and copy."""
    general = _after(build_store, cluster, new_session_id(), short=False, destroy=destroy)
    assert general == _after(build_store, cluster, new_session_id(), short=True, destroy=destroy)
