"""The session lock's decisions (``_locks``), driven directly: no sockets, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from errpolicy_memcache import ConfigurationError, OutcomeKind
from errpolicy_memcache._breaker import CircuitBreaker
from errpolicy_memcache._core import Op
from errpolicy_memcache._locks import LockAttempt, Step, unlock_plan
from errpolicy_memcache._node import Node, Reply
from errpolicy_memcache._options import check_options
from errpolicy_memcache._wire import NodeFailure


def node(port: int) -> Node:
    """A node as the core knows it: an address and a breaker, no connection."""
    return Node("127.0.0.1", port, CircuitBreaker(3, 1.0, 5.0))


def attempt(nodes: list[Node], abandoned: bytes | None = None) -> LockAttempt:
    tokens = iter([b"t1", b"t2", b"t3"])
    return LockAttempt(
        Op("session.start", "k", start=0.0),
        "k",
        nodes,
        ttl=30,
        timeout=0.3,
        poll=0.05,
        now=0.0,
        abandoned=lambda n, key: abandoned,
        token=lambda: next(tokens),
    )


def reply(to: Node, value: str | None = None, failure: str | None = None) -> Reply:
    failed = None if failure is None else NodeFailure(failure, "simulated")
    return Reply(to, (), [] if value is None else [value], failed, 0.0)


def test_the_lock_is_added_on_the_first_node_and_held_when_stored() -> None:
    """The first step adds the token on the first node; STORED holds the lock there."""
    first, second = node(1), node(2)
    lock = attempt([first, second])
    step = lock.next_step(0.0)
    assert (Step.SEND, first, "add", b"t1") == (
        step.step,
        step.node,
        step.command.name if step.command else None,
        step.command.value if step.command else None,
    )
    assert (Step.LOCKED, first) == (
        lock.replied(reply(first, "STORED"), 0.0).step,
        first,
    )


def test_a_timed_out_add_is_abandoned_and_the_next_node_gets_a_new_token() -> None:
    """An add that timed out may land later: its token is handed back, a new one goes on."""
    first, second = node(1), node(2)
    lock = attempt([first, second])
    lock.next_step(0.0)
    step = lock.replied(reply(first, failure="timeout"), 0.0)
    assert (Step.SEND, second, b"t2", [(first, b"t1")]) == (
        step.step,
        step.node,
        step.command.value if step.command else None,
        lock.abandon,
    )


def test_a_busy_lock_is_polled_with_backoff_until_the_timeout() -> None:
    """NOT_STORED waits the poll delay, doubled up to 0.1 s; past the timeout it gives up."""
    first = node(1)
    lock = attempt([first])
    lock.next_step(0.0)
    delays = []
    now = 0.0
    while (step := lock.replied(reply(first, "NOT_STORED"), now)).step is Step.WAIT:
        delays.append(step.delay)
        now += step.delay
        lock.next_step(now)
    assert ([0.05, 0.1, 0.1], Step.GIVE_UP, {OutcomeKind.LOCK_TIMEOUT}) == (
        delays,
        step.step,
        lock.op.flags,
    )


def test_our_own_late_lock_is_cleared_not_waited_for() -> None:
    """NOT_STORED where an abandoned add of ours may have landed: clear it, then retry."""
    first = node(1)
    lock = attempt([first], abandoned=b"old")
    lock.next_step(0.0)
    step = lock.replied(reply(first, "NOT_STORED"), 0.0)
    assert (Step.CLEAR, b"old", Step.SEND) == (
        step.step,
        step.token,
        lock.cleared(first, True, 0.0, 0.0).step,
    )


def test_no_node_to_lock_on_gives_up() -> None:
    """Every node's breaker open: nothing to send, the attempt gives up at once."""
    first = node(1)
    for _ in range(3):
        first.breaker.failure()
    assert Step.GIVE_UP == attempt([first]).next_step(0.0).step


def test_a_lock_that_may_have_expired_is_not_released() -> None:
    """Near its TTL a lock may be another request's: no delete is planned."""
    first = node(1)
    assert (1, []) == (
        len(unlock_plan(first, "k:lock", 0.0, 10.0, 30)),
        unlock_plan(first, "k:lock", 0.0, 29.0, 30),
    )


_OPTIONS: dict[str, Any] = {
    "prefix": "p:",
    "idle_ttl": 60,
    "absolute_ttl": None,
    "renew_after": 0.5,
    "max_size": 1024,
    "connect_timeout": 0.1,
    "timeout": 0.1,
    "failure_threshold": 3,
    "retry_after": 0.1,
    "max_retry_after": 0.4,
    "locking": False,
    "lock_timeout": 1.0,
    "lock_ttl": 30,
    "lock_poll": 0.01,
    "pool_size": 1,
    "transports": ("x",),
    "read_all_nodes": False,
    "operation_timeout": None,
}


def test_options_are_checked_without_a_store() -> None:
    """check_options parses the servers and refuses a bad value, with no I/O."""
    good = check_options(["127.0.0.1:1", ("::1", 2)], 2, transport="x", **_OPTIONS)
    expected = ((("127.0.0.1", 1), ("::1", 2)), True)
    assert expected == (good.addresses, abs(good.operation_timeout - 0.8) < 1e-9)
    with pytest.raises(ConfigurationError, match="transport"):
        check_options(["127.0.0.1:1", "127.0.0.1:2"], 2, transport="y", **_OPTIONS)
