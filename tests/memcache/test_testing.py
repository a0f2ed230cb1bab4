"""The memcached process manager used by the tests, the demo and the benchmark."""

from __future__ import annotations

import socket

import pytest

from errpolicy_memcache.testing import MemcachedCluster, MemcachedError, MemcachedServer

pytestmark = pytest.mark.memcached


def answers(server: MemcachedServer, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
            sock.sendall(b"version\r\n")
            return sock.recv(64).startswith(b"VERSION")
    except OSError:
        return False


def test_a_started_server_answers_on_loopback(memcached_binary: str) -> None:
    """start() returns once the server answers on 127.0.0.1 at a free port."""
    with MemcachedServer() as server:
        assert ("127.0.0.1", True) == (server.host, answers(server))


@pytest.mark.hangs
def test_a_paused_server_does_not_answer(memcached_binary: str) -> None:
    """pause() returns once the process is stopped: a request right after times out."""
    with MemcachedServer() as server:
        server.pause()
        assert (True, False) == (server.paused, answers(server))


@pytest.mark.hangs
def test_pause_and_resume_twice_are_harmless(memcached_binary: str) -> None:
    """A second pause() or resume() in a row does nothing (and does not hang)."""
    with MemcachedServer() as server:
        server.pause()
        server.pause()
        server.resume()
        server.resume()
        assert answers(server)


def test_restart_keeps_the_port_and_empties_the_cache(memcached_binary: str) -> None:
    """restart() gives a fresh process on the same port."""
    with MemcachedServer() as server:
        port = server.port
        with socket.create_connection((server.host, port), timeout=1) as sock:
            sock.sendall(b"set k 0 0 1\r\nx\r\n")
            sock.recv(64)
        server.restart()
        assert (port, 0) == (server.port, int(server.stats()["curr_items"]))


def test_kill_stops_the_process(memcached_binary: str) -> None:
    """kill() leaves nothing listening."""
    server = MemcachedServer().start()
    server.kill()
    assert (False, False) == (server.running, answers(server))


def test_a_cluster_uses_distinct_ports(memcached_binary: str) -> None:
    """Every server of a cluster has its own port, and stop() ends them all."""
    with MemcachedCluster(3) as cluster:
        ports = {server.port for server in cluster.servers}
    assert (3, [False] * 3) == (len(ports), [s.running for s in cluster.servers])


def test_a_restart_on_a_port_another_server_took_raises(memcached_binary: str) -> None:
    """A port taken by another memcached while the server was down: restart() raises,
    where the other server's answer used to pass for this one's (which had exited)."""
    with MemcachedServer(memory_mb=8) as server:
        server.kill()
        with MemcachedServer(port=server.port, memory_mb=8) as other:
            with pytest.raises(MemcachedError, match="served by another process"):
                server.restart()
            assert (False, True) == (server.running, answers(other))
