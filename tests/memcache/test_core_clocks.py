"""The store's sans-IO core reads no clock of its own and holds no connection: its
driver gives it a :class:`Clocks`, and each driver opens its own connections. Driven
directly, as ``test_machine.py`` does: each command answered by hand, no sockets."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from errpolicy_memcache import BreakerState, MemcacheSessionStore
from errpolicy_memcache._aio_transport import AsyncPool
from errpolicy_memcache._clocks import PROCESS_CLOCKS, Clocks
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._machine_read import StoreCore
from errpolicy_memcache._node import Node, settle
from errpolicy_memcache._placement import rank
from errpolicy_memcache._steps import HOME_STORE, ROUND, WAIT, Steps
from errpolicy_memcache._store import build_core
from errpolicy_memcache._transport import Answer, PipelinedTransport, PymemcacheTransport
from errpolicy_memcache._wire import NodeFailure
from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import PREFIX, SECRET
from .simnodes import ADDRESSES

LOCK_TTL = 30
OPERATION_TIMEOUT = 1.5  # above the default lock_timeout
EPOCH_NS = 1_700_000_000_000_000_000  # Nov 2023


class FakeClock:
    """A clock that says what it is set to, and counts its reads."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> Any:
        self.reads += 1
        return self.now


class FakeClocks:
    """One fake clock per clock of :class:`Clocks`, each on its own scale (so a read of
    the wrong one shows)."""

    def __init__(self) -> None:
        self.wall = FakeClock(1_000_000.0)
        self.monotonic = FakeClock(500.0)
        self.ticks = FakeClock(70.0)
        self.ns = FakeClock(EPOCH_NS)

    @property
    def clocks(self) -> Clocks:
        return Clocks(wall=self.wall, monotonic=self.monotonic, ticks=self.ticks, ns=self.ns)


def _core(fake: FakeClocks, **options: Any) -> StoreCore:
    settings: dict[str, Any] = {
        "failure_threshold": 1,
        "retry_after": 2.0,
        "max_retry_after": 8.0,
        "lock_ttl": LOCK_TTL,
        "operation_timeout": OPERATION_TIMEOUT,
        **options,
    }
    return build_core(ADDRESSES, SECRET, 2, on_open=lambda: None, clock=fake.clocks, **settings)


class Nodes:
    """Three simulated nodes' items, answering the core's commands by hand."""

    def __init__(self, ticks: FakeClock) -> None:
        self.items: dict[tuple[str, str], bytes] = {}
        self.down: set[str] = set()
        self.deadlines: list[float] = []
        self.ticks = ticks
        self.round_time = 0.0  # how far ``ticks`` moves during a round

    def answer(self, command: tuple[Any, ...]) -> Any:
        if command[0] is WAIT:
            return None
        if command[0] is HOME_STORE:
            known, write = command[1], command[2]
            for node in known.home:
                self.items[node.address, write.key] = write.value
            return True
        assert ROUND is command[0]
        self.deadlines.append(command[2])
        began = self.ticks.now
        self.ticks.now += self.round_time
        answers = [self._answer(node, commands) for node, commands in command[1]]
        return settle(command[1], answers, began)  # as a driver: recorded on the breakers

    def _answer(self, node: Any, commands: Any) -> Answer:
        if node.address in self.down:
            return [], NodeFailure("timeout", "simulated"), self.ticks.now
        values: list[Any] = []
        for c in commands:
            held = self.items.get((node.address, c.key))
            if c.name == "gets":
                values.append(None if held is None else (held, 1))
            elif c.name == "delete":
                self.items.pop((node.address, c.key), None)
                values.append("DELETED" if held else "NOT_FOUND")
            elif c.name == "touch":
                values.append("TOUCHED" if held else "NOT_FOUND")
            elif c.name == "add" and held is not None:
                values.append("NOT_STORED")
            else:
                self.items[node.address, c.key] = c.value
                values.append("STORED")
        return values, None, self.ticks.now


def _run(steps: Steps[Any], nodes: Nodes) -> Any:
    try:
        command = next(steps)
        while True:
            command = steps.send(nodes.answer(command))
    except StopIteration as done:
        return done.value


_PROCESS_CLOCK_NAMES = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter")


@contextmanager
def _process_clock_reads() -> Iterator[list[str]]:
    """The reads of a process clock (``time.*``) made by errpolicy_memcache's code in the
    block, as ``module.function``. A profile hook sees every call of a builtin, so a
    clock bound before the block (a default argument, a module global) shows too."""
    clocks = {getattr(time, name) for name in _PROCESS_CLOCK_NAMES}
    reads: list[str] = []

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "c_call" and arg in clocks:
            module = frame.f_globals.get("__name__", "")
            if module.startswith("errpolicy_memcache"):
                reads.append(f"{module}.{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        yield reads
    finally:
        sys.setprofile(None)


def _cycle(core: StoreCore, fake: FakeClocks, nodes: Nodes) -> None:
    """A whole session's life through the core: a save, reads (the one-round read unless
    locking, a read during a fault), a save while a home node is skipped, the node back
    and handed its copy, a logout."""
    session = core.new_session()
    session["user"] = "ada"
    assert _run(core.save(session, False, None), nodes) is None
    known = core._derive(storage_key(PREFIX, session.id))
    home = known.home[0]
    if core.home_known(session.id) is not None:  # no locking: the one-round read
        blob = nodes.items[home.address, known.key]
        assert core.home_session(session.id, known, fake.ticks.now, blob) is not None
    nodes.down.add(home.address)  # a fault: its breaker opens
    loaded, _ = _run(core.start(session.id), nodes)
    nodes.down.clear()
    loaded["user"] = "grace"
    _run(core.save(loaded, False, None), nodes)  # below home, hinted to the home node
    fake.monotonic.now += 10.0
    assert home.breaker.probe()  # the prober's turn: due on the monotonic clock
    home.breaker.success()
    _run(core.hand_over(), nodes)
    assert _run(core.exists(session.id), nodes)[0] is not None
    _run(core.tombstone(loaded.id, loaded.version, loaded.ttl, loaded), nodes)
    assert (None, False) == (_run(core.exists(session.id), nodes)[0], core.handoff.waiting)


@pytest.mark.parametrize("locking", [False, True])
def test_the_core_never_reads_a_process_clock(locking: bool) -> None:
    """A whole cycle (saves, reads, a fault, a handoff, a logout), with and without
    locking: every time the core reads comes from the clocks its driver gave it."""
    fake = FakeClocks()
    core = _core(fake, locking=locking)
    nodes = Nodes(fake.ticks)
    with _process_clock_reads() as reads:
        _cycle(core, fake, nodes)
    read = {name: clock.reads > 0 for name, clock in vars(fake).items()}
    assert ([], dict.fromkeys(("wall", "monotonic", "ticks", "ns"), True)) == (reads, read)


def test_the_check_sees_a_process_clock_read() -> None:
    """The check above is not blind: the process's clocks, read through the core, show."""
    core = _core(FakeClocks())
    with _process_clock_reads() as reads:
        core._ticks = time.perf_counter  # as before the change
        core.deadline(None)
    assert ["errpolicy_memcache._machine.deadline"] == reads


def test_deadlines_follow_the_ticks_clock() -> None:
    """A round's deadline is ``operation_timeout`` after the operation began, on ``ticks``."""
    fake = FakeClocks()
    core = _core(fake)
    nodes = Nodes(fake.ticks)
    fake.ticks.now = 1234.5
    _run(core.exists(core.new_session().id), nodes)
    assert {1234.5 + OPERATION_TIMEOUT} == set(nodes.deadlines)


def test_an_outcome_times_the_operation_on_the_ticks_clock() -> None:
    """The elapsed time an outcome reports is ``ticks`` at its end minus at its start."""
    fake = FakeClocks()
    seen: list[float] = []
    core = _core(fake, on_outcome=lambda outcome: seen.append(outcome.elapsed))
    nodes = Nodes(fake.ticks)
    nodes.round_time = 0.25
    _run(core.exists(core.new_session().id), nodes)
    assert [0.25 * len(nodes.deadlines)] == seen


def test_a_lock_held_past_its_ttl_on_the_monotonic_clock_is_not_deleted() -> None:
    """A lock's age is on ``monotonic``: released within its TTL it is deleted (however
    far ``ticks`` moved); released after it (another request may hold it now) it is left
    to expire."""
    fake = FakeClocks()
    core = _core(fake, locking=True)
    nodes = Nodes(fake.ticks)
    saved = core.new_session()
    _run(core.save(saved, False, None), nodes)
    released: list[int] = []
    for clock in (fake.ticks, fake.monotonic):
        locked, _ = _run(core.start(saved.id), nodes)
        clock.now += LOCK_TTL
        rounds = len(nodes.deadlines)
        _run(core.unlock(locked), nodes)
        released.append(len(nodes.deadlines) - rounds)
    assert [1, 0] == released


def test_a_busy_lock_gives_up_on_the_monotonic_clock() -> None:
    """A busy lock polls until ``lock_timeout`` passes on ``monotonic``: each WAIT the
    driver carries out moves it here, and the attempt gives up before the next poll
    would pass it (0.25 s, then 0.1 s each: 0.95 s)."""
    fake = FakeClocks()
    core = _core(fake, locking=True, lock_timeout=1.0, lock_poll=0.25)
    nodes = Nodes(fake.ticks)
    saved = core.new_session()
    _run(core.save(saved, False, None), nodes)
    _run(core.start(saved.id), nodes)  # holds the lock, never released
    waits: list[float] = []
    steps = core.start(saved.id)
    command = next(steps)
    try:
        while True:
            if command[0] is WAIT:
                waits.append(command[1])
                fake.monotonic.now += command[1]  # only it: ``ticks`` stands still
            command = steps.send(nodes.answer(command))
    except StopIteration as done:
        _, outcome = done.value
    assert (0.95, "lock_timeout") == (round(sum(waits), 9), outcome.kind.value)


def test_breaker_backoff_follows_the_monotonic_clock() -> None:
    """A node that failed is probed again ``retry_after`` later on ``monotonic``, and the
    fault clock stamps the fault at that clock's time."""
    fake = FakeClocks()
    core = _core(fake)
    nodes = Nodes(fake.ticks)
    session = core.new_session()
    _run(core.save(session, False, None), nodes)
    down = core._derive(storage_key(PREFIX, session.id)).home[0]
    nodes.down.add(down.address)
    _run(core.exists(session.id), nodes)
    fake.monotonic.now += 1.5
    early = (down.breaker.state, down.breaker.probe_in(), down.breaker.probe())
    fake.monotonic.now += 0.5
    assert (BreakerState.OPEN, 0.5, False, True, 500.0) == (
        *early,
        down.breaker.probe(),
        core.faults.at,
    )


def test_versions_follow_the_ns_clock() -> None:
    """A save's version is the ``ns`` clock's reading; the same reading again gives the
    next number (versions never repeat)."""
    fake = FakeClocks()
    core = _core(fake)
    nodes = Nodes(fake.ticks)
    first, second = core.new_session(), core.new_session()
    _run(core.save(first, False, None), nodes)
    _run(core.save(second, False, None), nodes)
    assert (EPOCH_NS, EPOCH_NS + 1) == (first.version, second.version)


def test_creation_times_follow_the_wall_clock() -> None:
    """A new session is created at the ``wall`` clock's time."""
    fake = FakeClocks()
    assert 1_000_000.0 == _core(fake).new_session().created


def test_the_clock_option_alone_keeps_the_process_clocks() -> None:
    """A plain ``clock`` is the wall clock; the core's other clocks are the process's."""
    wall = FakeClock(5.0)
    core = build_core(ADDRESSES, SECRET, 2, on_open=lambda: None, clock=wall)
    expected = Clocks(wall, PROCESS_CLOCKS.monotonic, PROCESS_CLOCKS.ticks, PROCESS_CLOCKS.ns)
    assert expected == core.clocks


# -- no connection in the core -------------------------------------------------------

_CONNECTIONS = (PipelinedTransport, PymemcacheTransport, AsyncPool, socket.socket)


def _reachable(root: object) -> Iterator[object]:
    """Every object reachable from ``root`` through attributes and containers, but
    callables (a callback is its owner's: the breakers' ``on_open`` wakes the driver)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        value = stack.pop()
        if id(value) in seen or callable(value) or isinstance(value, (str, bytes, int, float)):
            continue
        seen.add(id(value))
        yield value
        if isinstance(value, _CONNECTIONS):
            continue  # what a connection holds is its own
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend(value)
        elif isinstance(value, types.ModuleType):
            continue
        else:
            stack.extend(getattr(value, "__dict__", {}).values())
            for cls in type(value).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if hasattr(value, slot):
                        stack.append(getattr(value, slot))


def _connections(root: object) -> list[str]:
    return sorted({type(v).__name__ for v in _reachable(root) if isinstance(v, _CONNECTIONS)})


def test_the_sync_core_holds_no_connection(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> None:
    """After a save and reads, the sync store's core reaches no transport or socket; the
    store does (its driver's transports: the walk finds them)."""
    with MemcacheSessionStore(cluster.addresses, SECRET, **store_timeouts) as store:
        session = store.new_session()
        session["user"] = "ada"
        store.save(session)
        assert {"user": "ada"} == dict(store.start(session.id))
        assert store.exists(session.id)
        assert ([], ["PymemcacheTransport"]) == (_connections(store._core), _connections(store))


def test_the_async_store_holds_no_blocking_connection(
    cluster: MemcachedCluster, store_timeouts: dict[str, float]
) -> None:
    """The async store's core reaches no connection, and the store itself only its own
    asyncio pools: no blocking transport anywhere."""

    async def run() -> tuple[list[str], list[str]]:
        store = AsyncMemcacheSessionStore(cluster.addresses, SECRET, **store_timeouts)
        session = store.new_session()
        session["user"] = "ada"
        await store.save(session)
        assert {"user": "ada"} == dict(await store.start(session.id))
        try:
            return _connections(store._core), _connections(store)
        finally:
            await store.aclose()

    assert ([], ["AsyncPool"]) == asyncio.run(run())


class _HeldAppend(list[Any]):
    """A list whose ``append`` waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.go = threading.Event()

    def append(self, value: Any) -> None:
        self.inside.set()
        self.go.wait(30.0)  # bounds a broken test: nothing timed
        super().append(value)


def test_a_route_number_is_found_only_with_its_nodes() -> None:
    """A thread that finds a session's route number while another is numbering that
    route finds its nodes too: the nodes are kept before the number is given out."""
    core = build_core(ADDRESSES, SECRET, 2, on_open=lambda: None)
    held = core._routes = _HeldAppend()
    ranked = [(key, tuple(rank(core._nodes, core._seeds, key)[:2])) for key in map(str, range(99))]
    (first, home), (second, _) = [pair for pair in ranked if pair[1] == ranked[0][1]][:2]
    found: list[object] = []

    def find() -> None:
        known = core._derive(second)
        try:
            found.append(core.route(known.route))
        except IndexError as exc:  # the number before its nodes
            found.append(exc)

    numbering = threading.Thread(target=core._derive, args=(first,))
    numbering.start()
    held.inside.wait(30.0)
    finder = threading.Thread(target=find)
    finder.start()
    finder.join(0.2)  # it waits for the numbering (or, broken, finds no nodes now)
    held.go.set()
    numbering.join()
    finder.join()
    assert [home] == found


def test_a_route_is_its_home_nodes_transports_in_order(cluster: MemcachedCluster) -> None:
    """The sync driver's transports for a session's route are its home nodes', in order."""
    with MemcacheSessionStore(cluster.addresses, SECRET) as store:
        sessions = [store.new_session() for _ in range(40)]
        knowns = [store._core.home_known(s.id) for s in sessions]
        expected = [[store._transports.of(n) for n in k.home] for k in knowns if k]
        assert (40, expected) == (
            len(expected),
            [store._transports.route(k.route) for k in knowns if k],
        )


def test_racing_threads_find_each_route_of_the_sync_driver_whole() -> None:
    """Threads asking the sync driver for routes at once, each slow to make, each get the
    transports of that route's nodes, in order, and every route is kept once."""
    addresses = [f"10.0.1.{i}:11211" for i in range(1, 7)]  # 30 ordered pairs
    store = MemcacheSessionStore(addresses, SECRET)
    core, transports = store._core, store._transports
    numbers = sorted({core._derive(f"k{i}").route for i in range(3000)})
    wrong: list[int] = []

    def slowly(number: int) -> tuple[Node, ...]:  # widens the window of a race
        time.sleep(0.001)
        return core.route(number)

    transports._route = slowly

    def ask(thread: int) -> None:
        for number in numbers[thread:] + numbers[:thread]:
            if transports.route(number) != [transports.of(n) for n in core.route(number)]:
                wrong.append(number)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert ([], 30, 30) == (wrong, len(numbers), len(transports.routes))
