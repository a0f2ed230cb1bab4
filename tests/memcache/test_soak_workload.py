"""The soak's workload records what the store said: ok with the value and the nodes,
a documented refusal as ``fail``, a failed write as ``unknown``, anything else as
``error``; and its nemesis deals every kind of fault."""

from __future__ import annotations

import errno
import gc
import random
import socket
import threading
import time
from typing import Any, cast

import errpolicy
import pytest

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster, MemcachedError

from .soak import Fault, Kind, NodeEvent, Op, Recorder, Status, Timeline
from .soak._history import thaw
from .soak._nemesis import FAULTS, Deck, Nodes
from .soak._probes import watch
from .soak._recovery import recoveries
from .soak._scenarios import SCENARIOS
from .soak._workload import Outcomes, Worker

pytestmark = pytest.mark.memcached


def _worker(cluster: MemcachedCluster, recorder: Recorder, timeouts: dict[str, float]) -> Worker:
    """A worker over one store ("A") on ``cluster``, with ``timeouts``."""
    outcomes = Outcomes()
    store = MemcacheSessionStore(
        cluster.addresses, "soak-secret-key-0123456789abcdef", on_outcome=outcomes, **timeouts
    )
    return Worker(0, {"A": store}, {"A": outcomes}, recorder)


def _last(recorder: Recorder) -> Op:
    return recorder.ops()[-1]


def test_an_acknowledged_save_and_its_read_are_recorded_with_nodes(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> None:
    """A save records the two nodes that stored it; the read, its value and server."""
    errpolicy.configure(sink=errpolicy.NullSink())
    recorder = Recorder()
    worker = _worker(cluster, recorder, store_timeouts)
    worker.create("A")
    (sid,) = worker.live
    saved = _last(recorder)
    session, answered = worker.read("A", sid)
    read = _last(recorder)
    assert (Kind.SAVE, Status.OK, 2) == (saved.kind, saved.status, len(saved.nodes))
    assert session is not None
    assert answered
    assert (Kind.READ, Status.OK, saved.value) == (read.kind, read.status, read.value)
    assert read.served_by in saved.nodes


def test_an_outage_is_a_refused_read_and_an_unknown_write(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> None:
    """Every node down: the read fails with its outcome, the save is unknown."""
    errpolicy.configure(sink=errpolicy.NullSink())
    recorder = Recorder()
    worker = _worker(cluster, recorder, store_timeouts)
    worker.create("A")
    (sid,) = worker.live
    for server in cluster.servers:
        server.kill()
    worker.read("A", sid)
    read = _last(recorder)
    worker.create("A")
    save = _last(recorder)
    assert (Status.FAIL, "unavailable") == (read.status, read.detail)
    assert (Status.UNKNOWN, frozenset()) == (save.status, save.nodes)


def test_a_refused_read_records_what_each_node_answered(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> None:
    """Every node killed: the refusal carries one failed reply per node asked."""
    errpolicy.configure(sink=errpolicy.NullSink())
    recorder = Recorder()
    worker = _worker(cluster, recorder, store_timeouts)
    worker.create("A")
    (sid,) = worker.live
    for server in cluster.servers:
        server.kill()
    worker.read("A", sid)
    read = _last(recorder)
    asked = {reply.node for reply in read.replies}
    assert Status.FAIL == read.status
    assert set(cluster.addresses) >= asked
    assert asked
    assert all(reply.status in {"refused", "closed", "error", "skipped"} for reply in read.replies)


@pytest.mark.hangs
def test_a_read_refused_because_running_nodes_stalled_counts_as_waiting(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> None:
    """Both holders stalled (stopped without a recorded fault, as a starved process would
    be): the refusal's replies are timeouts, and recovery counts it apart from the store's."""
    errpolicy.configure(sink=errpolicy.NullSink())
    recorder = Recorder()
    worker = _worker(cluster, recorder, store_timeouts)
    worker.create("A")
    (sid,) = worker.live
    holders = [s for s in cluster.servers if s.address in _last(recorder).nodes]
    back = recorder.ops()[-1].end  # a recorded fault ended here: every node is back
    for server in holders:
        server.pause()
    try:
        worker.read("A", sid)
    finally:
        for server in holders:
            server.resume()
    worker.read("A", sid)  # served again: the window's end
    refused = recorder.ops()[-2]
    timeline = Timeline((NodeEvent(cluster.addresses[0], Fault.START, back - 1, back),))
    (window,) = recoveries(recorder.ops(), timeline, cluster.addresses)
    timeouts = {r.node for r in refused.replies if r.status == "timeout"}
    assert (Status.FAIL, {s.address for s in holders}) == (refused.status, timeouts)
    assert (0, 1) == (window.refused, window.timed_out)


def test_each_probe_of_a_killed_node_is_recorded_with_its_result(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> None:
    """The store's prober probes a killed node: each probe is recorded as refused, then
    the first after the node's restart as ok."""
    errpolicy.configure(sink=errpolicy.NullSink())
    recorder = Recorder()
    outcomes = Outcomes()
    store = MemcacheSessionStore(
        cluster.addresses, "soak-secret-key-0123456789abcdef", on_outcome=outcomes, **store_timeouts
    )
    watch(store, "A", recorder)
    worker = Worker(0, {"A": store}, {"A": outcomes}, recorder)
    worker.create("A")
    (sid,) = worker.live
    server = next(s for s in cluster.servers if s.address in _last(recorder).nodes)
    server.kill()  # a holder: the session's reads ask it
    deadline = time.monotonic() + 30
    while not recorder.probes() and time.monotonic() < deadline:
        worker.read("A", sid)  # failures on the killed node open its breaker
        time.sleep(0.01)
    server.restart()
    while recorder.probes()[-1].status != "ok" and time.monotonic() < deadline:
        time.sleep(0.01)
    probes = recorder.probes()
    assert {("A", server.address)} == {(p.process, p.node) for p in probes}
    assert ("refused", "ok") == (probes[0].status, probes[-1].status)
    assert all(p.claimed <= p.start <= p.end for p in probes)
    store.close()


class _Broken:
    """A store whose every read raises an exception the documentation does not promise."""

    def start(self, sid: str | None) -> Any:
        raise RuntimeError("boom")


def test_an_undocumented_exception_is_an_error() -> None:
    """A RuntimeError from the store is recorded as ``error`` with its text."""
    recorder = Recorder()
    store = cast("MemcacheSessionStore", _Broken())
    worker = Worker(0, {"A": store}, {"A": Outcomes()}, recorder)
    worker.read("A", "x" * 43)
    read = _last(recorder)
    assert (Status.ERROR, "RuntimeError: boom") == (read.status, read.detail)


def test_the_fault_deck_deals_every_kind_once_per_round() -> None:
    """Each run of five draws holds every single fault once, in a new order."""
    deck = Deck(random.Random(3))
    rounds = [[deck.draw() for _ in FAULTS] for _ in range(4)]
    assert [sorted(FAULTS)] * 4 == [sorted(r) for r in rounds]
    assert len({tuple(r) for r in rounds}) > 1


def test_the_recorder_keeps_its_history_out_of_the_collectors_walks() -> None:
    """Every ``freeze_every`` ops the recorded objects leave the collector's generations
    (a full collection over millions of ops held the soak's process for seconds)."""
    recorder = Recorder(freeze_every=100)
    before = gc.get_freeze_count()
    try:
        for i in range(250):
            recorder.op(Op("A", 0, f"s{i}", Kind.READ, Status.OK, 0.0, 0.0))
        frozen = gc.get_freeze_count() - before
    finally:
        thaw()
    assert frozen >= 200
    assert 0 == gc.get_freeze_count()


def test_a_killed_nodes_port_cannot_be_taken_until_it_is_started(memcached_binary: str) -> None:
    """While a node is killed its port refuses connections and no other socket can bind
    it (a free-port pick elsewhere could take it); started again, the node answers."""
    with Nodes(Recorder(), count=1) as nodes:
        server = nodes.servers[0]
        nodes.kill(0)
        with socket.socket() as other, pytest.raises(OSError, match="in use") as bound:
            other.bind((server.host, server.port))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=1.0).close()
        nodes.start(0)
        with socket.create_connection((server.host, server.port), timeout=2.0) as sock:
            sock.sendall(b"version\r\n")
            answer = sock.recv(64)
    assert (errno.EADDRINUSE, True) == (bound.value.errno, answer.startswith(b"VERSION"))


class _FailingLane:
    """Nodes whose every fault raises when injected from a thread other than the main one."""

    servers = [object()] * 5
    evicting: frozenset[int] = frozenset()

    def __getattr__(self, name: str) -> Any:
        def fault(index: int) -> None:
            if threading.current_thread() is not threading.main_thread():
                raise MemcachedError(f"{name} failed in the other lane")

        return fault


def test_a_fault_that_fails_in_the_other_lane_stops_the_schedule() -> None:
    """Scenario B's second lane raising ends the schedule with its error (it used to be
    printed by the thread and the first lane went on with a node it did not heal)."""
    calls = iter(range(200))

    def wait(delay: float) -> bool:
        return next(calls) >= 199  # the run's end, after many faults

    with pytest.raises(MemcachedError, match="other lane"):
        SCENARIOS["B"].schedule(cast("Any", _FailingLane()), random.Random(1), wait)
