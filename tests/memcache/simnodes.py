"""Simulated memcached nodes for the deterministic simulation (``test_simulation.py``):
dictionaries, a clock the schedule moves (every clock a store's core reads: it is given
them as a :class:`Clocks`), and a store's I/O pointed at them.

A hung node keeps what it was sent and carries it out when it resumes: a write that
timed out lands late, as with a stopped memcached.
"""

from __future__ import annotations

from typing import Any

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache._clocks import Clocks
from errpolicy_memcache._envelope import EnvelopeError, Keyring, decode
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._node import Reply, exchanged, settle
from errpolicy_memcache._transport import Answer, wide_agreed
from errpolicy_memcache._wire import Command, NodeFailure

from .helpers import PREFIX

__all__ = ["ADDRESSES", "Clock", "Cluster", "SimNode"]

ADDRESSES = [f"10.0.0.{i}:11211" for i in range(1, 4)]


class Clock:
    """The simulation's time, moved only by the schedule (and a lock's poll)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self._ns = 0

    def __call__(self) -> float:
        return self.now

    def ns(self) -> int:
        """Nanoseconds, never the same twice: one machine's ``time.time_ns``, which two
        processes' saves read one after the other."""
        self._ns = max(self._ns + 1, int(self.now * 1e9))
        return self._ns

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``: the time moves on at once."""
        self.now += seconds

    @property
    def clocks(self) -> Clocks:
        """Every clock of a store's core on this time."""
        return Clocks(wall=self, monotonic=self, ticks=self, ns=self.ns)


class SimNode:
    """One memcached node: its items, and whether it is up, dead (refuses) or hung (takes
    commands, answers none, carries them out when it resumes)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.items: dict[str, tuple[bytes, int, float]] = {}
        self.state = "up"
        self.queued: list[Command] = []
        self.next_cas = 1
        self.found: set[str] = set()  # keys a ``gets`` found here since the checker looked

    def answer(self, commands: tuple[Command, ...] | list[Command]) -> Answer:
        done = self.clock.now
        if self.state == "dead":
            return [], NodeFailure("refused", "simulated"), done
        if self.state == "hung":
            self.queued.extend(commands)
            return [], NodeFailure("timeout", "simulated"), done
        results = [self.run(command) for command in commands]
        self.found.update(
            c.key for c, r in zip(commands, results, strict=True) if c.name == "gets" and r
        )
        return results, None, done

    def get(self, key: str) -> tuple[bytes, int] | None:
        item = self.items.get(key)
        if item is None or item[2] <= self.clock.now:
            self.items.pop(key, None)
            return None
        return item[0], item[1]

    def put(self, key: str, value: bytes, ttl: int) -> None:
        if ttl < 0:
            self.items.pop(key, None)
            return
        expires = self.clock.now + ttl if ttl else float("inf")
        self.items[key] = (value, self.next_cas, expires)
        self.next_cas += 1

    def run(self, command: Command) -> Any:
        key, name = command.key, command.name
        held = self.get(key)
        if name == "gets":
            return held
        if name == "delete":
            self.items.pop(key, None)
            return "DELETED" if held else "NOT_FOUND"
        if name == "touch":
            if held is None:
                return "NOT_FOUND"
            self.put(key, held[0], command.ttl)
            return "TOUCHED"
        assert command.value is not None
        if name == "add" and held is not None:
            return "NOT_STORED"
        if name == "cas":
            if held is None:
                return "NOT_FOUND"
            if held[1] != command.token:
                return "EXISTS"
        self.put(key, command.value, command.ttl)
        return "STORED"

    def resume(self) -> None:
        self.state = "up"
        queued, self.queued = self.queued, []
        for command in queued:
            self.run(command)


class Cluster:
    """The simulated nodes, and a store's I/O pointed at them."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.nodes = {address: SimNode(self.clock) for address in ADDRESSES}

    def attach(self, store: MemcacheSessionStore) -> MemcacheSessionStore:
        """Point ``store``'s I/O at the nodes (its core was built on ``clock.clocks``)."""
        by_transport = {
            id(store._transports.of(node)): self.nodes[node.address] for node in store.nodes
        }

        # Simulated time has no deadline: the driver's deadline is ignored.
        def execute(plan: Any, deadline: float = 0.0) -> list[Reply]:
            answers = [self.nodes[node.address].answer(commands) for node, commands in plan]
            return settle(plan, answers, self.clock.now)

        def exchange(plan: Any, deadline: float = 0.0) -> list[Reply]:  # the probes'
            answers = [self.nodes[node.address].answer(commands) for node, commands in plan]
            return exchanged(plan, answers, self.clock.now)

        def agreed_gets(
            transports: Any, command: Command, deadline: float = 0.0
        ) -> bytes | list[Answer]:
            answers = [by_transport[id(t)].answer((command,)) for t in transports]
            blobs = {None if a[1] is not None or a[0][0] is None else a[0][0][0] for a in answers}
            blob = blobs.pop() if len(blobs) == 1 else None
            return answers if blob is None else blob

        def stored_round(
            transports: Any, command: Command, deadline: float = 0.0
        ) -> bool | list[Answer]:
            answers = [by_transport[id(t)].answer((command,)) for t in transports]
            stored = all(a[1] is None and a[0][0] == "STORED" for a in answers)
            return True if stored else answers

        def wide_gets(
            transports: Any, command: Command, need: int, deadline: float = 0.0
        ) -> tuple[bytes, int] | list[Answer]:
            return wide_agreed([by_transport[id(t)].answer((command,)) for t in transports], need)

        store._execute = execute
        store._exchange = exchange
        store._agreed_gets = agreed_gets
        store._stored_round = stored_round
        store._wide_gets = wide_gets
        store._sleep = self.clock.sleep
        store._prober.wake = lambda: None  # type: ignore[method-assign]  # probes are rules
        return store

    def copies(self, sid: str, keys: Keyring) -> list[tuple[str, str, int | None]]:
        """(address, node state, value or None for a tombstone) of every readable copy."""
        key = storage_key(PREFIX, sid)
        found = []
        for address, node in self.nodes.items():
            if node.state == "dead":
                continue
            held = node.get(key)
            if held is None:
                continue
            try:
                record = decode(held[0], key, keys)
            except EnvelopeError:
                continue
            value = None if record.data is None else record.data["v"]
            found.append((address, node.state, value))
        return found
