"""The store's decisions, apart from I/O: which nodes to ask, what their replies mean,
what to repair, where writes and tombstones go, and what a process remembers.

Sans-IO in the manner of h11: every function here takes values (the nodes' replies,
their breakers' states, the current time) and returns values (a plan of commands per
node, a judgement). Nothing here opens a socket, sleeps or reads a clock. The store's
core object (``_machine*.py``: state and step generators) calls them; its two thin
drivers (``_store.py``, ``_aio_store.py``) carry the plans out and feed the replies
back. ``tests/memcache/test_simulation.py`` drives them against simulated nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._envelope import EnvelopeError, Record
from ._node import Node, Reply
from ._outcome import NodeStatus, Outcome, OutcomeKind, node_results, worst
from ._wire import Command, add, cas, touch

__all__ = [
    "Acked",
    "Copy",
    "Judgement",
    "Known",
    "Op",
    "Read",
    "Write",
    "expired",
    "gather",
    "judge",
    "judge_agreed",
    "note_read",
    "note_writes",
    "repair_plan",
    "targets",
    "write_kind",
]

_STORED = "STORED"
MAX_TTL = 30 * 24 * 3600  # memcached reads larger expiry values as UNIX timestamps

Plan = list[tuple[Node, tuple[Command, ...]]]
# (node address, command, status, seconds, detail): made into NodeResult only when reported
_Result = tuple[str, str, NodeStatus, float, str]


class Op:
    """What one logical operation has gathered so far: each node's result and the flags."""

    __slots__ = ("flags", "key", "name", "results", "start")

    def __init__(self, name: str, key: str, start: float) -> None:
        self.name = name
        self.key = key
        self.start = start
        self.results: list[_Result] = []
        self.flags: set[OutcomeKind] = set()

    def record(
        self, node: Node, command: str, status: NodeStatus, at: float, detail: str = ""
    ) -> None:
        self.results.append((node.address, command, status, at, detail))
        if status.failed:
            self.flags.add(OutcomeKind.FAILOVER)

    def kind(self, base: OutcomeKind) -> OutcomeKind:
        return worst(frozenset(self.flags), base) if self.flags else base

    def outcome(
        self, kind: OutcomeKind, served_by: Node | None, version: int | None, elapsed: float
    ) -> Outcome:
        return Outcome(
            operation=self.name,
            kind=kind,
            flags=frozenset(self.flags),
            served_by=served_by.address if served_by else None,
            nodes=node_results(self.results),
            key=self.key[-12:],
            version=version,
            elapsed=elapsed,
        )


class Acked(NamedTuple):
    """The newest copy of a session this process saw acknowledged (written, or read):
    its version, whether it is a tombstone, the nodes that held it, and when it was
    seen (on the breakers' clock; 0: unknown)."""

    version: int
    tombstone: bool
    holders: frozenset[str]
    at: float = 0.0


class Known:
    """What a store keeps about a session id it read or wrote: the memcached key, the
    home nodes, their route (a driver's key) and the ``gets`` command (all derived from
    the id, never stale), the last copy that passed verification (bytes and record; small
    copies only), the newest copy acknowledged (:class:`Acked`), the nodes below
    home where the last read found a copy (``strays``: the next save writes over them),
    and ``settled``: how many faults the process had marked when a read after the last
    of them found every node answering and the home nodes holding the newest copy."""

    __slots__ = (
        "acked",
        "command",
        "counted",
        "home",
        "homes",
        "key",
        "ranked",
        "route",
        "settled",
        "strays",
        "verified",
    )

    def __init__(self, key: str, home: list[Node], route: int, command: Command) -> None:
        self.key = key
        self.home = home
        self.homes = frozenset(node.address for node in home)  # the home nodes' addresses
        self.route = route
        self.command = command
        # One attribute each: threads read and replace a value at once.
        self.verified: tuple[bytes, Record] | None = None
        self.acked: Acked | None = None
        self.strays: frozenset[str] = frozenset()
        self.settled: int | None = None
        # Every node in ranking order, once a wide read needed it (derived from the key).
        self.ranked: list[Node] | None = None
        # The last wide read's counter keys, by the nodes it asked, skipped and found
        # holding the copy (see ``_machine_wide.WideReading._wide_report``).
        self.counted: Any = None  # a _machine_wide.Pattern

    def ack(self, acked: Acked) -> None:
        """Remember ``acked`` unless a newer copy is known (racing threads keep the newest)."""
        current = self.acked
        if current is None or (acked.tombstone, acked.version) >= (
            current.tombstone,
            current.version,
        ):
            self.acked = acked


class Copy:
    __slots__ = ("blob", "cas", "node", "record")

    def __init__(self, node: Node, record: Record, blob: bytes, cas: int) -> None:
        self.node = node
        self.record = record
        self.blob = blob
        self.cas = cas

    @property
    def order(self) -> tuple[bool, int, str]:
        return self.record.order


class Read:
    """The replicas' answers to one read, before any repair."""

    __slots__ = (
        "answered",
        "answered_by",
        "copies",
        "failed",
        "invalid",
        "misses",
        "mixed",
        "refused",
        "winner",
    )

    def __init__(self) -> None:
        self.copies: list[Copy] = []
        self.misses: list[Node] = []
        self.invalid: list[tuple[Node, int]] = []
        self.failed: list[Node] = []  # failed or skipped: may hold any copy
        # Refused the connection: the process is gone, and memcached keeps nothing on
        # disk, so it will come back empty (a subset of ``failed``).
        self.refused: list[Node] = []
        self.answered = 0
        self.answered_by: set[str] = set()  # the addresses of the nodes that answered
        self.winner: Copy | None = None
        self.mixed = False  # some copy is not the winner's: the copies disagree

    def add_copy(self, copy: Copy) -> None:
        """Keep ``copy``; it wins if its order is higher than every copy before it (the
        first of equal copies wins). Identical blobs share one Record: no comparison."""
        self.copies.append(copy)
        winner = self.winner
        if winner is None:
            self.winner = copy
        elif copy.record is not winner.record:
            self.mixed = True
            if copy.order > winner.order:
                self.winner = copy

    def strays(self, home: Sequence[Node]) -> frozenset[str]:
        """The nodes outside ``home`` that hold a live copy (any version): a failover
        write or a repair left it there, and a later save must write over it, or a
        reader that cannot reach home would find it and take it for the newest."""
        return frozenset(
            c.node.address for c in self.copies if c.node not in home and not c.record.tombstone
        )

    def holders(self) -> frozenset[str]:
        """The nodes holding the winning copy."""
        winner = self.winner
        if winner is None:
            return frozenset()
        return frozenset(c.node.address for c in self.copies if c.order == winner.order)


@dataclass(slots=True)
class Write:
    """One key to be written to ``need`` nodes with one command (the same for each)."""

    key: str
    command: Command
    ranked: list[Node]
    need: int
    consulted: set[Node] = field(default_factory=set)
    acks: list[Node] = field(default_factory=list)
    taken: bool = False  # add found the key present (must_create)


class Judgement(NamedTuple):
    """What a read's replies mean: the live copy to serve (None: a new session or no
    answer), the base outcome, the node that served, whether the copies may be repaired,
    and whether the process should forget what it knew (that copy is gone for good)."""

    found: Copy | None
    base: OutcomeKind
    served: Node | None
    repair: bool
    forget: bool
    bury: bool = False  # a live copy of a session this process destroyed: tombstone it again


def targets(
    op: Op,
    ranked: Sequence[Node],
    need: int,
    seen: set[Node],
    at: float,
    skipped: list[Node] | None = None,
) -> list[Node]:
    """The next ``need`` nodes of ``ranked`` not ``seen`` whose breaker lets a request
    through; each node looked at joins ``seen``, a skipped one is recorded in ``op``
    (and in ``skipped``)."""
    chosen: list[Node] = []
    for node in ranked:
        if len(chosen) >= need:
            break
        if node in seen:
            continue
        seen.add(node)
        if node.breaker.allow():
            chosen.append(node)
        else:
            op.record(node, "-", NodeStatus.SKIPPED, at)
            if skipped is not None:
                skipped.append(node)
    return chosen


def gather(
    read: Read,
    replies: list[Reply],
    decoded: dict[bytes, Record | EnvelopeError],
    verify: Callable[[bytes], Record | EnvelopeError],
) -> list[Reply]:
    """Verify the copies in ``replies`` and keep the valid ones in ``read``."""
    for reply in replies:
        if reply.failure is not None or reply.values[0] is None:
            continue
        blob, token = reply.values[0]
        record = decoded.get(blob)
        if record is None:  # identical copies (the usual case) are verified once
            record = decoded[blob] = verify(blob)
        if isinstance(record, Record):
            read.add_copy(Copy(reply.node, record, blob, token))
        else:
            read.invalid.append((reply.node, token))
    return replies


def note_read(
    op: Op,
    read: Read,
    replies: list[Reply],
    decoded: dict[bytes, Record | EnvelopeError],
    replicas: int,
) -> None:
    """Record each node's answer to the read in ``op``, count the answers, and keep as
    misses to repair only the session's home: the first ``replicas`` nodes that answered
    (in rank order); others are not meant to hold a copy."""
    winner = read.winner
    for reply in replies:
        node, at = reply.node, reply.elapsed
        if reply.failure is not None:
            read.failed.append(node)
            if reply.failure.kind == NodeStatus.REFUSED:
                read.refused.append(node)
            op.record(node, "gets", NodeStatus(reply.failure.kind), at, reply.failure.detail)
            continue
        read.answered += 1
        read.answered_by.add(node.address)
        value = reply.values[0]
        if value is None:
            read.misses.append(node)
            op.results.append((node.address, "gets", NodeStatus.MISS, at, ""))
            continue
        record = decoded[value[0]]
        if isinstance(record, EnvelopeError):
            op.flags.add(OutcomeKind.INVALID)
            op.results.append((node.address, "gets", NodeStatus.INVALID, at, record.reason))
            continue
        assert winner is not None
        if record is winner.record or record.order == winner.record.order:
            op.results.append((node.address, "gets", NodeStatus.HIT, at, ""))
        else:
            detail = f"{'tombstone' if record.tombstone else 'v'}{record.version}"
            op.results.append((node.address, "gets", NodeStatus.STALE, at, detail))
    if read.misses:
        answered = [r.node for r in replies if r.failure is None][:replicas]
        read.misses = [node for node in read.misses if node in answered]


def expired(record: Record, now: float, absolute_ttl: int | None) -> bool:
    """The session is past its absolute lifetime at ``now``."""
    return absolute_ttl is not None and now >= record.created + absolute_ttl


def judge(
    read: Read,
    *,
    home: Sequence[Node],
    acked: Acked | None,
    replicas: int,
    over: bool,
    grace: float,
    memory: float | None = None,
) -> Judgement:
    """What the replies of a read mean (the consistency contract, docs/memcache/index.md).

    ``home``: the session's home nodes; ``acked``: the newest copy this process knows was
    acknowledged; ``over``: the winning copy is past its absolute lifetime; ``grace``:
    how long a node that came back may hold copies older than what it missed;
    ``memory``: how long it stays suspect for a session this process has not seen since
    (default ``grace``).

    - A tombstone this process wrote or saw wins over any live copy (ids are never
      reused): a new session, and the copies get the tombstone again.
    - A live copy older than one this process saw acknowledged is not served while a
      node that held the newer one cannot answer (``unavailable``); if every such node
      answered without it, it is gone (both copies lost), and the newest left is served.
    - A copy no home node holds while a home node cannot answer may be older than what
      that node holds, and so may a copy held only by nodes that just came back from an
      outage while another node is away (``possibly_stale``), unless this process
      can vouch for it (:func:`_vouched`: its own last save, say, while the home node
      it skipped stays down).
    - No copy: ``not_found`` only if a home node answered (a miss), every other node
      answered or refused the connection (it restarts empty; a skipped node counts
      if it refused when last tried), at least ``replicas`` nodes answered, and no
      node failed if this process knows the session exists; else ``partial_miss``
      (or ``unavailable`` when no node answered). A node that hung, timed out or was
      skipped may hold the only copy left (the other one evicted, say, or both home
      copies lost after a failover write left one below home), and a process that
      never saw the session cannot tell that from none.
    """
    winner = read.winner
    failed = {node.address for node in read.failed}
    if acked is not None and acked.tombstone and winner is not None and not winner.record.tombstone:
        return Judgement(None, OutcomeKind.NOT_FOUND, winner.node, False, False, True)
    forget = False
    if winner is not None:
        record = winner.record
        if record.tombstone or over:
            return Judgement(None, OutcomeKind.NOT_FOUND, winner.node, record.tombstone, False)
        known_current = _vouched(read, acked, replicas)
        if acked is not None and acked.version > record.version:
            if acked.holders & failed:
                return Judgement(None, OutcomeKind.UNAVAILABLE, None, False, False)
            forget = True  # every node that held the newer copy lost it
        suspect = grace if memory is None else max(grace, memory)
        if not known_current and read.failed and _possibly_stale(read, home, suspect, acked):
            # Served only if the application's policy does not raise on WARNING (the
            # default does: the request gets a 503, not an old session); not repaired.
            return Judgement(winner, OutcomeKind.POSSIBLY_STALE, winner.node, False, forget)
        return Judgement(winner, OutcomeKind.OK, winner.node, True, forget)
    if read.answered == 0:
        return Judgement(None, OutcomeKind.UNAVAILABLE, None, False, False)
    if acked is not None and not acked.tombstone and failed:
        # This process knows the session exists: any node that cannot answer may hold a
        # copy (a write that timed out may have landed there).
        return Judgement(None, OutcomeKind.PARTIAL_MISS, None, False, False)
    # A node that refused the connection (now, or when this process last tried it)
    # lost its memory; any other node that cannot answer may hold the only copy left,
    # below home if a failover write put it there and both home copies were lost since.
    gone = {node.address for node in read.refused}
    gone.update(node.address for node in read.failed if node.breaker.refused)
    home_answered = any(node.address not in failed for node in home)
    if read.answered < replicas or not home_answered or failed - gone:
        return Judgement(None, OutcomeKind.PARTIAL_MISS, None, False, False)
    forget = acked is not None and not acked.tombstone  # its holders lost it
    return Judgement(None, OutcomeKind.NOT_FOUND, None, False, forget)


def _vouched(read: Read, acked: Acked | None, replicas: int) -> bool:
    """True if the winner is the copy this process saw acknowledged and no newer save
    can hide on the nodes that cannot answer (:func:`_vouches`)."""
    winner = read.winner
    if winner is None:
        return False
    missing = read.answered_by - {copy.node.address for copy in read.copies}
    refused = {node.address for node in read.refused}
    return _vouches(
        acked, winner.record.version, read.holders(), read.failed, refused, len(missing), replicas
    )


def _vouches(
    acked: Acked | None,
    version: int,
    holders: frozenset[str],
    failed: Sequence[Node],
    refused: set[str] | frozenset[str],
    missing: int,
    replicas: int,
) -> bool:
    """True if the copy of ``version`` held by ``holders`` (addresses) is the one this
    process saw acknowledged and no newer save can hide on the ``failed`` nodes (those
    that cannot answer; ``refused``: the addresses among them that refused the
    connection), with ``missing`` nodes answering no copy at all: a placement argument.

    It must be that very version (a newer one this process never saw proves nothing),
    served by a node that acknowledged it to this process. A newer save is stored on
    ``replicas`` nodes; to be hidden from this read, each of them either cannot answer
    and was not failing for this process since before it saw the copy acknowledged (a
    node failing throughout took no save meanwhile, short of a restart between two
    probes), or answers a miss (it lost its memory since, the save with it). At least
    one must still hold it: a node that cannot answer and did not refuse the
    connection. If there are not that many such nodes, nothing newer can hide.
    (A save acknowledged by fewer nodes, ``degraded``, is not covered: the contract's
    limits.)"""
    if acked is None or acked.tombstone:
        return False
    if acked.version != version or acked.holders.isdisjoint(holders):
        return False
    unsure = 0  # failed nodes that may have taken a save since
    kept = False  # one of them may still hold it
    at = acked.at
    for node in failed:  # a loop, not comprehensions: every outage read runs this
        breaker = node.breaker
        if not breaker.failed_throughout(at):
            unsure += 1
            if node.address not in refused and not breaker.refused:
                kept = True
    if not kept:
        return True
    return unsure + missing < replicas


def _possibly_stale(
    read: Read, home: Sequence[Node], grace: float, acked: Acked | None = None
) -> bool:
    """A node that cannot answer may hold a newer copy than the winner
    (:func:`_stale_holders`, for the nodes holding the winner)."""
    winner = read.winner
    assert winner is not None
    holders = [c.node for c in read.copies if c.order == winner.order]
    return _stale_holders(holders, read.failed, home, grace, acked)


def _stale_holders(
    holders: Sequence[Node],
    failed: Sequence[Node],
    home: Sequence[Node],
    grace: float,
    acked: Acked | None,
) -> bool:
    """A node of ``failed`` may hold a newer copy than the one ``holders`` hold: no home
    node holds it while a home node failed (a failover copy left below, while the newer
    copy went home), or every node holding it came back from an outage since this
    process last saw the session acknowledged (``acked``), or within ``grace`` if it
    never saw it: it may have missed a newer save, which went to nodes that fail now."""
    if any(node in failed for node in home) and not any(node in home for node in holders):
        return True
    if acked is None:  # not seen: suspect for as long as a missed save can matter
        return all(node.breaker.rejoined_within(grace) for node in holders)
    return all(node.breaker.rejoined_after(acked.at) for node in holders)


_NO_ADDRESSES: frozenset[str] = frozenset()  # none refused: no empty set made per read


def judge_agreed(
    version: int,
    holders: Sequence[Node],
    addresses: frozenset[str],
    missed: int,
    skipped: Sequence[Node],
    home: Sequence[Node],
    acked: Acked | None,
    replicas: int,
    grace: float,
    memory: float | None = None,
) -> bool:
    """:func:`judge` for the usual wide read (after a fault, and during an outage), in
    short: every node asked answered, each with the same valid, live, unexpired copy
    of ``version`` (``holders``, their ``addresses``) or a miss (``missed`` nodes),
    and the ``skipped`` nodes' breakers were open. True when :func:`judge` serves that
    copy as ``ok`` from ``holders[0]``, with nothing to forget or bury; False when it
    decides anything else (the caller then runs the general read, which judges it).
    ``tests/memcache/test_judge_agreed.py`` holds the two to the same decision."""
    if acked is not None and (acked.tombstone or acked.version > version):
        return False  # a tombstone to bury again, or a newer copy unavailable or lost
    if not skipped:
        return True
    if _vouches(acked, version, addresses, skipped, _NO_ADDRESSES, missed, replicas):
        return True
    suspect = grace if memory is None else max(grace, memory)
    return not _stale_holders(holders, skipped, home, suspect, acked)


def repair_plan(key: str, read: Read, ttl: int, *, renew: bool) -> tuple[Plan, bool]:
    """The commands that rewrite stale, invalid and missing copies with the winner
    (``cas`` over a copy, so a newer concurrent write is never overwritten; ``add``
    where home missed), and ``touch`` the winner's copies when ``renew``; and whether
    anything is repaired (not only renewed)."""
    winner = read.winner
    assert winner is not None
    record = winner.record
    plan: Plan = []
    for copy in read.copies:
        if copy.record.order != record.order:
            plan.append((copy.node, (cas(key, winner.blob, ttl, copy.cas),)))
    for node, token in read.invalid:
        plan.append((node, (cas(key, winner.blob, ttl, token),)))
    if not record.tombstone:
        for node in read.misses:
            plan.append((node, (add(key, winner.blob, ttl),)))
    repaired = bool(plan)
    if renew:
        for copy in read.copies:
            if copy.record.order == record.order:
                plan.append((copy.node, (touch(key, ttl),)))
    return plan, repaired


def note_repairs(op: Op, replies: list[Reply]) -> None:
    """Record the repairs' replies in ``op``."""
    for reply in replies:
        command = reply.commands[0].name
        if reply.failure is not None:
            op.record(reply.node, command, NodeStatus(reply.failure.kind), reply.elapsed)
            continue
        status = {
            "STORED": NodeStatus.STORED,
            "TOUCHED": NodeStatus.TOUCHED,
        }.get(reply.values[0], NodeStatus.NOT_STORED)
        op.results.append((reply.node.address, command, status, reply.elapsed, ""))


def write_round(op: Op, writes: Sequence[Write], at: float) -> dict[Node, list[Write]]:
    """The next round of a write: for each write still short of acks, the next nodes of
    its ranking (falling back down the ranking past failed and skipped nodes)."""
    plan: dict[Node, list[Write]] = {}
    for write in writes:
        if write.need <= 0 or write.taken:
            continue
        for node in targets(op, write.ranked, write.need, write.consulted, at):
            plan.setdefault(node, []).append(write)
    return plan


def note_writes(op: Op, plan: dict[Node, list[Write]], replies: list[Reply]) -> None:
    """Record a write round's replies in ``op`` and count each write's acks."""
    for reply in replies:
        items = plan[reply.node]
        if reply.failure is not None:
            for write in items:
                op.record(
                    reply.node,
                    write.command.name,
                    NodeStatus(reply.failure.kind),
                    reply.elapsed,
                    reply.failure.detail,
                )
            continue
        for write, answer in zip(items, reply.values, strict=True):
            stored = answer == _STORED
            status = NodeStatus.STORED if stored else NodeStatus.NOT_STORED
            op.results.append((reply.node.address, write.command.name, status, reply.elapsed, ""))
            if stored:
                write.acks.append(reply.node)
                write.need -= 1
            else:
                write.taken = True


def write_kind(writes: Sequence[Write], replicas: int) -> OutcomeKind:
    """``ok`` if every write reached ``replicas`` nodes, ``degraded`` if one reached
    fewer, ``unavailable`` if one reached none (its outcome is then unknown: a node may
    have stored it without answering in time)."""
    fewest = replicas
    for write in writes:
        fewest = min(fewest, len(write.acks))
    if fewest == 0:
        return OutcomeKind.UNAVAILABLE
    if fewest < replicas:
        return OutcomeKind.DEGRADED
    return OutcomeKind.OK


def effective_ttl(record: Record, idle_ttl: int, absolute_ttl: int | None, now: float) -> int:
    """The expiry to write ``record`` with: its idle TTL, capped by what is left of its
    absolute lifetime (live copies only) and by memcached's 30 days."""
    ttl = record.ttl or idle_ttl
    if absolute_ttl is not None and not record.tombstone:
        left = int(record.created + absolute_ttl - now)
        ttl = min(ttl, max(left, 1))
    return max(1, min(ttl, MAX_TTL))
