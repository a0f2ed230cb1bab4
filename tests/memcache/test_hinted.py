"""The handover of hinted writes, decided apart from the I/O (``_hinted``): driven with
replies made up here, no sockets."""

from __future__ import annotations

from errpolicy_memcache._breaker import CircuitBreaker
from errpolicy_memcache._envelope import EnvelopeError, Record, decode, encode
from errpolicy_memcache._hinted import ROUNDS, Handing, next_command
from errpolicy_memcache._node import Node, Reply
from errpolicy_memcache._wire import Command, NodeFailure, add, cas, gets, set_

KEY = b"k" * 32
SKEY = "errpolicy:session:abc"


def verify(blob: bytes, key: str) -> Record | EnvelopeError:
    try:
        return decode(blob, key, [KEY])
    except EnvelopeError as exc:
        return exc


def blob(version: int, *, tombstone: bool = False) -> bytes:
    payload = None if tombstone else b'{"v": %d}' % version
    return encode(Record(version, "w", 1.0, 1.0, 60, payload), SKEY, KEY)


def copy(version: int) -> Command:
    """A hinted copy, as a save leaves it: an add of its blob."""
    return add(SKEY, blob(version), 60)


def after_gets(hint: Command, value: tuple[bytes, int] | None) -> Command | None:
    return next_command(hint, gets(SKEY), value, verify)


def test_a_hinted_copy_first_asks_what_the_node_holds() -> None:
    """A copy is not written blind: the first command reads the node's copy."""
    assert gets(SKEY) == next_command(copy(2), None, None, verify)


def test_a_tombstone_goes_as_it_is() -> None:
    """A tombstone beats any copy, so its set is sent at once."""
    tomb = set_(SKEY, blob(3, tombstone=True), 60)
    assert tomb == next_command(tomb, None, None, verify)


def test_a_node_holding_nothing_is_given_the_copy_with_add() -> None:
    """A miss: the copy is added (another writer's copy, if one lands first, is kept)."""
    assert copy(2) == after_gets(copy(2), None)


def test_an_older_copy_is_replaced_with_cas() -> None:
    """Issue 10: the node's older copy is replaced, with the token it was read with."""
    hint = copy(2)
    assert cas(SKEY, blob(2), 60, 7) == after_gets(hint, (blob(1), 7))


def test_an_invalid_copy_counts_as_older() -> None:
    """A copy that does not verify is replaced."""
    assert cas(SKEY, blob(2), 60, 7) == after_gets(copy(2), (b"garbage", 7))


def test_an_equal_or_newer_copy_is_left_in_place() -> None:
    """Nothing is sent when the node holds the same copy or a newer one."""
    assert [None, None] == [after_gets(copy(2), (blob(2), 7)), after_gets(copy(2), (blob(3), 7))]


def test_a_tombstone_on_the_node_is_left_in_place() -> None:
    """A tombstone, whatever its version, is never written over by a copy."""
    assert None is after_gets(copy(5), (blob(1, tombstone=True), 7))


def test_a_write_raced_by_another_one_starts_again() -> None:
    """An add that found a copy, or a cas that found it changed or gone, reads again."""
    hint = copy(2)
    token_cas = cas(SKEY, blob(2), 60, 7)
    expected = [gets(SKEY)] * 3
    assert expected == [
        next_command(hint, hint, "NOT_STORED", verify),
        next_command(hint, token_cas, "EXISTS", verify),
        next_command(hint, token_cas, "NOT_FOUND", verify),
    ]


def test_a_stored_write_ends_the_hint() -> None:
    """Once the node stored the copy, nothing more is sent."""
    assert None is next_command(copy(2), copy(2), "STORED", verify)


def _node(port: int) -> Node:
    return Node("127.0.0.1", port, CircuitBreaker(3, 1.0, 5.0))


def _replies(plan: list[tuple[Node, tuple[Command, ...]]], values: list[object]) -> list[Reply]:
    return [Reply(node, commands, list(values), None, 0.0) for node, commands in plan]


def test_handing_over_replaces_an_older_copy_in_two_rounds() -> None:
    """The state machine reads, replaces, and reports the hint handed over."""
    node = _node(1)
    handing = Handing([(node, [copy(2)])], verify)
    handing.receive(_replies(handing.plan(), [(blob(1), 9)]))
    second = handing.plan()
    handing.receive(_replies(second, ["STORED"]))
    handed = [(("127.0.0.1:1", SKEY), copy(2))]
    assert ([(node, (cas(SKEY, blob(2), 60, 9),))], handed, []) == (
        second,
        handing.done,
        handing.plan(),
    )


def test_a_failed_node_keeps_its_hints() -> None:
    """A node that fails mid-handover: its hint is not reported handed over."""
    node = _node(1)
    handing = Handing([(node, [copy(2)])], verify)
    (step,) = handing.plan()
    handing.receive([Reply(node, step[1], [], NodeFailure("timeout"), 0.0)])
    assert ([], []) == (handing.done, handing.plan())


def test_a_hint_racing_other_writes_waits_for_the_next_handover() -> None:
    """After ROUNDS round trips a hint still raced is left for the next handover."""
    handing = Handing([(_node(1), [copy(2)])], verify)
    rounds = 0
    while plan := handing.plan():
        rounds += 1
        (_, (command,)) = plan[0]
        handing.receive(_replies(plan, [(blob(1), 9)] if command.name == "gets" else ["EXISTS"]))
    assert (ROUNDS, []) == (rounds, handing.done)
