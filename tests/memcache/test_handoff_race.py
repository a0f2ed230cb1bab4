"""The handoff under racing threads: saves and logouts add hints while it hands over."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence

from errpolicy_memcache._breaker import CircuitBreaker
from errpolicy_memcache._core import Write
from errpolicy_memcache._envelope import EnvelopeError
from errpolicy_memcache._handoff import Handoff
from errpolicy_memcache._node import Node, Reply
from errpolicy_memcache._steps import ROUND, Plan
from errpolicy_memcache._wire import Command, set_


def _hand_over(handoff: Handoff, run: Callable[[Plan], list[Reply]]) -> None:
    """Carry out a handover's steps with ``run`` (what a driver does)."""
    steps = handoff.hand_over()
    answer = None
    try:
        while True:
            command = steps.send(answer)
            assert ROUND is command[0]
            answer = run(command[1])
    except StopIteration:
        pass


def test_hints_added_while_handing_over_raise_nothing() -> None:
    """Threads adding hints while another hands over never make it raise."""
    nodes = [Node("127.0.0.1", port, CircuitBreaker(3, 1.0, 5.0)) for port in (1, 2)]

    def run(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        return []  # nothing answers: every hint stays

    handoff = Handoff(nodes, lambda blob, key: EnvelopeError("unused"))
    errors: list[BaseException] = []
    done = threading.Event()

    def add(prefix: str) -> None:
        for i in range(3000):
            key = f"{prefix}{i}"
            handoff.hint(Write(key, set_(key, b"x", 60), nodes, 2), nodes[:1])

    def hand_over() -> None:
        try:
            while not done.is_set():
                _hand_over(handoff, run)
        except BaseException as exc:  # the failure this test looks for
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        runner = threading.Thread(target=hand_over)
        runner.start()
        adders = [threading.Thread(target=add, args=(f"k{n}-",)) for n in range(3)]
        for thread in adders:
            thread.start()
        for thread in adders:
            thread.join()
        done.set()
        runner.join()
    finally:
        sys.setswitchinterval(interval)
    assert [] == errors


def test_a_hint_left_while_an_older_one_is_handed_over_is_kept() -> None:
    """A newer hint for the same node and key (a logout that missed the node while its
    older hint was on the way) is not forgotten with the older one: it waits."""
    nodes = [Node("127.0.0.1", port, CircuitBreaker(3, 1.0, 5.0)) for port in (1, 2)]
    older, newer = set_("k", b"older", 60), set_("k", b"newer", 60)

    def run(plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        handoff.hint(Write("k", newer, nodes, 2), nodes[:1])  # lands meanwhile
        return [
            Reply(node, commands, ["STORED"] * len(commands), None, 0.0) for node, commands in plan
        ]

    handoff = Handoff(nodes, lambda blob, key: EnvelopeError("unused"))
    handoff.hint(Write("k", older, nodes, 2), nodes[:1])
    _hand_over(handoff, run)
    assert ([newer], True) == ([c for c, _ in handoff._hints.values()], handoff.waiting)
