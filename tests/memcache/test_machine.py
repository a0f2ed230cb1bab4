"""The store's sans-IO core driven directly, as h11's tests drive its state machine:
each operation's commands answered by hand, no sockets, no event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from errpolicy_memcache import MemcacheSessionStore
from errpolicy_memcache._machine_read import StoreCore
from errpolicy_memcache._node import Reply
from errpolicy_memcache._session import Session, _Lock
from errpolicy_memcache._steps import HomeGets, HomeStore, Round, Steps, Wait
from errpolicy_memcache._store import build_core
from errpolicy_memcache.aio import AsyncMemcacheSessionStore

from .helpers import SECRET
from .simnodes import ADDRESSES

NOW = 1_000_000.0

Answer = Callable[[Any], Any]


def _core(**options: Any) -> StoreCore:
    return build_core(ADDRESSES, SECRET, 2, on_open=lambda: None, clock=lambda: NOW, **options)


def _run(steps: Steps[Any], answer: Answer) -> tuple[list[type], Any]:
    """Run ``steps`` to their end, answering each command with ``answer``: the kinds of
    command seen, and the result."""
    seen: list[type] = []
    try:
        command = next(steps)
        while True:
            seen.append(type(command))
            command = steps.send(answer(command))
    except StopIteration as done:
        return seen, done.value


def _replies(command: Round, value: Callable[[Any], Any]) -> list[Reply]:
    return [
        Reply(node, commands, [value(c) for c in commands], None, 0.0)
        for node, commands in command.plan
    ]


def _saved(core: StoreCore) -> tuple[Session, bytes]:
    """A session saved through the usual one round, and the bytes it wrote."""
    session = core.new_session()
    session["user"] = "ada"
    written: list[bytes] = []

    def stored(command: Any) -> bool:
        written.append(command.command.value)
        return True

    assert ([HomeStore], None) == _run(core.save(session, False, None), stored)
    return session, written[0]


def test_a_save_and_a_start_of_a_healthy_session_are_one_command_each() -> None:
    """The usual save is one HomeStore; the usual read one HomeGets, whose agreed bytes end it."""
    core = _core()
    session, blob = _saved(core)
    seen, (loaded, outcome) = _run(core.start(session.id), lambda command: blob)
    assert ([HomeGets], None, {"user": "ada"}) == (seen, outcome, dict(loaded))


def test_home_nodes_that_disagree_send_the_read_to_the_other_node() -> None:
    """A miss at home answers the HomeGets with replies; the core then asks the third node."""
    core = _core()
    session, blob = _saved(core)
    asked: list[list[str]] = []

    def answer(command: Any) -> Any:
        if type(command) is HomeGets:
            values = [[(blob, 1)], [None]]
            return [
                Reply(node, (command.command,), value, None, 0.0)
                for node, value in zip(command.nodes, values, strict=True)
            ]
        asked.append([node.address for node, _ in command.plan])
        return _replies(command, lambda c: None if c.name == "gets" else "STORED")

    seen, (loaded, _) = _run(core.start(session.id), answer)
    home = {node.address for node in core._known[session.id].home}
    assert (HomeGets, Round, {"user": "ada"}) == (seen[0], seen[1], dict(loaded))
    assert [a for a in ADDRESSES if a not in home] == asked[0]


def test_a_lock_taken_is_handed_to_the_driver_before_the_read() -> None:
    """A locking start puts its lock in ``held`` as soon as it is taken: a driver whose
    task is cancelled during the read still knows which lock to release."""
    core = _core(locking=True)
    session, _ = _saved(core)
    held: list[_Lock] = []
    steps = core.start(session.id, held)
    command = next(steps)
    assert (Round, "add") == (type(command), command.plan[0][1][0].name)
    read = steps.send([Reply(command.plan[0][0], command.plan[0][1], ["STORED"], None, 0.0)])
    assert (Round, "gets", 1) == (type(read), read.plan[0][1][0].name, len(held))
    steps.close()  # the driver gives up here, as a cancelled task does
    seen, _ = _run(core.unlock_key(held[0]), lambda c: _replies(c, lambda _: "DELETED"))
    assert [Round] == seen  # the driver releases it: one delete


def test_a_busy_lock_is_polled_with_a_wait_command() -> None:
    """A lock another request holds makes the core yield Wait (the driver sleeps), never sleep."""
    core = _core(locking=True, lock_timeout=0.05, lock_poll=0.01)
    session, _ = _saved(core)

    def answer(command: Any) -> Any:
        if type(command) is Wait:
            return None
        return _replies(command, lambda c: "NOT_STORED" if c.name == "add" else None)

    seen, _ = _run(core.start(session.id), answer)
    assert (Round, True) == (seen[0], Wait in seen)


def test_the_async_store_holds_a_core_and_no_sync_store() -> None:
    """The asyncio driver holds the same core class as the sync one, and no sync store."""
    store = AsyncMemcacheSessionStore(ADDRESSES, SECRET, replicas=2)
    held = [value for value in vars(store).values() if isinstance(value, MemcacheSessionStore)]
    assert ([], StoreCore) == (held, type(store._core))
