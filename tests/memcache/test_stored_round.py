"""stored_round: one store command to every node at once, True when each stored it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import _transport
from errpolicy_memcache._transport import (
    PipelinedTransport,
    PymemcacheTransport,
    make_transport,
    stored_round,
)
from errpolicy_memcache._wire import add, set_
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes

Transport = PipelinedTransport | PymemcacheTransport
KEY = "errpolicy:session:" + "cd" * 32
VALUE = b"a session's bytes"


@pytest.fixture(params=["pymemcache", "pipelined"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[MemcachedServer], Transport]]:
    """Transports of each kind in turn to a server (0.3 s read timeout), closed after."""
    made: list[Transport] = []

    def make_one(server: MemcachedServer) -> Transport:
        transport = make_transport(request.param, server.host, server.port, 0.5, 0.3, 4)
        made.append(transport)
        return transport

    yield make_one
    for transport in made:
        transport.close()


@pytest.fixture(params=["c", "python"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The C round (skipped where it is not built) and the Python one, in turn."""
    if request.param == "python":  # as without the speedups: no C round at all
        monkeypatch.setattr(_transport, "_C_GETS", None)
        monkeypatch.setattr(_transport, "_C_LINES", None)
    elif _transport._C_LINES is None:
        pytest.skip("the C line round is not built (or not used) here")
    return str(request.param)


def _get(server: MemcachedServer) -> bytes | None:
    client = Client((server.host, server.port), connect_timeout=1.0, timeout=1.0)
    try:
        value: bytes | None = client.get(KEY)
        return value
    finally:
        client.close()


def test_every_node_storing_gives_true_and_pools_the_connections(
    cluster: MemcachedCluster, make: Callable[[MemcachedServer], Transport], way: str
) -> None:
    """Every node answering STORED gives True; each holds the value, each connection is pooled."""
    transports = [make(server) for server in cluster.servers]
    result = stored_round(transports, set_(KEY, VALUE, 60))
    assert (True, [VALUE] * 3, [1] * 3) == (
        result,
        [_get(server) for server in cluster.servers],
        [len(t._idle) for t in transports],
    )


def test_a_killed_node_gives_every_answer(
    cluster: MemcachedCluster, make: Callable[[MemcachedServer], Transport], way: str
) -> None:
    """A killed node's failure comes back with the others' STORED, not True."""
    transports = [make(server) for server in cluster.servers]
    assert True is stored_round(transports, set_(KEY, VALUE, 60))
    cluster[1].kill()
    result = stored_round(transports, set_(KEY, VALUE, 60))
    assert isinstance(result, list)
    assert (["STORED"], "refused", ["STORED"]) == (
        result[0][0],
        None if result[1][1] is None else result[1][1].kind,
        result[2][0],
    )


def test_a_node_not_storing_gives_every_answer(
    cluster: MemcachedCluster, make: Callable[[MemcachedServer], Transport], way: str
) -> None:
    """An add to a node that holds the key answers NOT_STORED: the answers, not True."""
    transports = [make(server) for server in cluster.servers]
    assert True is stored_round(transports[:1], set_(KEY, VALUE, 60))
    result = stored_round(transports, add(KEY, VALUE, 60))
    assert isinstance(result, list)
    assert [["NOT_STORED"], ["STORED"], ["STORED"]] == [values for values, _, _ in result]
