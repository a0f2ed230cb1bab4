"""The demo's phases: what happens to the three nodes, and what must hold meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

#: How every node goes down in the all-down phase.
ALL_DOWN_MODES = ("mixed", "kill", "hang")


@dataclass(frozen=True, slots=True)
class Expect:
    """What a phase allows; whatever is not allowed is checked and fails the demo."""

    lost: bool = False
    unavailable: bool = False
    all_unavailable: bool = False
    notices: bool = False
    recover: bool = False


@dataclass(frozen=True, slots=True)
class Phase:
    """A named cluster change, applied between requests, and its expectations."""

    name: str
    title: str
    apply: Callable[[MemcachedCluster], None]
    expect: Expect
    #: The index of the node the phase takes down, if any: its failover shows only if it
    #: held a copy of some user's session (each session lives on 2 of the 3 nodes).
    down: int | None = None


def _nothing(cluster: MemcachedCluster) -> None:
    return None


def _kill_first(cluster: MemcachedCluster) -> None:
    cluster[0].kill()


def _pause_second(cluster: MemcachedCluster) -> None:
    cluster[1].pause()


def _bring_back(cluster: MemcachedCluster) -> None:
    for server in cluster.servers:
        _revive(server)


def _revive(server: MemcachedServer) -> None:
    if server.paused:
        server.resume()
    elif not server.running:
        server.restart()


def _all_down(mode: str) -> Callable[[MemcachedCluster], None]:
    def apply(cluster: MemcachedCluster) -> None:
        for index, server in enumerate(cluster.servers):
            if mode == "kill" or (mode == "mixed" and index == 0):
                server.kill()
            else:
                server.pause()

    return apply


def killed_in_all_down(mode: str, size: int) -> int:
    """How many nodes lose their memory in the all-down phase."""
    return {"mixed": 1, "kill": size, "hang": 0}[mode]


def build_phases(all_down: str = "mixed", replicas: int = 2, size: int = 3) -> Sequence[Phase]:
    """The six phases, in order; faults accumulate until the nodes come back.

    After the all-down phase a session may be lost only if every node holding it was
    killed: with ``replicas`` copies that needs at least ``replicas`` killed nodes.
    """
    if all_down not in ALL_DOWN_MODES:
        raise ValueError(f"all_down must be one of {ALL_DOWN_MODES}, not {all_down!r}")
    down_title = {
        "mixed": "every node down: node 1 killed, nodes 2 and 3 hung",
        "kill": "every node down: all killed",
        "hang": "every node down: all hung (SIGSTOP)",
    }[all_down]
    may_lose = killed_in_all_down(all_down, size) >= replicas
    return (
        Phase("all-up", "all three nodes up", _nothing, Expect()),
        Phase(
            "one-killed",
            "node 1 killed (SIGKILL): its data is gone",
            _kill_first,
            Expect(notices=True),
            down=0,
        ),
        Phase(
            "one-hung",
            "node 2 hung (SIGSTOP) too: only node 3 answers",
            _pause_second,
            Expect(notices=True),
            down=1,
        ),
        Phase(
            "restarted",
            "node 1 restarted empty, node 2 resumed with stale data",
            _bring_back,
            Expect(unavailable=True, recover=True),
        ),
        Phase("all-down", down_title, _all_down(all_down), Expect(all_unavailable=True)),
        Phase(
            "all-back",
            "every node back (killed ones empty)",
            _bring_back,
            Expect(lost=may_lose, unavailable=True, recover=True),
        ),
    )
