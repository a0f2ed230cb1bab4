"""The asyncio store's probe tasks without memcached: the probe round is replaced
(``_exchange``, as the simulation does), so these check the tasks' bookkeeping, not
the network: claims released whatever ends a probe, and at most two probes of a node
in flight across every event loop of the process (the schedule is ``_node.Probes``,
the sync prober's: tests/memcache/test_prober.py drives it on a fake clock)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from errpolicy_memcache import BreakerState
from errpolicy_memcache._node import Node, Reply
from errpolicy_memcache._wire import Command, NodeFailure
from errpolicy_memcache.aio import AsyncMemcacheSessionStore

from .helpers import SECRET

Plan = Sequence[tuple[Node, Sequence[Command]]]
# Nothing listens there: the probe round is replaced, so no connection is ever tried.
ADDRESSES = [f"127.0.0.1:{port}" for port in range(1, 5)]


def _store_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("errpolicy_memcache-")]


async def test_a_probe_cancelled_before_it_ran_is_no_longer_in_flight() -> None:
    """aclose() right after the loop's task claimed a probe, before the probe's task
    first ran: the probe is cancelled, never sent, and its claim released."""
    store = AsyncMemcacheSessionStore(
        ADDRESSES[:2], SECRET, 1, failure_threshold=1, retry_after=0.01, max_retry_after=0.01
    )
    sent: list[Plan] = []

    async def exchange(plan: Plan, deadline: float = 0.0) -> list[Reply]:
        sent.append(plan)
        return [Reply(node, commands, [None], None, 0.0) for node, commands in plan]

    store._exchange = exchange  # type: ignore[method-assign]  # the probes' round
    store.nodes[0].breaker.failure()  # opens: the loop's task is created, not yet run
    time.sleep(0.02)  # blocking: past the backoff before that task's first step
    await asyncio.sleep(0)  # its first step claims the probe and creates its task
    claimed = dict(store._recovery._probes.in_flight)
    probes = [t for t in _store_tasks() if t.get_name() == "errpolicy_memcache-probe"]
    await store.aclose()
    seen = (claimed, [t.cancelled() for t in probes], sent, store._recovery._probes.in_flight)
    assert ({store.nodes[0]: 1}, [True], [], {}) == seen


def test_two_loops_keep_at_most_two_probes_of_a_node_in_flight() -> None:
    """Stress, with two event loops in two threads probing the same store: four nodes
    whose probes take up to 10 ms and fail for the first 400, on backoffs of 1-2 ms.
    No node ever has more than two probes in flight in the process, each had two at
    some point, both loops probed, and once the probes are answered every breaker
    closes with nothing counted and no task of the store is left. Bounded by counts."""
    store = AsyncMemcacheSessionStore(
        ADDRESSES, SECRET, 2, failure_threshold=1, retry_after=0.001, max_retry_after=0.002
    )
    lock = threading.Lock()
    flying = dict.fromkeys(store.nodes, 0)
    most = dict.fromkeys(store.nodes, 0)
    sent = [0]
    by_loop: dict[int, int] = {0: 0, 1: 0}
    pause = iter([0.001 * (i % 11) for i in range(1_000_000)])
    opened = threading.Event()
    left: list[list[str]] = [[], []]

    async def exchange(plan: Plan, deadline: float = 0.0) -> list[Reply]:
        ((target, commands),) = plan
        with lock:
            flying[target] += 1
            most[target] = max(most[target], flying[target])
            sent[0] += 1
            by_loop[which.index] += 1
            fail = sent[0] <= 400
            wait = next(pause)
        try:
            await asyncio.sleep(wait)
        finally:
            with lock:
                flying[target] -= 1
        if fail:
            return [Reply(target, commands, [], NodeFailure("timeout"), wait)]
        return [Reply(target, commands, [None], None, wait)]

    store._exchange = exchange  # type: ignore[method-assign]  # the probes' round

    class Which(threading.local):
        index = 0

    which = Which()

    async def run(index: int) -> None:
        which.index = index
        if index == 0:
            for node in store.nodes:
                node.breaker.failure()  # opens: this loop's task starts
            opened.set()
        else:
            opened.wait(30.0)
            store._recovery.wake()  # as a breaker opening on this loop would
        ends = time.monotonic() + 60.0  # bounds a stuck prober: the assert fails
        while time.monotonic() < ends and (
            _store_tasks() or any(n.breaker.state is not BreakerState.CLOSED for n in store.nodes)
        ):
            await asyncio.sleep(0.005)
        left[index] = [t.get_name() for t in _store_tasks()]
        await store.aclose()

    threads = [
        threading.Thread(target=asyncio.run, args=(run(index),), daemon=True) for index in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90.0)
    seen = (
        sorted(most.values()),
        [node.breaker.state for node in store.nodes],
        [node.breaker.failures for node in store.nodes],
        sent[0] > 400,
        by_loop[0] > 0 and by_loop[1] > 0,
        left,
        store._recovery._probes.in_flight,
    )
    assert ([2, 2, 2, 2], [BreakerState.CLOSED] * 4, [0] * 4, True, True, [[], []], {}) == seen
