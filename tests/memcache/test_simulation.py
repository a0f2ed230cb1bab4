"""Deterministic simulation: the store's decisions (``_core``) through its synchronous
driver, over simulated memcached nodes, under schedules of operations and faults that
hypothesis generates and shrinks; every read is checked against the history of
acknowledged saves and logouts, as Jepsen's checkers do (docs/memcache/index.md).

No sockets, no threads, no sleeping: the nodes (``simnodes.py``) are dictionaries, time
is a number the schedule moves (the stores' cores are given it as all their clocks), and
the store's I/O (``_execute``, ``_exchange``, ``_agreed_gets``, ``_stored_round``, ``_sleep``) is
pointed at them. A hung node keeps what it was sent and carries
it out when it resumes: a write that timed out lands late, as with a stopped memcached.
``test_simulation_mutants.py`` proves the checker catches stores broken on purpose.
"""

from __future__ import annotations

import os
from typing import Any

import errpolicy
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from errpolicy_memcache import BreakerState, MemcacheSessionStore, Session, SessionUnavailable
from errpolicy_memcache._envelope import Keyring, normalize_keys
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._wire import add, cas, delete, gets, set_, touch

from .helpers import PREFIX, SECRET
from .simnodes import ADDRESSES, Clock, Cluster, SimNode

# CPU-bound searches (tens of seconds alone); the suite's 120 s limit is there to catch
# hangs, and a machine busy with other work must not trip it.
pytestmark = pytest.mark.timeout(900)

SIDS = [c * 43 for c in "AB"]  # fixed ids: the same placement in every run
DOWN = (errpolicy.PolicyViolation, SessionUnavailable)


class History:
    """What the clients were told about one session id."""

    def __init__(self) -> None:
        self.created = False
        self.acked: list[int] = []  # values of acknowledged saves, in order
        self.unknown: set[int] = set()  # values of saves that failed: they may have landed
        self.destroyed = False  # an acknowledged logout
        self.destroy_unknown = False
        # The nodes that must hold the newest acknowledged save (or a newer one) until
        # they lose their memory: those that stored it, the strays its process's read
        # found (the save writes over them), the home nodes a read repaired, and a home
        # node a failover save skipped once its copy was handed over there.
        self.owed: set[str] = set()
        self.pending: set[str] = set()  # skipped home nodes whose copy is yet to come


class StoreSimulation(RuleBasedStateMachine):
    """Two processes (stores) over three simulated nodes, replicas=2; faults one node at a
    time, each healed (every node back and probed, every session read) before a fault on
    another node: the single-fault rows of the contract."""

    max_faulty = 1
    read_between = True  # heal() reads every session: the steady state between faults
    cross_process = True  # check every read against every process's acknowledged writes
    locking = False  # take the session lock in start(), release it in save() and destroy()

    def __init__(self) -> None:
        super().__init__()
        self.cluster = Cluster()
        self.keys = Keyring(normalize_keys(SECRET))
        self.stores = [self.process(), self.process()]
        self.history = {sid: History() for sid in SIDS}
        self.next_value = 1
        self.faulty: set[str] = set()
        self.seen: dict[tuple[int, str], int] = {}  # (process, sid) -> newest value it saw
        self.found: dict[tuple[int, str], set[str]] = {}  # the nodes its last read found
        self.destroyed_by: set[tuple[int, str]] = set()  # acknowledged logouts, by process

    def options(self, failure_threshold: int = 1) -> dict[str, Any]:
        """A process's store options (both drivers take them)."""
        return {
            "replicas": 2,
            "failure_threshold": failure_threshold,
            "retry_after": 1.0,
            "max_retry_after": 2.0,
            "clock": self.cluster.clock.clocks,  # every clock the core reads
            "locking": self.locking,
            "lock_timeout": 0.05,  # a busy lock's poll moves the simulated time
            "lock_poll": 0.01,
        }

    def process(self, failure_threshold: int = 1) -> MemcacheSessionStore:
        """A store over the simulated nodes: one process of the application."""
        return self.cluster.attach(
            MemcacheSessionStore(ADDRESSES, SECRET, **self.options(failure_threshold))
        )

    @initialize()
    def relaxed(self) -> None:
        policy = errpolicy.Policy(raise_on="WARNING | ERROR | CRITICAL", record="NONE")
        errpolicy.configure(policies=dict.fromkeys(_OPERATIONS, policy))

    # -- operations ------------------------------------------------------------------

    def _start(self, process: int, sid: str) -> Session | None:
        """``start(sid)`` in ``process``, checked against the history; None if it raised."""
        key = storage_key(PREFIX, sid)
        for node in self.cluster.nodes.values():
            node.found.discard(key)
        try:
            session = self.stores[process].start(sid)
        except DOWN:
            return None
        finally:
            self.found[process, sid] = {
                a for a, node in self.cluster.nodes.items() if key in node.found
            }
        self._check(process, sid, session)
        return session

    @rule(process=st.integers(0, 1), sid=st.sampled_from(SIDS))
    def save(self, process: int, sid: str) -> None:
        history = self.history[sid]
        value = self.next_value
        self.next_value += 1
        if not history.created:
            history.created = True
            session = Session(sid)
            self.found[process, sid] = set()
        else:
            loaded = self._start(process, sid)
            if loaded is None or loaded.new:
                return  # unavailable, or logged out: an id is never used again
            session = loaded
        session["v"] = value
        try:
            self.stores[process].save(session)
        except DOWN:
            history.unknown.add(value)
            self.stores[process].release(session)
            return
        history.acked.append(value)
        self.seen[process, sid] = value
        # What the contract makes this save owe (see History.owed).
        held = {a for a, _, v in self.cluster.copies(sid, self.keys) if v == value}
        found = {a for a in self.found.get((process, sid), ()) if self._up(a)}
        history.owed = held | found
        history.pending = set(ranked_addresses(sid)[:2]) - held
        # The copies its read found are written over (the contract's last row).
        assert found <= held, f"strays kept: {sid[:1]} v{value} on {sorted(held)}, read {found}"

    @rule(process=st.integers(0, 1), sid=st.sampled_from(SIDS))
    def read(self, process: int, sid: str) -> None:
        session = self._start(process, sid)
        if session is not None:
            self.stores[process].release(session)  # a request that only read

    @rule(process=st.integers(0, 1), sid=st.sampled_from(SIDS))
    def destroy(self, process: int, sid: str) -> None:
        session = self._start(process, sid)
        if session is None or session.new:
            return
        try:
            self.stores[process].destroy(session)
        except DOWN:
            self.history[sid].destroy_unknown = True
            self.stores[process].release(session)
            return
        self.history[sid].destroyed = True
        self.destroyed_by.add((process, sid))
        # A tombstone on every node that answers this process (the rest get it handed).
        store = self.stores[process]
        reached = {n.address for n in store.nodes if n.breaker.state is BreakerState.CLOSED}
        live = [a for a, _, v in self.cluster.copies(sid, self.keys) if v is not None]
        assert not [a for a in live if a in reached and self._up(a)], (
            f"a live copy after the logout: {sid[:1]} on {live}"
        )

    # -- faults ----------------------------------------------------------------------

    def _up(self, address: str) -> bool:
        return self.cluster.nodes[address].state == "up"

    def _forgets(self, address: str, *sids: str) -> None:
        """``address`` lost its memory (of ``sids``, default all): it owes nothing now."""
        for sid in sids or SIDS:
            self.history[sid].owed.discard(address)

    def _can_fault(self, address: str) -> bool:
        """True; when ``address`` would exceed the fault budget, the faults so far heal
        first (a rolling restart: one node after the other, nothing read in between)."""
        if address not in self.faulty and len(self.faulty) >= self.max_faulty:
            self.heal()
        return True

    @rule(address=st.sampled_from(ADDRESSES))
    def kill(self, address: str) -> None:
        if self._can_fault(address):
            self.faulty.add(address)
            node = self.cluster.nodes[address]
            node.state, node.items, node.queued = "dead", {}, []
            self._forgets(address)

    @rule(address=st.sampled_from(ADDRESSES))
    def hang(self, address: str) -> None:
        if self._can_fault(address) and self.cluster.nodes[address].state == "up":
            self.faulty.add(address)
            self.cluster.nodes[address].state = "hung"

    @rule(address=st.sampled_from(ADDRESSES))
    def restart_empty(self, address: str) -> None:
        if self._can_fault(address):
            self.faulty.add(address)
            node = self.cluster.nodes[address]
            node.state, node.items, node.queued = "up", {}, []
            self._forgets(address)

    @rule(address=st.sampled_from(ADDRESSES))
    def flush(self, address: str) -> None:
        if self._can_fault(address) and self.cluster.nodes[address].state == "up":
            self.faulty.add(address)
            self.cluster.nodes[address].items.clear()
            self._forgets(address)

    @rule(address=st.sampled_from(ADDRESSES), sid=st.sampled_from(SIDS))
    def evict(self, address: str, sid: str) -> None:
        if self._can_fault(address):
            self.faulty.add(address)
            self.cluster.nodes[address].items.pop(storage_key(PREFIX, sid), None)
            self._forgets(address, sid)

    @rule(address=st.sampled_from(ADDRESSES))
    def resume(self, address: str) -> None:
        node = self.cluster.nodes[address]
        if node.state == "hung":
            node.resume()

    @rule(
        sid=st.sampled_from(SIDS),
        kind=st.sampled_from(["restart_empty", "flush", "hang", "kill"]),
    )
    def home_faults(self, sid: str, kind: str) -> None:
        """Both home nodes of ``sid`` fail, one after the other (both at once where the
        fault budget allows): a rolling restart or flush, or a double fault, that
        leaves only the copies a failover put below home."""
        for address in ranked_addresses(sid)[:2]:
            getattr(self, kind)(address)

    @rule(
        process=st.integers(0, 1),
        sid=st.sampled_from(SIDS),
        fault=st.sampled_from(["kill", "hang"]),
        after=st.sampled_from(["", "heal", "other saves"]),
    )
    def failover_save(self, process: int, sid: str, fault: str, after: str) -> None:
        """The first home node of ``sid`` fails, then ``process`` saves it: the save lands
        below home (a stray) and owes the skipped home node its copy. ``after``: the
        fault heals; then, maybe, the other process saves it from its home read, which
        does not see the stray (left older than the newest save)."""
        getattr(self, fault)(ranked_addresses(sid)[0])
        self.save(process, sid)
        if after:
            self.heal()
        if after == "other saves":
            self.save(1 - process, sid)

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0]))
    def tick(self, seconds: float) -> None:
        self.cluster.clock.now += seconds

    @rule()
    def probe(self) -> None:
        for store in self.stores:
            store._prober.probe_due()

    @precondition(lambda self: bool(self.faulty))
    @rule()
    def heal(self) -> None:
        """Every node back (a killed one empty) and probed; then, if ``read_between``,
        every session read by each process (which repairs the copies): the fault is over."""
        for node in self.cluster.nodes.values():
            if node.state == "hung":
                node.resume()
            elif node.state == "dead":
                node.state = "up"
        self.cluster.clock.now += 3.0
        for store in self.stores:
            store._prober.probe_due()
        if self.read_between:
            for process in (0, 1):
                for sid in SIDS:
                    self.read(process, sid)
        for sid, history in self.history.items():
            # Every node answers and was probed: a skipped home node with nothing of
            # the session has been handed its copy (an older copy there keeps it out).
            key = storage_key(PREFIX, sid)
            for address in history.pending:
                if self.cluster.nodes[address].get(key) is None:
                    history.owed.add(address)
            history.pending.clear()
        self.faulty.clear()
        if self.locking:
            # No request holds a lock between rules: an add that timed out and landed
            # late was cleared by the process that sent it once the node answered.
            for store in self.stores:
                store._hand_over()
            left = [
                (address, key)
                for address, node in self.cluster.nodes.items()
                for key in list(node.items)
                if key.endswith(":lock") and node.get(key) is not None
            ]
            assert [] == left, f"a lock nobody holds: {left}"

    # -- the checker -----------------------------------------------------------------

    def _check(self, process: int, sid: str, session: Session) -> None:
        history = self.history[sid]
        copies = self.cluster.copies(sid, self.keys)
        newest = max(history.acked, default=0)
        owed = sorted(history.owed)
        gone = history.destroyed or history.destroy_unknown
        store = self.stores[process]
        closed = {n.address for n in store.nodes if n.breaker.state is BreakerState.CLOSED}
        if session.new:
            # Never a new session while a node that kept its memory owes the newest
            # acknowledged save (it answers, or a clean error is due while it cannot).
            assert gone or not owed, f"lost: {sid[:1]} new to {process}, v{newest} owed by {owed}"
            # Never an empty session while a node that answers holds the data; nor while
            # a hung one does, unless copies were lost with nothing read in between and
            # this process never saw the session (it cannot tell one surviving copy on
            # a hung node from none: the contract's double-fault row).
            if any(value is None for _, _, value in copies):
                return  # a tombstone: a logout, acknowledged or not
            answering = [v for a, state, v in copies if state == "up" and a in closed]
            away = [v for a, state, v in copies if not (state == "up" and a in closed)]
            knew = (process, sid) in self.seen or self.read_between
            if not self.cross_process:
                # A process that saw the session answers partial_miss while any node
                # that may hold a copy cannot answer, never a new session.
                assert gone or not (copies and (process, sid) in self.seen), (
                    f"lost: {sid[:1]} new to process {process}, which saw it, {copies}"
                )
                return
            assert gone or not answering, f"lost: {sid[:1]} new to process {process}, {copies}"
            # Nor while a hung node holds it, whoever saw it: that node may hold the only
            # copy left (a failover save left it below home).
            hung = [v for _, state, v in copies if state == "hung"]
            assert gone or not hung, f"lost: {sid[:1]} new to process {process}, {copies}"
            assert gone or not (away and knew), (
                f"lost: {sid[:1]} new to process {process}, which saw it, {copies}"
            )
            return
        value = session["v"]
        assert value in history.acked or value in history.unknown, f"phantom v{value}"
        # Never older than the newest acknowledged save while a node owes it.
        assert value >= newest or not owed, f"stale: {sid[:1]} v{value}, v{newest} owed by {owed}"
        if value >= newest:
            # A read that served the newest copies it onto the home nodes it reached.
            home = ranked_addresses(sid)[:2]
            history.owed.update(a for a in home if self._up(a) and a in closed)
        if not self.cross_process:
            assert (process, sid) not in self.destroyed_by, f"resurrected for process {process}"
            own = self.seen.get((process, sid), 0)
            kept = {v for _, _, v in copies}
            assert value >= own or own not in kept, f"stale for process {process}: v{value}"
            self.seen[process, sid] = value
            return
        assert not history.destroyed, f"resurrected: {sid[:1]} gave v{value} after a logout"
        # Never older than the newest acknowledged save that a node still holds (with
        # nothing read between faults, one that answers this process: a process that
        # did not see a node miss a save cannot tell its older copy from the newest,
        # the contract's first limit).
        held = {v for a, state, v in copies if self.read_between or (state == "up" and a in closed)}
        kept_newest = max((v for v in history.acked if v in held), default=0)
        assert value >= kept_newest, (
            f"stale: {sid[:1]} gave v{value}, v{kept_newest} acked and held"
        )
        own = self.seen.get((process, sid), 0)
        kept = {v for _, _, v in copies}
        assert value >= own or own not in kept, f"stale for process {process}: v{value} < v{own}"
        self.seen[process, sid] = value

    @invariant()
    def handed_over(self) -> None:
        """A skipped home node that now holds the newest save (handed over, or a write
        that timed out there landed) owes it from now on."""
        for sid, history in self.history.items():
            if not history.pending:
                continue
            newest = max(history.acked, default=0)
            for address, _, value in self.cluster.copies(sid, self.keys):
                if address in history.pending and value is not None and value >= newest:
                    history.pending.discard(address)
                    history.owed.add(address)

    @invariant()
    def nothing_hangs_unqueued(self) -> None:
        for node in self.cluster.nodes.values():
            assert node.state == "hung" or not node.queued

    def teardown(self) -> None:
        errpolicy.reset_defaults()


_OPERATIONS = (
    "session.destroy",
    "session.exists",
    "session.regenerate",
    "session.save",
    "session.start",
)

# A fixed, derandomized search in CI (the same schedules every run, so never flaky);
# SIMULATION_EXAMPLES=100000 for a long run. No "explain" phase: its tracer is slow.
_SETTINGS = settings(
    max_examples=int(os.environ.get("SIMULATION_EXAMPLES", "1000")),
    stateful_step_count=50,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestSingleFaults = StoreSimulation.TestCase
TestSingleFaults.settings = _SETTINGS


class RollingSimulation(StoreSimulation):
    """The same with nothing read between faults: a rolling restart (or flush) of
    sessions nobody reads, one node after the other. A session may lose every copy
    then; what is left must still never be stale, resurrected or hidden."""

    read_between = False


TestRollingFaults = RollingSimulation.TestCase
TestRollingFaults.settings = _SETTINGS


def test_the_simulated_nodes_behave_like_memcached() -> None:
    """add, cas, touch, delete and a negative TTL do what memcached does."""
    node = SimNode(Clock())
    answers = [
        node.run(add("k", b"a", 0)),
        node.run(add("k", b"b", 0)),
        node.run(cas("k", b"c", 0, 99)),
        node.run(cas("k", b"c", 0, 1)),
        node.run(touch("k", 5)),
        node.run(gets("k")),
        node.run(set_("k", b"d", -1)),
        node.run(gets("k")),
        node.run(delete("k")),
    ]
    assert [
        "STORED",
        "NOT_STORED",
        "EXISTS",
        "STORED",
        "TOUCHED",
        (b"c", 3),
        "STORED",
        None,
        "NOT_FOUND",
    ] == answers


def ranked_addresses(sid: str) -> list[str]:
    """The simulated nodes in the order the stores rank them for ``sid``."""
    from errpolicy_memcache._placement import node_seed, rank

    return rank(ADDRESSES, [node_seed(a) for a in ADDRESSES], storage_key(PREFIX, sid))


def test_a_logout_is_not_undone_by_a_rolling_flush() -> None:
    """Defect 1 as a schedule: a failover save leaves a third copy; after the logout both
    home nodes are flushed in turn; the other process still finds no session."""
    machine = RollingSimulation()
    machine.relaxed()
    sid = SIDS[0]
    first, second, _ = ranked_addresses(sid)
    machine.kill(first)
    machine.save(0, sid)
    machine.heal()
    machine.read(0, sid)
    machine.destroy(0, sid)
    machine.flush(first)
    machine.heal()
    machine.flush(second)
    machine.read(1, sid)
    machine.teardown()


def test_an_older_copy_is_not_served_once_the_newest_is_lost() -> None:
    """A save skips a hung home node; both nodes of its copy restart; the older copy the
    skipped node kept is not served to the process that saw the newer one acknowledged."""
    machine = RollingSimulation()
    machine.relaxed()
    sid = SIDS[0]
    first, second, third = ranked_addresses(sid)
    try:
        machine.save(0, sid)  # v1 on first and second
        machine.hang(second)
        machine.save(0, sid)  # v2 on first and third; second skipped, keeps v1
        machine.heal()
        machine.kill(first)
        machine.restart_empty(third)  # first comes back empty before
        try:
            session = machine.stores[0].start(sid)
        except DOWN:
            return  # a clean error is what the contract allows
        assert session.new or 2 == session["v"]
    finally:
        machine.teardown()


def test_a_node_that_failed_below_the_threshold_does_not_serve_its_older_copy() -> None:
    """The soak's stale read (CI, scenario C: every node hung) as a schedule."""
    node_failed_below_the_threshold(RollingSimulation())


def node_failed_below_the_threshold(machine: StoreSimulation) -> None:
    """Process 0's breaker of the first home node opens and its save goes around that
    node; process 1 saw the node fail too, but fewer times than its threshold, so its
    breaker stayed closed, while its breakers of the two nodes that took the newer save
    opened. When the first home node answers again, process 1 must not serve the older
    copy there as an ordinary read: the node answered after failing, so it may have
    missed writes. (Time moves between the steps: the simulated clock stands still
    otherwise, and a rejoin counts when it comes after the copy was seen.)"""
    machine.stores[1] = machine.process(failure_threshold=3)
    machine.relaxed()
    sid = SIDS[0]
    first, second, third = ranked_addresses(sid)
    nodes = machine.cluster.nodes
    try:
        machine.save(0, sid)  # v1 on both home nodes
        machine.tick(0.5)
        nodes[first].state = "hung"
        machine.read(1, sid)  # process 1: one failure of the first home node, v1 read
        machine.tick(0.5)
        machine.save(0, sid)  # process 0's breaker opens; v2 goes around the hung node
        machine.tick(0.5)
        holders = {a for a, _, v in machine.cluster.copies(sid, machine.keys) if v == 2}
        assert holders == {second, third}
        later = machine.stores[1]
        assert [n.breaker.state for n in later.nodes if n.address == first] == [BreakerState.CLOSED]
        # Every node hangs; the newer copy's holders fail process 1's next requests
        # (three each, its threshold), the first home node answers again.
        nodes[second].state = nodes[third].state = "hung"
        for node in later.nodes:
            if node.address in holders:
                for _ in range(3):
                    node.breaker.failure()
        machine.tick(0.5)
        nodes[first].resume()
        try:
            session = later.start(sid)
        except DOWN:
            return  # a clean error: the newer copy cannot be read now
        assert not session.new
        assert 2 == session["v"], f"stale: v{session['v']} from {first}, v2 acknowledged"
    finally:
        machine.teardown()


class DoubleFaultSimulation(RollingSimulation):
    """Two nodes of three faulty at once, nothing read between faults: beyond what the
    contract promises across processes, each process still never serves a copy older
    than one it saw acknowledged while that one is kept, nor a session it logged out."""

    max_faulty = 2
    cross_process = False


TestDoubleFaults = DoubleFaultSimulation.TestCase
TestDoubleFaults.settings = _SETTINGS


class LockSimulation(StoreSimulation):
    """The single-fault schedules with the session lock taken by every request: a lock
    ``add`` that times out on a hung node and lands when it resumes is cleared by its
    process once the node answers again, so after each fault heals no lock is left."""

    locking = True


TestLockFaults = LockSimulation.TestCase
# Fewer schedules: a lock left behind shows within a few faults, and every busy lock
# polls in real time (lock_timeout).
TestLockFaults.settings = settings(
    _SETTINGS, max_examples=max(1, int(os.environ.get("SIMULATION_EXAMPLES", "1000")) // 4)
)
