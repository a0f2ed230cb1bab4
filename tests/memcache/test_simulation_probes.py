"""The deterministic simulation with probes in flight across other operations: the
prober claims a node's probes (a second one a backoff after the first, at most two per
node) and each is answered later, in either order, by what the node is then or
timed out; when a fault heals, the newest is answered and the older ones time out.
The first answer closes the breaker and a late failure is dropped; every read is still checked
against the history (test_simulation.py), so a breaker closed or vouched for on a
wrong answer shows as a lost, stale or resurrected read."""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from errpolicy_memcache._node import Claim, Reply
from errpolicy_memcache._wire import NodeFailure

from .test_simulation import _SETTINGS, DoubleFaultSimulation, StoreSimulation


class _ProbesInFlight(StoreSimulation):
    """Rules that send probes and answer them later (the asyncio store's too:
    test_aio_simulation.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: list[list[Claim]] = [[], []]

    @rule(process=st.integers(0, 1), wait=st.sampled_from([0.5, 1.0, 2.0]))
    def send_probes(self, process: int, wait: float) -> None:
        """``process``'s prober claims the probes due now, and twice ``wait`` seconds
        later those due then (a second probe beside the first, past its backoff); they
        wait for an answer."""
        prober = self.stores[process]._prober
        self.in_flight[process] += prober.claim()
        for _ in range(2):
            self.cluster.clock.now += wait
            self.in_flight[process] += prober.claim()

    @rule(process=st.integers(0, 1), oldest=st.booleans(), timed_out=st.booleans())
    def answer_probe(self, process: int, oldest: bool, timed_out: bool) -> None:
        """One probe in flight of ``process`` ends, the oldest or the newest: answered
        by the node as it is now, or ``timed_out`` whatever it is (an answer that came
        too late, from a starved node, say)."""
        waiting = self.in_flight[process]
        if waiting:
            self._end(process, waiting.pop(0 if oldest else -1), timed_out)

    def _end(self, process: int, claim: Claim, timed_out: bool) -> None:
        prober = self.stores[process]._prober
        if not timed_out:
            prober.probe(claim)
            return
        asks = prober._execute
        prober._execute = lambda plan: [
            Reply(node, commands, [], NodeFailure("timeout"), 0.0) for node, commands in plan
        ]
        try:
            prober.probe(claim)
        finally:
            prober._execute = asks

    @precondition(lambda self: bool(self.faulty))
    @rule()
    def heal(self) -> None:
        """Every node back; then the probes in flight end, the newest of each process
        answered by its node and the older ones timed out (sent while the node was
        away, answered too late); then the fault heals as usual."""
        for node in self.cluster.nodes.values():
            if node.state == "hung":
                node.resume()
            elif node.state == "dead":
                node.state = "up"
        for process, waiting in enumerate(self.in_flight):
            for late, claim in enumerate(reversed(waiting)):
                self._end(process, claim, timed_out=late > 0)
            waiting.clear()
        super().heal()


class SingleFaultProbes(_ProbesInFlight):
    """The single-fault schedules, with probes in flight."""


class DoubleFaultProbes(_ProbesInFlight, DoubleFaultSimulation):
    """The double-fault schedules (where a process vouches for copies), with probes in
    flight."""


# Fewer schedules than the other machines: the probes' rules add to theirs, which
# already run here with the same faults and operations.
_FEWER = settings(
    _SETTINGS, max_examples=max(1, int(os.environ.get("SIMULATION_EXAMPLES", "1000")) // 3)
)

TestSingleFaultProbes = SingleFaultProbes.TestCase
TestSingleFaultProbes.settings = _FEWER
TestDoubleFaultProbes = DoubleFaultProbes.TestCase
TestDoubleFaultProbes.settings = _FEWER
