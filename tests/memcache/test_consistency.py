"""The consistency contract (docs/memcache/index.md) under the faults of issue 10, against
real memcached: each test is one defect's minimal reproduction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import errpolicy
import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import (
    BreakerState,
    MemcacheSessionStore,
    NodeStatus,
    Outcome,
    OutcomeKind,
    Session,
    SessionUnavailable,
)
from errpolicy_memcache._envelope import decode, normalize_keys
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, SECRET, Ranked, hung, saved, statuses

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes

Raw = Callable[[MemcachedServer], Client]
MakeStore = Callable[..., MemcacheSessionStore]

# For a store whose saves set up a test that hangs nodes (marked hangs: its stores' read
# timeout is 0.3 s): on a busy machine 0.3 s can make a save fail over to a third node,
# and that copy then (rightly) serves a read the test expects to refuse, or every breaker
# opens. Nodes hung later cost it 3 s. (tests/conftest.py's STEADY_TIMEOUTS.)
STEADY = {"connect_timeout": 3.0, "timeout": 3.0}


@pytest.fixture
def five(memcached_binary: str) -> Iterator[MemcachedCluster]:
    """Five fresh memcached nodes."""
    nodes = MemcachedCluster(5, memory_mb=16)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; its last value."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_logout_survives_a_rolling_flush_of_the_home_nodes(
    store: MemcacheSessionStore,
    make_store: MakeStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
) -> None:
    """Defect 1: a copy a failover write left on a third node does not bring a logged-out
    session back when both home nodes lose their data afterwards (read by another
    process, which knows nothing of the logout)."""
    session = store.start(None)
    session["user"] = "ann"
    first, second, _third = ranked(cluster, session.id)
    first.kill()
    store.save(session)  # lands on the second and the third node
    first.restart()
    for node in store.nodes:
        node.breaker.reset()
    store.start(session.id)  # repairs the first node
    store.destroy(store.start(session.id))
    raw(first).flush_all(noreply=False)
    raw(second).flush_all(noreply=False)
    again = make_store(cluster).start(session.id)
    assert (True, {}) == (again.new, dict(again))


@pytest.mark.hangs
def test_hung_home_nodes_never_give_an_empty_session(
    make_store: MakeStore, five: MemcachedCluster, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """Defect 2: with five nodes and both home nodes hung, start() raises instead of a
    new empty session, also in a process that never saw the session; the data reads
    again once they answer."""
    store = make_store(five, **STEADY)
    session = saved(store, user="ann")
    other = make_store(five)
    first, second, *_ = ranked(five, session.id)
    with hung(first, second):
        with pytest.raises(errpolicy.PolicyViolation):
            other.start(session.id)
        kind = outcomes[-1].kind
    for node in store.nodes:
        node.breaker.reset()
    assert (OutcomeKind.PARTIAL_MISS, {"user": "ann"}) == (kind, dict(store.start(session.id)))


@pytest.mark.hangs
def test_an_older_copy_is_not_served_when_the_newer_ones_hang(
    store: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """Defect 3: both holders of the newest save hung, a stray older copy on the third
    node is refused (not served, not copied anywhere)."""
    session = saved(store, n=1)
    first, second, _third = ranked(cluster, session.id)
    with hung(second):
        session["n"] = 2
        store.save(session)  # times out on the second node: lands on the first and third
    session["n"] = 3
    store.save(session)  # the first and second node: the third keeps n=2
    with hung(first, second), pytest.raises(errpolicy.PolicyViolation):
        store.start(session.id)
    for node in store.nodes:
        node.breaker.reset()
    assert {"n": 3} == dict(store.start(session.id))


@pytest.mark.hangs
def test_another_process_finds_a_stray_older_copy_possibly_stale(
    store: MemcacheSessionStore,
    make_store: MakeStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    outcomes: list[Outcome],
) -> None:
    """Defect 3: a process that saw none of it, reading a copy that only a node below the
    home holds while both home nodes hang, reports possibly_stale (raised by default)."""
    session = saved(store, n=1)
    first, second, _ = ranked(cluster, session.id)
    with hung(second):
        session["n"] = 2
        store.save(session)
    session["n"] = 3
    store.save(session)
    other = make_store(cluster)
    with hung(first, second), pytest.raises(errpolicy.PolicyViolation):
        other.start(session.id)
    assert OutcomeKind.POSSIBLY_STALE == outcomes[-1].kind


@pytest.mark.hangs
@pytest.mark.usefixtures("relaxed")
def test_a_known_older_copy_is_unavailable_under_a_relaxed_policy(
    store: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """Defect 3: a policy that raises on nothing still never gets a copy older than a
    save this process saw acknowledged: SessionUnavailable."""
    session = saved(store, n=1)
    first, second, _ = ranked(cluster, session.id)
    with hung(second):
        session["n"] = 2
        store.save(session)
    session["n"] = 3
    store.save(session)
    with hung(first, second), pytest.raises(SessionUnavailable):
        store.start(session.id)


def test_a_copy_written_after_the_nodes_rejoined_is_not_possibly_stale(
    store: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """Defect 4: two of three nodes back from an outage, the third still dead: a session
    this process saved since then reads without a possibly_stale raise."""
    session = store.start(None)
    first, second, third = ranked(cluster, session.id)
    first.kill()
    for server in (second, third):
        breaker = next(n for n in store.nodes if n.address == server.address).breaker
        for _ in range(breaker.threshold):
            breaker.failure()
        breaker.success()  # back from the outage: rejoined just now
    session["user"] = "ann"
    store.save(session)
    assert {"user": "ann"} == dict(store.start(session.id))


@pytest.mark.hangs
def test_a_request_never_pays_a_probes_timeout(
    make_store: MakeStore, cluster: MemcachedCluster, ranked: Ranked, outcomes: list[Outcome]
) -> None:
    """Defect 5: once a hung node's breaker is open, a request after the backoff skips it
    (the probe runs off the request path) instead of timing out on it."""
    store = make_store(cluster, retry_after=0.05, max_retry_after=0.1)
    session = saved(store, n=1)
    stopped = ranked(cluster, session.id)[0]
    breaker = next(n for n in store.nodes if n.address == stopped.address).breaker
    with hung(stopped):
        assert wait_for(
            lambda: bool(store.start(session.id)) and breaker.state is not BreakerState.CLOSED
        )
        time.sleep(0.2)  # past the backoff: the old code let this request probe
        store.start(session.id)
        seen = statuses(outcomes[-1], stopped)
    assert [NodeStatus.SKIPPED] == seen


def test_nodes_back_from_an_outage_are_used_again_without_a_request(
    make_store: MakeStore, cluster: MemcachedCluster
) -> None:
    """Defect 5: after every node was down, the breakers close soon after the nodes are
    back, with no request needed to probe them."""
    store = make_store(cluster, retry_after=0.1, max_retry_after=0.4)
    session = saved(store, n=1)
    for server in cluster.servers:
        server.kill()
    while any(node.breaker.state is BreakerState.CLOSED for node in store.nodes):
        with pytest.raises(errpolicy.PolicyViolation):
            store.start(session.id)
    for server in cluster.servers:
        server.restart()
    assert wait_for(lambda: all(n.breaker.state is BreakerState.CLOSED for n in store.nodes))


@pytest.mark.hangs
def test_an_add_that_timed_out_leaves_no_lock_behind(
    make_store: MakeStore, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """Defect 6: a lock add that timed out on a paused node and landed when it resumed
    does not lock the session until the lock's TTL."""
    store = make_store(cluster, locking=True, lock_timeout=1.0)
    sid = saved(store, n=0).id
    first = ranked(cluster, sid)[0]
    lock_key = storage_key(PREFIX, sid) + ":lock"
    with hung(first):
        held = store.start(sid)  # the add times out on the first node: locked on the next
    held["n"] = 1
    store.save(held)
    assert wait_for(lambda: raw(first).get(lock_key) is not None, 2.0)  # the add landed
    for node in store.nodes:
        node.breaker.reset()
    again = store.start(sid)
    assert (True, {"n": 1}) == (again.locked, dict(again))


@pytest.mark.hangs
def test_another_process_is_not_locked_out_by_a_landed_add(
    make_store: MakeStore, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """Defect 6: the process whose add timed out clears the lock it left at its next
    operation, so another process gets the lock."""
    store = make_store(cluster, locking=True, lock_timeout=1.0)
    sid = saved(store, n=0).id
    first = ranked(cluster, sid)[0]
    lock_key = storage_key(PREFIX, sid) + ":lock"
    with hung(first):
        store.release(store.start(sid))
    assert wait_for(lambda: raw(first).get(lock_key) is not None, 2.0)
    for node in store.nodes:
        node.breaker.reset()
    store.start(None)  # any operation: the abandoned lock is cleared
    other = make_store(cluster, locking=True, lock_timeout=1.0)
    assert other.start(sid).locked


@pytest.mark.hangs
@pytest.mark.usefixtures("relaxed")
def test_a_failed_save_is_unknown_never_older(
    store: MemcacheSessionStore, cluster: MemcachedCluster
) -> None:
    """Defect 7: a save reported unavailable may land later (its outcome is unknown): a
    read gives the old or the new data, and the next acknowledged save wins."""
    session = saved(store, n=1)
    for server in cluster.servers:
        server.pause()
    try:
        session["n"] = 2
        with pytest.raises(SessionUnavailable):
            store.save(session)
    finally:
        for server in cluster.servers:
            server.resume()
    for node in store.nodes:
        node.breaker.reset()
    seen = store.start(session.id)["n"]
    again = store.start(session.id)
    again["n"] = 3
    store.save(again)
    assert (True, {"n": 3}) == (seen in (1, 2), dict(store.start(session.id)))


def probers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "errpolicy_memcache-prober"]


def opened(store: MemcacheSessionStore, session: Session, server: MemcachedServer) -> bool:
    """Read ``session`` (``server``, one of its home nodes, killed) until its breaker
    opens; whether a prober thread then runs."""
    server.kill()
    breaker = next(n for n in store.nodes if n.address == server.address).breaker
    for _ in range(breaker.threshold):
        store.start(session.id)
    return breaker.state is not BreakerState.CLOSED and bool(probers())


def test_the_prober_thread_ends_when_every_node_is_back(
    make_store: MakeStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """The probing thread runs while a breaker is open and ends once all are closed."""
    store = make_store(cluster, retry_after=0.05, max_retry_after=0.1)
    session = saved(store, n=1)
    home = ranked(cluster, session.id)[0]
    running = opened(store, session, home)
    home.restart()
    assert (True, True) == (running, wait_for(lambda: not probers()))


def test_close_stops_the_prober(
    make_store: MakeStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """close() ends the probing thread even while a node stays down."""
    store = make_store(cluster, retry_after=0.05, max_retry_after=0.1)
    session = saved(store, n=1)
    running = opened(store, session, ranked(cluster, session.id)[0])
    store.close()
    assert (True, True) == (running, wait_for(lambda: not probers()))


@pytest.mark.hangs
def test_a_session_saved_before_many_others_is_still_guarded(
    make_store: MakeStore, five: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """A process that saved a session and then 1,100 others (more ids than it keeps with
    their copies) still knows the session exists: one home node flushed, the other hung,
    start() raises instead of giving a new session."""
    store = make_store(five, **STEADY)
    session = saved(store, user="ann")
    for n in range(1100):
        saved(store, n=n)
    first, second, *_ = ranked(five, session.id)
    raw(first).flush_all(noreply=False)
    with hung(second), pytest.raises(errpolicy.PolicyViolation):
        store.start(session.id)


@pytest.mark.hangs
def test_one_evicted_and_one_hung_home_node_never_give_an_empty_session(
    make_store: MakeStore,
    five: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
    outcomes: list[Outcome],
) -> None:
    """One home node lost its copy (evicted), the other hung: a process that never saw
    the session answers partial_miss, not a new session; the data reads once it answers."""
    session = saved(make_store(five, **STEADY), user="ann")
    other = make_store(five)
    first, second, *_ = ranked(five, session.id)
    raw(first).delete(storage_key(PREFIX, session.id))
    with hung(second):
        with pytest.raises(errpolicy.PolicyViolation):
            other.start(session.id)
        kind = outcomes[-1].kind
    for node in other.nodes:
        node.breaker.reset()
    assert (OutcomeKind.PARTIAL_MISS, {"user": "ann"}) == (kind, dict(other.start(session.id)))


def test_a_home_node_that_refuses_counts_as_a_miss(
    make_store: MakeStore, five: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """One home node lost its copy, the other was killed (it restarts empty): the session
    is gone, and a process that never saw it starts a new one (not_found)."""
    session = saved(make_store(five, **STEADY), user="ann")
    first, second, *_ = ranked(five, session.id)
    raw(first).delete(storage_key(PREFIX, session.id))
    second.kill()
    again = make_store(five).start(session.id)
    assert (True, {}) == (again.new, dict(again))


def back_and_handed_over(store: MemcacheSessionStore) -> None:
    """Every node answers again for ``store`` (breakers reset), and a request hands over
    what waits for them (the handoff runs at the start of ``start()``)."""
    for node in store.nodes:
        node.breaker.reset()
    store.start(None)


def _open(store: MemcacheSessionStore, server: MemcachedServer) -> None:
    """Open ``store``'s breaker for ``server``, as after failed requests (it is skipped)."""
    breaker = next(n for n in store.nodes if n.address == server.address).breaker
    for _ in range(breaker.threshold):
        breaker.failure()


@pytest.mark.hangs
def test_a_save_writes_over_the_stray_copies_its_read_found(
    store: MemcacheSessionStore, make_store: MakeStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """Soak B: a process that saved below home (a home node skipped) does not serve that
    copy over hung home nodes after another process saved a newer one at home."""
    session = store.start(None)
    first, second, _third = ranked(cluster, session.id)
    _open(store, second)
    session["n"] = 1
    store.save(session)  # lands on the first and third node
    other = make_store(cluster)
    theirs = other.start(session.id)  # finds the copy on the third node, repairs home
    theirs["n"] = 2
    other.save(theirs)
    first.kill()
    with hung(second), pytest.raises(errpolicy.PolicyViolation):
        store.start(session.id)  # n=2 on the third node: possibly older than home's
    assert {"n": 2} == dict(make_store(cluster).start(session.id))


@pytest.mark.hangs
def test_a_copy_this_process_saved_is_not_vouched_for_on_another_node(
    store: MemcacheSessionStore,
    make_store: MakeStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
) -> None:
    """Soak B: this process's own version, found only on a node that never acknowledged
    it (a repair put it there) while the home nodes cannot answer, is possibly stale."""
    session = saved(store, n=1)
    first, second, third = ranked(cluster, session.id)
    key = storage_key(PREFIX, session.id)
    raw(third).set(key, raw(first).get(key), expire=60, noreply=False)  # a repair's copy
    other = make_store(cluster)
    theirs = other.start(session.id)  # the home nodes agree: no stray seen
    theirs["n"] = 2
    other.save(theirs)
    first.kill()
    with hung(second), pytest.raises(errpolicy.PolicyViolation):
        store.start(session.id)


@pytest.mark.hangs
def test_a_copy_saved_below_home_is_handed_to_the_home_node_once_it_answers(
    store: MemcacheSessionStore,
    make_store: MakeStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
) -> None:
    """Soak B (lost): a save that skipped a home node hands its copy there once it is
    back, so the session survives its other holders failing (one flushed, one hung)."""
    session = store.start(None)
    first, second, third = ranked(cluster, session.id)
    _open(store, first)
    session["n"] = 1
    store.save(session)  # lands on the second and third node
    back_and_handed_over(store)  # the first node is back
    raw(second).flush_all(noreply=False)
    with hung(third):
        assert {"n": 1} == dict(make_store(cluster).start(session.id))


@pytest.mark.hangs
def test_a_copy_whose_holder_lost_its_memory_is_not_vouched_for(
    store: MemcacheSessionStore,
    make_store: MakeStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
) -> None:
    """Soak B: a holder of this process's own copy answers a miss (flushed) while a home
    node hangs: a newer save may have been lost with it, the copy is possibly stale."""
    session = store.start(None)
    first, second, _third = ranked(cluster, session.id)
    _open(store, first)
    session["n"] = 1
    store.save(session)  # lands on the second and third node
    for node in store.nodes:
        node.breaker.reset()
    store.start(session.id)  # repairs the first node
    other = make_store(cluster)
    theirs = other.start(session.id)  # the home nodes agree: the third node's copy unseen
    theirs["n"] = 2
    other.save(theirs)  # the first and second node
    raw(second).flush_all(noreply=False)
    with hung(first), pytest.raises(errpolicy.PolicyViolation):
        store.start(session.id)  # n=1 on the third node, n=2 on the hung first


@pytest.mark.hangs
def test_no_new_session_while_a_hung_node_below_home_may_hold_the_only_copy(
    store: MemcacheSessionStore,
    make_store: MakeStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
) -> None:
    """Soak B (lost): a failover save left the copy below home; both home nodes lost
    theirs (one restarted, one flushed) while that node hangs: partial_miss, not new."""
    session = store.start(None)
    first, second, third = ranked(cluster, session.id)
    second.kill()
    session["n"] = 1
    store.save(session)  # the first and third node
    store.close()  # the process is gone, and with it what it would hand over
    second.restart()
    raw(first).flush_all(noreply=False)
    with hung(third), pytest.raises(errpolicy.PolicyViolation):
        make_store(cluster).start(session.id)
    assert {"n": 1} == dict(make_store(cluster).start(session.id))


def test_a_skipped_node_that_refused_does_not_block_a_new_session(
    make_store: MakeStore, cluster: MemcachedCluster
) -> None:
    """A killed node, skipped once its breaker opened on refusals, holds nothing: an
    unknown id still gets a new session (not partial_miss); a hung one blocks it."""
    store = make_store(cluster)
    cluster[2].kill()
    killed = next(n for n in store.nodes if n.address == cluster[2].address)
    for _ in range(killed.breaker.threshold):
        killed.breaker.failure(refused=True)  # as the requests and probes through it saw
    unknown = store.new_session().id
    fresh = store.start(unknown).new
    killed.breaker.failure(refused=False)  # a timeout now: it may be hung, holding a copy
    with pytest.raises(errpolicy.PolicyViolation):
        store.start(unknown)
    assert (BreakerState.OPEN, True) == (killed.breaker.state, fresh)


@pytest.mark.hangs
def test_a_copy_on_a_node_back_since_it_was_seen_is_possibly_stale_while_others_fail(
    make_store: MakeStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """Soak B: a home node hung while another process saved past it; back, it holds the
    older copy while that save's two nodes fail: possibly stale, not served."""
    store = make_store(cluster, retry_after=0.05, max_retry_after=0.1)
    session = saved(store, n=1)  # the first and second node
    first, second, third = ranked(cluster, session.id)
    with hung(second):
        for _ in range(2):
            store.start(session.id)  # served by the first node; the second's breaker opens
        other = make_store(cluster)
        _open(other, second)
        theirs = other.start(session.id)
        theirs["n"] = 2
        other.save(theirs)  # the first and third node; the second keeps n=1
    back = next(n for n in store.nodes if n.address == second.address).breaker
    assert wait_for(lambda: back.state is BreakerState.CLOSED)  # the prober found it
    time.sleep(0.2)  # past the prober's grace: only what this process saw tells
    third.pause()
    first.kill()
    try:
        with pytest.raises(errpolicy.PolicyViolation):
            store.start(session.id)  # n=1 on the second node, n=2 on the hung third
    finally:
        third.resume()


@pytest.mark.hangs
def test_a_node_back_from_a_hang_is_suspect_for_a_session_this_process_never_saw(
    store: MemcacheSessionStore, make_store: MakeStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """Soak B: the same for a process that never read the session: a node it saw come
    back holds the older copy while the newer save's two nodes fail: possibly stale."""
    session = saved(store, n=1)  # the first and second node
    first, second, third = ranked(cluster, session.id)
    reader = make_store(cluster, retry_after=0.05, max_retry_after=0.1)
    with hung(second):
        _open(reader, second)  # as its requests to the hung node found
        _open(store, second)
        theirs = store.start(session.id)
        theirs["n"] = 2
        store.save(theirs)  # the first and third node; the second keeps n=1
    back = next(n for n in reader.nodes if n.address == second.address).breaker
    assert wait_for(lambda: back.state is BreakerState.CLOSED)  # the prober found it
    time.sleep(0.2)  # past the prober's grace
    third.pause()
    first.kill()
    try:
        with pytest.raises(errpolicy.PolicyViolation):
            reader.start(session.id)  # n=1 on the second node, n=2 on the hung third
    finally:
        third.resume()


def _held(raw: Raw, server: MemcachedServer, sid: str) -> object:
    """The session data ``server`` holds for ``sid`` (verified with the tests' secret)."""
    key = storage_key(PREFIX, sid)
    blob = raw(server).get(key)
    assert blob is not None
    return decode(blob, key, normalize_keys(SECRET)).data


def test_a_home_node_that_a_save_skipped_gets_the_newer_copy_over_its_older_one(
    store: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked, raw: Raw
) -> None:
    """Issue 10: a home node skipped by a save keeps its older copy no more once it is
    back: the handed-over copy replaces it (an ``add`` alone would not)."""
    session = saved(store, n=1)  # on the first and second node
    _, second, _ = ranked(cluster, session.id)
    _open(store, second)
    session["n"] = 2
    store.save(session)  # lands on the first and third node
    back_and_handed_over(store)  # the second node is back
    assert not store._handoff.waiting
    assert {"n": 2} == _held(raw, second, session.id)


def test_a_handed_over_copy_leaves_a_newer_one_in_place(
    store: MemcacheSessionStore,
    make_store: MakeStore,
    cluster: MemcachedCluster,
    ranked: Ranked,
    raw: Raw,
) -> None:
    """A skipped home node that another process has since given a newer copy keeps it:
    the handover never writes an older copy over a newer one."""
    session = saved(store, n=1)
    _, second, _ = ranked(cluster, session.id)
    _open(store, second)
    session["n"] = 2
    store.save(session)  # lands on the first and third node; the second waits for it
    for node in store.nodes:
        node.breaker.reset()
    with store._handoff._lock:  # as a handover in progress: nothing is handed over yet
        other = make_store(cluster)
        theirs = other.start(session.id)
        theirs["n"] = 3
        other.save(theirs)  # on the first and second node
    store.start(None)
    assert not store._handoff.waiting
    assert {"n": 3} == _held(raw, second, session.id)
