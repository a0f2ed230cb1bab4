"""The store's sans-IO core driven directly, as h11's tests drive its state machine:
each operation's commands answered by hand, no sockets, no event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache._machine_read import StoreCore
from errpolicy_memcache._node import Reply
from errpolicy_memcache._session import Session, _Lock
from errpolicy_memcache._steps import HOME_STORE, ROUND, WAIT, Steps
from errpolicy_memcache._store import build_core
from errpolicy_memcache.aio import AsyncMemcacheSessionStore

from .helpers import SECRET
from .simnodes import ADDRESSES

NOW = 1_000_000.0

Answer = Callable[[Any], Any]


def _core(**options: Any) -> StoreCore:
    return build_core(ADDRESSES, SECRET, 2, on_open=lambda: None, clock=lambda: NOW, **options)


def _run(steps: Steps[Any], answer: Answer) -> tuple[list[str], Any]:
    """Run ``steps`` to their end, answering each command with ``answer``: the kinds of
    command seen, and the result."""
    seen: list[str] = []
    try:
        command = next(steps)
        while True:
            seen.append(command[0])
            command = steps.send(answer(command))
    except StopIteration as done:
        return seen, done.value


def _replies(command: Any, value: Callable[[Any], Any]) -> list[Reply]:
    """Each node's replies to a round: ``value`` of each of its commands."""
    return [
        Reply(node, commands, [value(c) for c in commands], None, 0.0)
        for node, commands in command[1]
    ]


def _saved(core: StoreCore) -> tuple[Session, bytes]:
    """A session saved through the usual one round, and the bytes it wrote."""
    session = core.new_session()
    session["user"] = "ada"
    written: list[bytes] = []

    def stored(command: Any) -> bool:
        written.append(command[2].value)
        return True

    assert ([HOME_STORE], None) == _run(core.save(session, False, None), stored)
    return session, written[0]


def test_a_save_and_a_start_of_a_healthy_session_are_one_round_each() -> None:
    """The usual save is one HOME_STORE; the usual read asks the home nodes, and their
    agreed copy settles it without any step generator."""
    core = _core()
    session, blob = _saved(core)
    known = core.home_known(session.id)
    assert known is not None
    loaded = core.home_session(session.id, known, 0.0, blob)
    assert (2, {"user": "ada"}) == (len(known.home), dict(loaded or {}))


def test_home_nodes_that_disagree_send_the_read_to_the_other_node() -> None:
    """A miss at home: the start steps go on from the home replies and ask the third node."""
    core = _core()
    session, blob = _saved(core)
    known = core.home_known(session.id)
    assert known is not None
    home = [
        Reply(node, (known.command,), value, None, 0.0)
        for node, value in zip(known.home, [[(blob, 1)], [None]], strict=True)
    ]
    asked: list[list[str]] = []

    def answer(command: Any) -> Any:
        asked.append([node.address for node, _ in command[1]])
        return _replies(command, lambda c: None if c.name == "gets" else "STORED")

    seen, (loaded, _) = _run(core.start(session.id, began=0.0, home=home), answer)
    homes = {node.address for node in known.home}
    assert (ROUND, {"user": "ada"}) == (seen[0], dict(loaded))
    assert [a for a in ADDRESSES if a not in homes] == asked[0]


def test_a_lock_taken_is_handed_to_the_driver_before_the_read() -> None:
    """A locking start puts its lock in ``held`` as soon as it is taken: a driver whose
    task is cancelled during the read still knows which lock to release."""
    core = _core(locking=True)
    session, _ = _saved(core)
    held: list[_Lock] = []
    steps = core.start(session.id, held)
    command = next(steps)
    (node, commands), *_ = command[1]
    assert (ROUND, "add") == (command[0], commands[0].name)
    read = steps.send([Reply(node, commands, ["STORED"], None, 0.0)])
    assert (ROUND, "gets", 1) == (read[0], read[1][0][1][0].name, len(held))
    steps.close()  # the driver gives up here, as a cancelled task does
    seen, _ = _run(core.unlock_key(held[0]), lambda c: _replies(c, lambda _: "DELETED"))
    assert [ROUND] == seen  # the driver releases it: one delete


def test_a_busy_lock_is_polled_with_a_wait_command() -> None:
    """A lock another request holds makes the core yield WAIT (the driver sleeps), never sleep."""
    core = _core(locking=True, lock_timeout=0.05, lock_poll=0.01)
    session, _ = _saved(core)

    def answer(command: Any) -> Any:
        if command[0] is WAIT:
            return None
        return _replies(command, lambda c: "NOT_STORED" if c.name == "add" else None)

    seen, _ = _run(core.start(session.id), answer)
    assert (ROUND, True) == (seen[0], WAIT in seen)


def test_the_async_store_holds_a_core_and_no_sync_store() -> None:
    """The asyncio driver holds the same core class as the sync one, and no sync store."""
    store = AsyncMemcacheSessionStore(ADDRESSES, SECRET, replicas=2)
    held = [value for value in vars(store).values() if isinstance(value, MemcacheSessionStore)]
    assert ([], StoreCore) == (held, type(store._core))
