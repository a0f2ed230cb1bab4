"""The fault schedules: what the nemesis does in each scenario, until its time is up.

Every schedule heals what it broke before it returns; the runner heals everything again
anyway and measures recovery from there.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ._nemesis import Deck, Nodes, Wait, single_fault

Schedule = Callable[[Nodes, random.Random, Wait], None]


def one_faulty(nodes: Nodes, rng: random.Random, wait: Wait) -> None:
    """At most one node faulty at a time (never the evicting one)."""
    healthy = [i for i in range(len(nodes.servers)) if i not in nodes.evicting]
    deck = Deck(rng)
    while True:
        single_fault(nodes, rng.choice(healthy), deck.draw(), rng, wait)
        if wait(rng.uniform(0.3, 1.2)):
            return


def two_faulty(nodes: Nodes, rng: random.Random, wait: Wait) -> None:
    """Two lanes of faults: at most two nodes faulty at a time, often overlapping."""
    busy: set[int] = set()
    lock = threading.Lock()
    done = threading.Event()  # a lane failed: the other stops too
    errors: list[BaseException] = []

    def lane(seed: float) -> None:
        lane_rng = random.Random(seed)
        deck = Deck(lane_rng)
        while not done.is_set():
            with lock:
                index = lane_rng.choice([i for i in range(len(nodes.servers)) if i not in busy])
                busy.add(index)
            try:
                single_fault(nodes, index, deck.draw(), lane_rng, wait)
            finally:
                with lock:
                    busy.discard(index)
            if wait(lane_rng.uniform(0.1, 0.8)):
                return

    def other_lane(seed: float) -> None:
        try:
            lane(seed)
        except BaseException as exc:  # raised in the scenario's thread, below
            errors.append(exc)
            done.set()

    other = threading.Thread(target=other_lane, args=(rng.random(),), daemon=True)
    other.start()
    try:
        lane(rng.random())
    finally:
        done.set()
        other.join()
    if errors:
        raise errors[0]


def all_down(nodes: Nodes, rng: random.Random, wait: Wait) -> None:
    """Every node down (killed, hung or a mix) for 2-4 s, again and again."""
    count = len(nodes.servers)
    while not wait(rng.uniform(1.5, 3.0)):
        how = rng.choice(("kill", "pause", "mixed"))
        killed = set()
        for index in range(count):
            if how == "kill" or (how == "mixed" and rng.random() < 0.5):
                nodes.kill(index)
                killed.add(index)
            else:
                nodes.pause(index)
        wait(rng.uniform(2.0, 4.0))
        for index in rng.sample(range(count), count):
            if index in killed:
                nodes.start(index)
            else:
                nodes.resume(index)


def rolling(nodes: Nodes, rng: random.Random, wait: Wait) -> None:
    """A rolling restart of every node (each down for 0.3-1.5 s, as during a deploy),
    then a rolling ``flush_all``, and again, each round in a new order (with one fixed
    order, a copy left on a node that rolls before a session's home nodes in one round
    is always gone before they roll in the next)."""
    count = len(nodes.servers)
    while True:
        for index in rng.sample(range(count), count):
            nodes.kill(index)
            wait(rng.uniform(0.3, 1.5))
            nodes.start(index)
            if wait(rng.uniform(0.5, 1.5)):
                return
        for index in rng.sample(range(count), count):
            nodes.flush(index)
            if wait(rng.uniform(0.5, 1.5)):
                return


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named fault schedule over ``nodes`` memcached nodes, ``evicting`` of them tiny."""

    name: str
    title: str
    schedule: Schedule
    nodes: int = 5
    evicting: int = 0


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("A", "at most one node faulty, one node evicting", one_faulty, evicting=1),
        Scenario("B", "at most two nodes faulty", two_faulty),
        Scenario("C", "every node down for 2-4 s, again and again", all_down),
        Scenario("R", "rolling restarts and rolling flush_all", rolling),
    )
}
