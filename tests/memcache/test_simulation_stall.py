"""Vouching under a stalled process, in the deterministic simulation: a process that
stops probing (a long garbage collection, CPU starvation, SIGSTOP) must not take a node
it last heard failing before the stall for one that failed all along.

Vouching (``_core._vouched``) serves a copy this process saw acknowledged over a node
that cannot answer when that node has failed for this process since before: it took
no newer save. That holds only while this process hears the node fail every probe
period; across a stall the node may have come back, taken another process's newer
save and hung again.
"""

from __future__ import annotations

import pytest

from errpolicy_memcache import MemcacheSessionStore

from .helpers import SECRET
from .simnodes import ADDRESSES
from .test_simulation import DOWN, SIDS, StoreSimulation, ranked_addresses

SID = SIDS[0]
FIRST, SECOND, THIRD = ranked_addresses(SID)


def _killed_then_failover_save() -> StoreSimulation:
    """v1 at home; the first home node killed; process 0 sees it fail, then saves v2 on
    the second home node and the third (a failover): process 0 acknowledged v2 after
    it heard the first node fail."""
    machine = StoreSimulation()
    machine.relaxed()
    machine.save(0, SID)  # v1 on FIRST and SECOND
    machine.cluster.nodes[FIRST].state = "dead"
    machine.cluster.nodes[FIRST].items.clear()
    machine.cluster.clock.now += 0.5
    machine.save(0, SID)  # its read skips FIRST (refused): v2 on SECOND and THIRD
    assert {(SECOND, 2), (THIRD, 2)} <= {
        (a, v) for a, _, v in machine.cluster.copies(SID, machine.keys)
    }
    return machine


def _third_process(machine: StoreSimulation) -> MemcacheSessionStore:
    """Another process over the same simulated nodes, with the simulation's options."""
    return machine.cluster.attach(
        MemcacheSessionStore(
            ADDRESSES,
            SECRET,
            replicas=2,
            failure_threshold=1,
            retry_after=1.0,
            max_retry_after=2.0,
            clock=machine.cluster.clock,
        )
    )


def _probe(machine: StoreSimulation, process: int) -> None:
    machine.stores[process]._prober.probe_due()


def test_a_stalled_process_does_not_vouch_across_its_stall() -> None:
    """Process 0 stalls 10 s; meanwhile the first home node comes back empty, process 1
    saves v3 on both home nodes (not the third), and both hang: process 0 must not serve its own v2
    from the third node (stale: v3 is acknowledged and held), but refuse."""
    machine = _killed_then_failover_save()
    try:
        machine.cluster.clock.now += 10.0  # process 0 stalls: no probe, no request
        machine.cluster.nodes[FIRST].state = "up"  # restarted, empty
        # A third process reads v2 (home disagrees: it asks every node) and repairs it
        # onto the first node; process 1 then finds both home nodes agreeing, and its
        # v3 goes home only: the third node keeps process 0's v2.
        _third_process(machine).start(SID)
        machine.save(1, SID)
        copies = {(a, v) for a, _, v in machine.cluster.copies(SID, machine.keys)}
        assert {(FIRST, 3), (SECOND, 3), (THIRD, 2)} == copies
        machine.cluster.nodes[FIRST].state = "hung"
        machine.cluster.nodes[SECOND].state = "hung"
        with pytest.raises(DOWN):
            machine.stores[0].start(SID)
    finally:
        machine.teardown()


def test_a_process_that_kept_probing_still_vouches_for_its_save() -> None:
    """The same outage without the stall: process 0 probes the dead first node every
    second (each refused), the second home node hangs; process 0 still serves its own
    v2 from the third node (the first node failed throughout, so no newer save can
    hide on the two that cannot answer)."""
    machine = _killed_then_failover_save()
    try:
        for _ in range(10):
            machine.cluster.clock.now += 1.0
            _probe(machine, 0)
        machine.cluster.nodes[SECOND].state = "hung"
        session = machine.stores[0].start(SID)
        assert (False, 2) == (session.new, session["v"])
    finally:
        machine.teardown()
