"""Which nodes a read asks: the home replicas while the process has seen no fault,
every reachable node when they disagree, miss or fail, after a fault, or always with
``read_all_nodes``. Real memcached; "another process" is a second store instance, whose
fault clock knows nothing of the first one's faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import BreakerState, MemcacheSessionStore, NodeStatus, Outcome, OutcomeKind
from errpolicy_memcache import _machine as _store_module
from errpolicy_memcache._envelope import decode
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, SECRET, Counters, Ranked, saved

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes

Maker = Callable[..., MemcacheSessionStore]
Raw = Callable[[MemcachedServer], Client]


def asked(outcome: Outcome) -> list[str]:
    """The nodes a read's outcome shows a ``gets`` answer from, in order."""
    return [r.node for r in outcome.nodes if r.command == "gets"]


def stored_step(raw: Raw, server: MemcachedServer, sid: str) -> object:
    """The ``step`` value of the copy ``server`` holds for ``sid``."""
    key = storage_key(PREFIX, sid)
    data = decode(raw(server).get(key), key, [SECRET.encode()]).data
    assert data is not None
    return data["step"]


def cut_off(store: MemcacheSessionStore, *servers: MemcachedServer) -> None:
    """Open ``store``'s breakers of ``servers``, as a partition between this process and
    them would (a paused memcached still gets the request once it resumes, which a
    partition does not deliver)."""
    for node in store.nodes:
        if node.address in {server.address for server in servers}:
            while node.breaker.state is not BreakerState.OPEN:
                node.breaker.failure()


def read_and_repair(
    store: MemcacheSessionStore, sid: str, raw: Raw, outcomes: list[Outcome], node: MemcachedServer
) -> tuple[object, list[str], OutcomeKind, object]:
    """Read ``sid``: the ``step`` served, the nodes asked, the outcome, and the ``step``
    that ``node`` holds after the read."""
    loaded = store.start(sid)
    return loaded["step"], asked(outcomes[-1]), outcomes[-1].kind, stored_step(raw, node, sid)


def test_a_settled_read_asks_the_home_replicas_only(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    counters: Counters,
    outcomes: list[Outcome],
) -> None:
    """With no fault seen, both home nodes hold the same copy: the third is not asked."""
    session = saved(store, a=1)
    home1, home2, other = ranked(cluster, session.id)
    before = counters(other)["cmd_get"]
    store.start(session.id)
    assert (
        OutcomeKind.OK,
        [home1.address, home2.address],
        [NodeStatus.HIT, NodeStatus.HIT],
        before,
    ) == (
        outcomes[-1].kind,
        asked(outcomes[-1]),
        [r.status for r in outcomes[-1].nodes],
        counters(other)["cmd_get"],
    )


def test_read_all_nodes_asks_every_node(
    cluster: MemcachedCluster, make_store: Maker, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """The option asks every node on every read; the third one answers a miss."""
    store = make_store(cluster, read_all_nodes=True)
    session = saved(store, a=1)
    home1, home2, other = ranked(cluster, session.id)
    store.start(session.id)
    assert (
        [home1.address, home2.address, other.address],
        NodeStatus.MISS,
        OutcomeKind.OK,
    ) == (asked(outcomes[-1]), outcomes[-1].results_for(other.address)[0].status, outcomes[-1].kind)


def test_read_all_nodes_must_be_a_bool(cluster: MemcachedCluster, make_store: Maker) -> None:
    from errpolicy_memcache import ConfigurationError

    with pytest.raises(ConfigurationError, match="read_all_nodes"):
        make_store(cluster, read_all_nodes="yes")


def test_a_home_miss_asks_the_other_nodes_and_refills(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
    outcomes: list[Outcome],
) -> None:
    """A home node restarted empty: the read goes on to every node, serves the session
    and adds the copy back on the home node."""
    session = saved(store, step="kept")
    home1, home2, other = ranked(cluster, session.id)
    home1.restart()
    everyone = [home1.address, home2.address, other.address]
    assert ("kept", everyone, OutcomeKind.REPAIRED, "kept") == read_and_repair(
        store, session.id, raw, outcomes, home1
    )


def test_another_process_finds_the_newer_copy_below_the_home(
    cluster: MemcachedCluster,
    make_store: Maker,
    ranked: Ranked,
    raw: Raw,
    outcomes: list[Outcome],
) -> None:
    """One process saves while cut off from a home node (the copy goes to the third
    node). A second process, which saw no fault, reads the two home nodes, finds them
    disagreeing, asks the third, serves the newest and repairs the stale home copy."""
    writer = make_store(cluster)
    session = saved(writer, step="old")
    home1, home2, other = ranked(cluster, session.id)
    cut_off(writer, home2)
    session["step"] = "new"
    writer.save(session)
    assert ["old", "new"] == [stored_step(raw, s, session.id) for s in (home2, other)]
    reader = make_store(cluster)
    everyone = [home1.address, home2.address, other.address]
    assert ("new", everyone, OutcomeKind.REPAIRED, "new") == read_and_repair(
        reader, session.id, raw, outcomes, home2
    )


def double_fault(
    cluster: MemcachedCluster, make_store: Maker, ranked: Ranked, raw: Raw
) -> tuple[MemcacheSessionStore, str]:
    """A process cut off from both home nodes of a session saves it: only the third node
    gets the new copy; the home nodes keep the same old one. The writer and the id."""
    writer = make_store(cluster)
    session = saved(writer, step="old")
    home1, home2, other = ranked(cluster, session.id)
    cut_off(writer, home1, home2)
    session["step"] = "new"
    writer.save(session)
    assert ["old", "old", "new"] == [stored_step(raw, s, session.id) for s in (home1, home2, other)]
    return writer, session.id


def test_the_process_that_saw_a_double_fault_reads_every_node(
    cluster: MemcachedCluster,
    make_store: Maker,
    ranked: Ranked,
    raw: Raw,
    outcomes: list[Outcome],
) -> None:
    """The process that saw both home nodes fail asks every node until it has been quiet
    for its settle time (here: after an operator closed the breakers), so the newest copy
    wins although both home nodes agree on the old one."""
    writer, sid = double_fault(cluster, make_store, ranked, raw)
    assert OutcomeKind.DEGRADED == outcomes[-1].kind
    for node in writer.nodes:
        node.breaker.reset()
    assert ("new", 3) == (writer.start(sid)["step"], len(asked(outcomes[-1])))


def test_a_double_fault_seen_by_another_process_needs_read_all_nodes(
    cluster: MemcachedCluster, make_store: Maker, ranked: Ranked, raw: Raw
) -> None:
    """The documented limit of home reads: a process that saw nothing of the double
    fault reads the two home nodes, which agree, and serves their old copy;
    ``read_all_nodes=True`` asks the third node too and serves the new one."""
    _, sid = double_fault(cluster, make_store, ranked, raw)
    unaware = make_store(cluster)
    careful = make_store(cluster, read_all_nodes=True)
    assert ("old", "new") == (unaware.start(sid)["step"], careful.start(sid)["step"])


def test_reads_settle_back_to_the_home_after_a_quiet_period(
    cluster: MemcachedCluster, make_store: Maker, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """After a home node rejoins, reads ask every node for ``max(idle_ttl, 2 *
    max_retry_after)`` seconds (2 s here), then only the home nodes again."""
    store = make_store(cluster, idle_ttl=2, retry_after=0.05, max_retry_after=0.1)
    session = saved(store, a=1)
    home1, _, _ = ranked(cluster, session.id)
    home1.kill()
    for _ in range(3):  # refused: its breaker opens
        store.start(session.id)
    home1.restart()  # empty, on the same port
    deadline = time.monotonic() + 5
    while True:
        store.start(session.id)
        answers = [r.status for r in outcomes[-1].results_for(home1.address)]
        if NodeStatus.MISS in answers:  # home1 answered again (and was refilled)
            break
        assert time.monotonic() < deadline, f"home1 never answered again: {answers}"
        time.sleep(0.02)
    quiet_from = time.monotonic()
    store.start(session.id)
    during = len(asked(outcomes[-1]))
    time.sleep(max(0.0, quiet_from + 2.1 - time.monotonic()))
    # Renewed just before the read: memcached counts whole seconds, so a 2 s copy can be
    # gone 1 s after its write, and a read that misses asks every node.
    store.save(session)
    store.start(session.id)
    assert (3, 2) == (during, len(asked(outcomes[-1])))


def test_a_longer_session_ttl_lengthens_the_settle_time(
    cluster: MemcachedCluster, make_store: Maker, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """A session saved with a 5 s TTL can sit below its home that long after a fault, so
    reads keep asking every node for 5 s, not only the store's 1 s ``idle_ttl``."""
    store = make_store(cluster, idle_ttl=1, retry_after=0.05, max_retry_after=0.1)
    session = store.start(None)
    session["a"] = 1
    store.save(session, ttl=5)
    home1, _, _ = ranked(cluster, session.id)
    node = next(n for n in store.nodes if n.address == home1.address)
    node.breaker.reset()  # an operator's reset counts as a fault: the node may be behind
    time.sleep(1.2)
    store.start(session.id)
    assert 3 == len(asked(outcomes[-1]))


# -- what a store remembers per session id ---------------------------------------------


def test_a_remembered_session_still_sees_a_copy_tampered_on_every_home_node(
    make_store: Maker,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
    outcomes: list[Outcome],
) -> None:
    """The MAC is skipped only for the very bytes verified before: a forged copy of the
    same length on both home nodes fails it, and the session restarts with a fresh id."""
    store = make_store(cluster)
    session = saved(store, role="user")
    store.start(session.id)  # read once: remembered
    key = storage_key(PREFIX, session.id)
    home1, home2, _ = ranked(cluster, session.id)
    blob = raw(home1).get(key)
    forged = blob.replace(b'"user"', b'"root"')
    assert (len(blob), True) == (len(forged), forged != blob)
    for server in (home1, home2):
        raw(server).set(key, forged, noreply=False)
    loaded = store.start(session.id)
    assert (True, False, OutcomeKind.INVALID) == (
        loaded.new,
        loaded.id == session.id,
        outcomes[-1].kind,
    )


def test_a_remembered_session_sees_another_process_s_save(
    cluster: MemcachedCluster, make_store: Maker
) -> None:
    """Different bytes than the remembered copy: verified and served, never the old one."""
    first, second = make_store(cluster), make_store(cluster)
    session = saved(first, step="one")
    assert "one" == first.start(session.id)["step"]
    other = second.start(session.id)
    other["step"] = "two"
    second.save(other)
    assert "two" == first.start(session.id)["step"]


def test_a_remembered_session_destroyed_elsewhere_stays_destroyed(
    cluster: MemcachedCluster, make_store: Maker
) -> None:
    """Another process logs the user out: the tombstone beats the remembered copy."""
    first, second = make_store(cluster), make_store(cluster)
    session = saved(first, user_id=7)
    first.start(session.id)
    second.destroy(second.start(session.id))
    loaded = first.start(session.id)
    assert (True, False) == (loaded.new, loaded.id == session.id)


def test_unknown_sessions_are_not_remembered_and_large_ones_are(
    store: MemcacheSessionStore,
) -> None:
    """An id that names no session (random ids cost an attacker nothing) is not kept; a
    copy over 4 KiB is kept too (its MAC costs more than reading it), within a budget."""
    unknown = store.start("A" * 43)
    large = saved(store, blob="x" * 10_000)
    loaded = store.start(large.id)
    assert (True, "x" * 10_000) == (unknown.new, loaded["blob"])
    verified = store._core._known[large.id].verified
    assert ("A" * 43 not in store._core._known, True) == (
        True,
        verified is not None and b"x" * 10_000 in verified[0],
    )


def test_large_remembered_copies_stay_within_their_byte_budget(
    store: MemcacheSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large verified copies are kept up to a byte budget, the oldest let go first; the
    small ones do not count against it, and every session is still served."""
    monkeypatch.setattr(_store_module, "_VERIFIED_LARGE_BUDGET", 50_000)
    small = saved(store, n=-1)
    sessions = [saved(store, n=n, blob="y" * 10_000) for n in range(8)]
    kept = [s.id for s in sessions if store._core._known[s.id].verified is not None]
    assert ([s.id for s in sessions[-4:]], True) == (
        kept,
        store._core._known[small.id].verified is not None,
    )
    assert store._core._large_bytes <= 50_000
    assert list(range(8)) == [store.start(s.id)["n"] for s in sessions]


def test_the_remembered_ids_are_bounded(store: MemcacheSessionStore) -> None:
    """At most 1024 ids, the oldest dropped first; every session is still served."""
    sessions = [saved(store, n=n) for n in range(1100)]
    assert (1024, False, True) == (
        len(store._core._known),
        sessions[0].id in store._core._known,
        sessions[-1].id in store._core._known,
    )
    assert [0, 1099] == [store.start(sessions[i].id)["n"] for i in (0, -1)]


def test_threads_reading_while_another_process_saves_never_see_an_older_save(
    cluster: MemcachedCluster, make_store: Maker
) -> None:
    """Four threads of one process read a session while another process saves it 300
    times: a read that starts after a save returned sees that save or a later one,
    and its data is never torn (a remembered copy and its record go together)."""
    writer, reader = make_store(cluster), make_store(cluster)
    session = saved(writer, step=0, check=0)
    done = threading.Event()
    latest = [0]  # the last step whose save returned
    problems: list[str] = []

    def read() -> None:
        while not done.is_set():
            floor = latest[0]
            loaded = reader.start(session.id)
            if loaded["step"] != loaded["check"] or loaded["step"] < floor:
                problems.append(f"read {dict(loaded)} after step {floor} was saved")

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for step in range(1, 301):
            session["step"] = session["check"] = step
            writer.save(session)
            latest[0] = step
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert ([], 300) == (problems, reader.start(session.id)["step"])


def fault(store: MemcacheSessionStore) -> None:
    """Mark ``store``'s fault clock, as an operator closing a breaker does."""
    store.nodes[0].breaker.reset()


def test_a_session_read_whole_after_the_last_fault_reads_its_home_again(
    cluster: MemcachedCluster, store: MemcacheSessionStore, outcomes: list[Outcome]
) -> None:
    """After a fault, the first read of a session asks every node; once every node
    answered and the home nodes held the newest copy, that session's next read asks its
    home alone, while another session not read since the fault still asks every node."""
    session = saved(store, a=1)
    other = saved(store, b=2)
    fault(store)
    counts = []
    for sid in (session.id, session.id, other.id):
        store.start(sid)
        counts.append(len(asked(outcomes[-1])))
    assert [3, 2, 3] == counts


def test_a_fault_after_a_session_settled_makes_its_reads_whole_again(
    cluster: MemcachedCluster, store: MemcacheSessionStore, outcomes: list[Outcome]
) -> None:
    """A settled session asks every node again after the next fault, and settles again."""
    session = saved(store, a=1)
    fault(store)
    store.start(session.id)
    fault(store)
    counts = []
    for _ in range(2):
        store.start(session.id)
        counts.append(len(asked(outcomes[-1])))
    assert [3, 2] == counts


def test_a_read_with_a_node_skipped_does_not_settle_its_session(
    cluster: MemcachedCluster, store: MemcacheSessionStore, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """While a node's breaker is open, the session's reads do not settle (a newer copy
    may sit on that node); each read asks every node that answers and reports the skip."""
    session = saved(store, a=1)
    _, _, third = ranked(cluster, session.id)
    cut_off(store, third)
    kinds = []
    for _ in range(2):
        store.start(session.id)
        kinds.append((outcomes[-1].kind, outcomes[-1].results_for(third.address)[0].status))
    assert [(OutcomeKind.FAILOVER, NodeStatus.SKIPPED)] * 2 == kinds


def test_read_all_nodes_never_settles_a_session(
    cluster: MemcachedCluster, make_store: Maker, outcomes: list[Outcome]
) -> None:
    """With ``read_all_nodes=True`` every read asks every node, after a fault too."""
    careful = make_store(cluster, read_all_nodes=True)
    session = saved(careful, a=1)
    fault(careful)
    counts = []
    for _ in range(3):
        careful.start(session.id)
        counts.append(len(asked(outcomes[-1])))
    assert [3, 3, 3] == counts


def test_a_settled_session_still_finds_its_failover_copy_after_a_double_fault(
    cluster: MemcachedCluster,
    make_store: Maker,
    ranked: Ranked,
    raw: Raw,
    outcomes: list[Outcome],
) -> None:
    """A session settled after one fault, then saved while both home nodes were cut off
    (the copy lands on the third node only): the cut-off is a fault, so the next read
    asks every node and serves the new copy, although both home nodes agree on the old."""
    writer = make_store(cluster)
    session = saved(writer, step="old")
    home1, home2, other = ranked(cluster, session.id)
    fault(writer)
    writer.start(session.id)
    writer.start(session.id)
    settled = len(asked(outcomes[-1]))
    cut_off(writer, home1, home2)
    session["step"] = "new"
    writer.save(session)
    assert ["old", "old", "new"] == [stored_step(raw, s, session.id) for s in (home1, home2, other)]
    for node in writer.nodes:
        node.breaker.reset()
    assert (2, "new", 3) == (settled, writer.start(session.id)["step"], len(asked(outcomes[-1])))
