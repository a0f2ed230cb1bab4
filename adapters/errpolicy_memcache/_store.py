"""MemcacheSessionStore: replicated, versioned, signed sessions that report each outcome."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import errpolicy
from errpolicy import Policy, match

from ._breaker import BreakerState, CircuitBreaker, FaultClock
from ._envelope import EnvelopeError, Keyring, Record, decode, encode, normalize_keys
from ._errors import (
    ConfigurationError,
    InvalidSessionId,
    SessionExists,
    SessionTooLarge,
    SessionUnavailable,
)
from ._ids import is_valid_session_id, new_session_id, storage_key
from ._node import Node, Reply, execute, settle
from ._outcome import NodeResult, NodeStatus, Outcome, OutcomeKind, severity_of, worst
from ._placement import node_seed, rank
from ._session import Session, _Lock
from ._transport import TRANSPORTS, agreed_gets
from ._wire import MAX_VALUE, Command, add, cas, delete, gets, set_, touch

__all__ = ["DEFAULT_POLICIES", "LOGGER_NAME", "OPERATIONS", "MemcacheSessionStore"]

LOGGER_NAME = "errpolicy_memcache"
_logger = logging.getLogger(LOGGER_NAME)

#: The guard names, one per logical operation.
OPERATIONS = (
    "session.destroy",
    "session.exists",
    "session.regenerate",
    "session.save",
    "session.start",
)


def _default_policy() -> Policy:
    return Policy(
        raise_on="WARNING | ERROR | CRITICAL",
        record="ALL",
        scope=match.logger(LOGGER_NAME),
    )


#: The policy each operation's guard uses when the application configured none under
#: its name: notices recorded, warnings and errors raised, and only this adapter's own
#: records in scope (an unrelated warning during the call does not fail the request).
DEFAULT_POLICIES: Mapping[str, Policy] = MappingProxyType(
    {name: _default_policy() for name in OPERATIONS}
)

# One guard object per operation, made once: guards are stateless, and a guard made
# with a default policy caches its resolved policy until the configuration changes.
_GUARDS = {name: errpolicy.guard(name, default=DEFAULT_POLICIES[name]) for name in OPERATIONS}

# The session ids each store remembers with their verified copy (see _remember): at
# most this many, with copies of at most this many bytes each, so at most 4 MiB.
_VERIFIED_MAX = 1024
_VERIFIED_BLOB_MAX = 4096

_MAX_TTL = 30 * 24 * 3600  # memcached reads larger expiry values as UNIX timestamps
_STORED = "STORED"


def _parse_server(spec: object) -> tuple[str, int]:
    if isinstance(spec, tuple) and len(spec) == 2:
        host, port = spec
    elif isinstance(spec, str):
        host, sep, port = spec.rpartition(":")
        if not sep:
            raise ConfigurationError(f"servers: {spec!r} is not 'host:port'")
    else:
        raise ConfigurationError(f"servers: {spec!r} is not 'host:port' or (host, port)")
    try:
        port_number = int(port)
    except (TypeError, ValueError):
        raise ConfigurationError(f"servers: bad port in {spec!r}") from None
    if not isinstance(host, str) or not host.strip("[]") or not 0 < port_number < 65536:
        raise ConfigurationError(f"servers: bad address {spec!r}")
    return host.strip("[]"), port_number


def _check_id(session: Session) -> None:
    if not is_valid_session_id(session.id):
        raise InvalidSessionId(
            "the session's id does not have the shape of one this store issues "
            "(use store.new_session() or new_session_id())"
        )


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name}: must be a positive number, not {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigurationError(f"{name}: must be an int, not {value!r}")


# (node address, command, status, seconds, detail): made into NodeResult only when reported
_Result = tuple[str, str, NodeStatus, float, str]


class _Op:
    """What one logical operation has gathered so far."""

    __slots__ = ("flags", "key", "name", "results", "start")

    def __init__(self, name: str, key: str, start: float | None = None) -> None:
        self.name = name
        self.key = key
        self.start = time.perf_counter() if start is None else start
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

    def outcome(self, kind: OutcomeKind, served_by: Node | None, version: int | None) -> Outcome:
        return Outcome(
            operation=self.name,
            kind=kind,
            flags=frozenset(self.flags),
            served_by=served_by.address if served_by else None,
            nodes=tuple(NodeResult(*r) for r in self.results),
            key=self.key[-12:],
            version=version,
            elapsed=time.perf_counter() - self.start,
        )


class _Copy:
    __slots__ = ("blob", "cas", "node", "record")

    def __init__(self, node: Node, record: Record, blob: bytes, cas: int) -> None:
        self.node = node
        self.record = record
        self.blob = blob
        self.cas = cas

    @property
    def order(self) -> tuple[bool, int, str]:
        return self.record.order


class _Known:
    """What a store keeps about a session id it read or wrote: the memcached key, the
    home nodes, their transports and the ``gets`` command (all derived from the id,
    never stale), and the last copy that passed verification (bytes and record)."""

    __slots__ = ("command", "home", "key", "transports", "verified")

    def __init__(self, key: str, home: list[Node], transports: list[Any], command: Command) -> None:
        self.key = key
        self.home = home
        self.transports = transports
        self.command = command
        # One attribute for both: threads read and replace the pair at once.
        self.verified: tuple[bytes, Record] | None = None


class _Read:
    """The replicas' answers to one read, before any repair."""

    __slots__ = ("answered", "asked", "copies", "invalid", "misses", "mixed", "winner")

    def __init__(self) -> None:
        self.copies: list[_Copy] = []
        self.misses: list[Node] = []
        self.invalid: list[tuple[Node, int]] = []
        self.answered = 0
        self.asked = 0  # how many nodes could hold a copy (all of them)
        self.winner: _Copy | None = None
        self.mixed = False  # some copy is not the winner's: the copies disagree

    def add_copy(self, copy: _Copy) -> None:
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


@dataclass(slots=True)
class _Write:
    """One key to be written to ``replicas`` nodes with one command (the same for each)."""

    key: str
    command: Command
    ranked: list[Node]
    need: int
    consulted: set[Node] = field(default_factory=set)
    acks: list[Node] = field(default_factory=list)
    taken: bool = False  # add found the key present (must_create)


class MemcacheSessionStore:
    """Sessions replicated on ``replicas`` memcached nodes, each operation guarded.

    ``servers`` are ``"host:port"`` strings (or ``(host, port)`` tuples). ``secret_key`` is
    a str or bytes of at least 16 bytes, or a list of them: the first signs, all verify.
    See docs/memcache/options.md for every option; all times are in seconds.
    """

    def __init__(
        self,
        servers: Sequence[str | tuple[str, int]],
        secret_key: str | bytes | Sequence[str | bytes],
        replicas: int = 2,
        *,
        prefix: str = "errpolicy:session:",
        idle_ttl: int = 1800,
        absolute_ttl: int | None = 86400,
        renew_after: float = 0.5,
        max_size: int = 256 * 1024,
        connect_timeout: float = 0.25,
        timeout: float = 0.5,
        failure_threshold: int = 3,
        retry_after: float = 2.0,
        max_retry_after: float = 5.0,
        locking: bool = False,
        lock_timeout: float = 1.0,
        lock_ttl: int = 30,
        lock_poll: float = 0.01,
        pool_size: int = 16,
        transport: str = "pymemcache",
        read_all_nodes: bool = False,
        operation_timeout: float | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(servers, str) or not servers:
            raise ConfigurationError("servers: give a non-empty list of 'host:port' strings")
        addresses = [_parse_server(s) for s in servers]
        if len({f"{h}:{p}" for h, p in addresses}) != len(addresses):
            raise ConfigurationError("servers: an address is listed twice")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ConfigurationError(f"replicas: must be an int >= 1, not {replicas!r}")
        if replicas > len(addresses):
            raise ConfigurationError(
                f"replicas: {replicas} copies need at least {replicas} servers, "
                f"got {len(addresses)}"
            )
        if not isinstance(prefix, str) or not prefix.isascii() or not prefix.isprintable():
            raise ConfigurationError(f"prefix: printable ASCII without spaces, not {prefix!r}")
        if " " in prefix or len(prefix) > 150:
            raise ConfigurationError(f"prefix: printable ASCII without spaces, not {prefix!r}")
        for name, value in (("idle_ttl", idle_ttl), ("lock_ttl", lock_ttl)):
            _positive(name, value, integer=True)
            if value > _MAX_TTL:
                raise ConfigurationError(f"{name}: at most 30 days ({_MAX_TTL}), not {value}")
        if absolute_ttl is not None:
            _positive("absolute_ttl", absolute_ttl, integer=True)
        if not isinstance(renew_after, int | float) or not 0 <= renew_after <= 1:
            raise ConfigurationError(f"renew_after: a fraction in [0, 1], not {renew_after!r}")
        _positive("max_size", max_size, integer=True)
        for name, number in (
            ("connect_timeout", connect_timeout),
            ("timeout", timeout),
            ("retry_after", retry_after),
            ("max_retry_after", max_retry_after),
            ("lock_timeout", lock_timeout),
            ("lock_poll", lock_poll),
        ):
            _positive(name, number)
        if operation_timeout is None:  # a few rounds, and the lock's wait (options.md)
            operation_timeout = 4 * (connect_timeout + timeout) + (lock_timeout if locking else 0)
        _positive("operation_timeout", operation_timeout)
        if locking and operation_timeout <= lock_timeout:
            raise ConfigurationError(
                f"operation_timeout: must exceed lock_timeout ({lock_timeout}) with locking, "
                f"not {operation_timeout!r}"
            )
        _positive("failure_threshold", failure_threshold, integer=True)
        _positive("pool_size", pool_size, integer=True)
        if not isinstance(read_all_nodes, bool):
            raise ConfigurationError(f"read_all_nodes: True or False, not {read_all_nodes!r}")
        if transport not in TRANSPORTS:
            raise ConfigurationError(
                f"transport: one of {', '.join(map(repr, TRANSPORTS))}, not {transport!r}"
            )

        self._keys = Keyring(normalize_keys(secret_key))
        self._replicas = replicas
        self._prefix = prefix
        self._idle_ttl = idle_ttl
        self._absolute_ttl = absolute_ttl
        self._renew_after = renew_after
        self._max_size = max_size
        self._locking = locking
        self._max_retry_after = max_retry_after
        self._lock_timeout = lock_timeout
        self._lock_ttl = lock_ttl
        self._lock_poll = lock_poll
        self._on_outcome = on_outcome
        self._clock = clock
        self._read_all_nodes = read_all_nodes
        self._operation_timeout = float(operation_timeout)
        self._known: dict[str, _Known] = {}
        self._faults = FaultClock()
        # How long after a fault reads keep asking every node: at least the longest
        # lifetime of a copy this process knows of (a copy that a failover wrote below
        # its home outlives any older copy at home by at most that), and more than a
        # breaker's longest backoff.
        self._settle_after = float(max(idle_ttl, 2 * max_retry_after))
        self._writer = secrets.token_hex(4)
        self._version_lock = threading.Lock()
        self._last_version = 0
        self._nodes = [
            Node(
                host,
                port,
                CircuitBreaker(
                    failure_threshold, retry_after, max_retry_after, faults=self._faults
                ),
                connect_timeout,
                timeout,
                pool_size,
                transport,
                max(max_size, MAX_VALUE),  # another process may store up to its max_size
            )
            for host, port in addresses
        ]
        self._seeds = [node_seed(node.address) for node in self._nodes]

    def __repr__(self) -> str:
        return f"<MemcacheSessionStore replicas={self._replicas} nodes={self._nodes!r}>"

    # -- public API ------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in the order given; ``node.breaker.state`` tells their health."""
        return tuple(self._nodes)

    def new_session(self) -> Session:
        """A fresh, empty session with a new id; no I/O."""
        return Session(new_session_id(), new=True, created=self._clock())

    def start(self, sid: str | None) -> Session:
        """Load the session ``sid``, or give a new one if it is None, malformed or unknown.

        Guarded by ``"session.start"``. With the default policy, a failed node costs a
        recorded notice; no node answering raises :class:`errpolicy.PolicyViolation`.
        An unknown or destroyed id never comes back: the new session has a fresh id.
        """
        session: Session | None = None
        try:
            with _GUARDS["session.start"]:
                session, outcome = self._start(sid)
        except BaseException:
            # The caller never gets this session: do not leave its lock held.
            if session is not None and session._lock is not None:
                self._unlock(session, None)
            raise
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        return session

    def exists(self, sid: str) -> bool:
        """True if ``sid`` names a stored, live session (guarded by ``"session.exists"``)."""
        if not is_valid_session_id(sid):
            return False
        with _GUARDS["session.exists"]:
            key = storage_key(self._prefix, sid)
            op = _Op("session.exists", key)
            read = self._read(op, key)
            found, base, served = self._judge(read)
            self._repair(op, key, read, renew=False)
            outcome = self._report(op, base, served, read)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        return found is not None

    def save(self, session: Session, *, must_create: bool = False, ttl: int | None = None) -> None:
        """Write the session to its replicas (guarded by ``"session.save"``).

        ``must_create`` stores only if the id is unused anywhere (memcached ``add``),
        else raises :class:`SessionExists`. ``ttl`` sets this session's idle lifetime
        (kept for later saves and renewals). Oversize or non-JSON data raises
        :class:`SessionTooLarge` / :class:`SessionDataError` before any I/O, and the
        session keeps its data. A save with the lock held releases it.
        """
        _check_id(session)
        if ttl is not None:
            _positive("ttl", ttl, integer=True)
            if ttl > _MAX_TTL:
                raise ConfigurationError(f"ttl: at most 30 days ({_MAX_TTL}), not {ttl}")
        with _GUARDS["session.save"]:
            outcome = self._save(session, must_create=must_create, ttl=ttl)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)

    def regenerate(self, session: Session) -> None:
        """Give the session a new id (at login); the old id is tombstoned and stops working.

        Guarded by ``"session.regenerate"``. The data moves to the new id at once.
        """
        _check_id(session)
        with _GUARDS["session.regenerate"]:
            outcome = self._regenerate(session)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)

    def destroy(self, session: Session) -> None:
        """Log out: tombstone the stored session, then reset ``session`` to a new empty one.

        Guarded by ``"session.destroy"``. The tombstone outlives the stored copies, so the
        session does not come back when a node that was down returns with it.
        """
        _check_id(session)
        outcome: Outcome | None = None
        with _GUARDS["session.destroy"]:
            if not session.new:
                outcome = self._tombstone(session.id, session.version, session.ttl, session)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        session._reset(new_session_id(), self._clock())

    def delete(self, sid: str) -> None:
        """Tombstone the session ``sid`` (guarded by ``"session.destroy"``).

        A malformed id cannot name a stored session: nothing is sent.
        """
        if not is_valid_session_id(sid):
            return
        with _GUARDS["session.destroy"]:
            outcome = self._tombstone(sid, 0, None, None)
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)

    def release(self, session: Session) -> None:
        """Release the session's lock without saving (a request that changed nothing)."""
        if session._lock is not None:
            self._unlock(session, None)

    def close(self) -> None:
        """Close every pooled connection (the store can still be used; it reconnects)."""
        for node in self._nodes:
            node.close()

    def __enter__(self) -> MemcacheSessionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------

    def _start(self, sid: str | None) -> tuple[Session, Outcome | None]:
        if type(sid) is not str:
            return self.new_session(), None
        known = self._known.get(sid)  # an id read or written before: checked, hashed
        if known is not None:
            key = known.key
        elif is_valid_session_id(sid):
            key = storage_key(self._prefix, sid)
        else:
            return self.new_session(), None
        began = time.perf_counter()
        home: list[Reply] | None = None
        if not self._locking and self._settled():  # a lock is taken before reading
            settled = self._home_read(sid, known or self._derive(key), began)
            if isinstance(settled, Record):
                return self._loaded(sid, settled), None
            home = settled  # None: start over; else the replies, which settle nothing
        op = _Op("session.start", key, began)
        lock = self._lock(op, key) if self._locking else None
        read = self._read(op, key, home)
        found, base, served = self._judge(read)
        if base is not OutcomeKind.POSSIBLY_STALE:
            self._repair(op, key, read, renew=found is not None)
        outcome = self._report(op, base, served, read)
        if found is None:
            session = self.new_session()
            # The caller's id was unknown: never adopt it (session fixation).
            if lock is not None:
                self._unlock_key(lock)
        else:
            session = self._loaded(sid, found.record)
            session._lock = lock
        return session, outcome

    def _loaded(self, sid: str, record: Record) -> Session:
        return Session(
            sid,
            new=False,
            version=record.version,
            created=record.created,
            ttl=None if record.ttl == self._idle_ttl else record.ttl,
            payload=record.payload,
        )

    def _derive(self, key: str) -> _Known:
        """What a read of ``key`` needs: its home nodes (the top ``replicas`` of its
        ranking), their transports and the ``gets`` command."""
        home = rank(self._nodes, self._seeds, key)[: self._replicas]
        return _Known(key, home, [node.transport for node in home], gets(key))

    def _settled(self) -> bool:
        """True if reads may start with the home nodes alone (see :meth:`_read`): the
        process has seen no fault for ``_settle_after`` seconds, and the store is not
        told to read every node."""
        return not self._read_all_nodes and self._faults.quiet_for(self._settle_after)

    def _home_read(self, sid: str, known: _Known, began: float) -> Record | list[Reply] | None:
        """The usual read, kept short because every request pays it: when the process
        is settled (the caller checked) and the home nodes' breakers are closed, ask the
        home nodes; if all hold the same valid live copy, due no renewal, that is the
        session's record (reported only to ``on_outcome``: an OK read is silent).

        Otherwise the home nodes' replies, for :meth:`_read` to go on from, or None:
        a home node's breaker is not closed (nothing was sent), or the home nodes agree
        on a copy that needs more than this (invalid, a tombstone, expired, due a renewal:
        rare, so :meth:`_read` simply asks again).
        """
        home = known.home
        for node in home:
            if node.breaker.state is not BreakerState.CLOSED:
                return None  # _read decides, probes and records skips
        found = agreed_gets(known.transports, known.command, began + self._operation_timeout)
        if type(found) is not bytes:
            assert isinstance(found, list)
            return settle([(node, (known.command,)) for node in home], found, began)
        done = time.perf_counter()
        for node in home:
            node.breaker.success()
        verified = known.verified
        if verified is not None and found == verified[0]:  # these bytes passed the MAC
            record = verified[1]
        else:
            checked = self._verify(found, known.key)
            if type(checked) is not Record:
                return None
            record = checked
            self._remember(sid, known, found, record)
        if record.tombstone or self._expired(record) or self._renewal_due(record):
            return None
        if self._on_outcome is not None:
            op = _Op("session.start", known.key, began)
            for node in home:
                op.results.append((node.address, "gets", NodeStatus.HIT, done - began, ""))
            self._finish(op, OutcomeKind.OK, home[0], record.version)
        return record

    def _remember(self, sid: str, known: _Known, blob: bytes, record: Record) -> None:
        """Keep ``known`` for ``sid``, with ``blob`` as a verified copy of ``record``:
        the next read skips the id check, the hashing and ranking, and the MAC if it
        finds the same bytes. Small copies only, a bounded number of ids (the oldest go
        first); see docs/memcache/security.md."""
        if len(blob) > _VERIFIED_BLOB_MAX:
            return
        known.verified = (blob, record)
        remembered = self._known
        if sid not in remembered and len(remembered) >= _VERIFIED_MAX:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # racing threads
                del remembered[next(iter(remembered))]
        remembered[sid] = known

    def _targets(self, op: _Op, ranked: Sequence[Node], need: int, seen: set[Node]) -> list[Node]:
        targets: list[Node] = []
        for node in ranked:
            if len(targets) >= need:
                break
            if node in seen:
                continue
            seen.add(node)
            if node.breaker.allow():
                targets.append(node)
            else:
                op.record(node, "-", NodeStatus.SKIPPED, time.perf_counter() - op.start)
        return targets

    def _read(self, op: _Op, key: str, home: list[Reply] | None = None) -> _Read:
        """Ask the session's home nodes, and every other node whose breaker allows it
        unless the home nodes settle the read. ``home``: the home nodes' replies, when
        :meth:`_home_read` already asked them.

        While the process has seen no fault for ``_settle_after`` seconds, every write
        reached its home (the first ``replicas`` nodes of the ranking), so the home
        nodes alone are asked: when each holds the same valid copy, that copy is the
        newest. Anything else (a failure, a miss, an invalid or a differing copy) asks
        every other node too: after a failover write the newest copy can sit lower in
        the ranking, and a node that rejoins with old data, or restarted empty, must
        not hide it. After a fault, and with ``read_all_nodes``, every node is asked at
        once (design notes: docs/memcache/index.md).
        """
        ranked = rank(self._nodes, self._seeds, key)
        read = _Read()
        read.asked = len(ranked)
        decoded: dict[bytes, Record | EnvelopeError] = {}
        seen: set[Node] = set()
        if home is not None:
            settled = True
            seen.update(reply.node for reply in home)
            replies = self._collect(read, key, home, decoded)
        else:
            settled = self._settled()
            targets = self._targets(op, ranked, self._replicas if settled else len(ranked), seen)
            replies = self._gets(read, key, targets, decoded, self._deadline(op))
        if settled and (len(read.copies) < self._replicas or read.mixed):
            others = self._targets(op, ranked, len(ranked), seen)
            replies += self._gets(read, key, others, decoded, self._deadline(op))
        winner = read.winner
        for reply in replies:
            self._result(op, read, reply, winner, decoded)
        if read.misses:
            # Only the session's home, the first ``replicas`` nodes that answered (in
            # rank order), is repaired when it misses; others are not meant to hold a copy.
            answered = [r.node for r in replies if r.failure is None][: self._replicas]
            read.misses = [node for node in read.misses if node in answered]
        return read

    def _gets(
        self,
        read: _Read,
        key: str,
        targets: Sequence[Node],
        decoded: dict[bytes, Record | EnvelopeError],
        deadline: float,
    ) -> list[Reply]:
        """Ask ``targets`` for their copy in one round; keep the valid copies in ``read``."""
        if not targets:
            return []
        command = (gets(key),)
        replies = execute([(node, command) for node in targets], deadline)
        return self._collect(read, key, replies, decoded)

    def _collect(
        self,
        read: _Read,
        key: str,
        replies: list[Reply],
        decoded: dict[bytes, Record | EnvelopeError],
    ) -> list[Reply]:
        """Verify the copies in ``replies`` and keep the valid ones in ``read``."""
        for reply in replies:
            if reply.failure is not None or reply.values[0] is None:
                continue
            blob, token = reply.values[0]
            record = decoded.get(blob)
            if record is None:  # identical copies (the usual case) are verified once
                record = decoded[blob] = self._verify(blob, key)
            if isinstance(record, Record):
                read.add_copy(_Copy(reply.node, record, blob, token))
            else:
                read.invalid.append((reply.node, token))
        return replies

    def _verify(self, blob: bytes, key: str) -> Record | EnvelopeError:
        try:
            record = decode(blob, key, self._keys)
        except EnvelopeError as exc:
            return exc
        self._note_lifetime(record)
        return record

    def _note_lifetime(self, record: Record) -> None:
        """A copy read or written that lives longer than ``_settle_after``: after a
        fault, reads keep asking every node as long as such a copy can (see __init__)."""
        if record.ttl > self._settle_after:
            self._settle_after = float(record.ttl)

    def _result(
        self,
        op: _Op,
        read: _Read,
        reply: Reply,
        winner: _Copy | None,
        decoded: dict[bytes, Record | EnvelopeError],
    ) -> None:
        node, at = reply.node, reply.elapsed
        if reply.failure is not None:
            op.record(node, "gets", NodeStatus(reply.failure.kind), at, reply.failure.detail)
            return
        read.answered += 1
        value = reply.values[0]
        if value is None:
            read.misses.append(node)
            op.results.append((node.address, "gets", NodeStatus.MISS, at, ""))
            return
        record = decoded[value[0]]
        if isinstance(record, EnvelopeError):
            op.flags.add(OutcomeKind.INVALID)
            op.results.append((node.address, "gets", NodeStatus.INVALID, at, record.reason))
            return
        assert winner is not None
        if record is winner.record or record.order == winner.record.order:
            op.results.append((node.address, "gets", NodeStatus.HIT, at, ""))
        else:
            detail = f"{'tombstone' if record.tombstone else 'v'}{record.version}"
            op.results.append((node.address, "gets", NodeStatus.STALE, at, detail))

    def _deadline(self, op: _Op | None) -> float:
        """The operation's deadline (``time.perf_counter()`` time): ``operation_timeout``
        after it began (None: from now)."""
        return (time.perf_counter() if op is None else op.start) + self._operation_timeout

    def _expired(self, record: Record) -> bool:
        if self._absolute_ttl is None:
            return False
        return self._clock() >= record.created + self._absolute_ttl

    def _judge(self, read: _Read) -> tuple[_Copy | None, OutcomeKind, Node | None]:
        """The live copy to serve (if any), the base outcome, and the node that served."""
        winner = read.winner
        if winner is not None:
            # A tombstone or a session past its absolute lifetime is a definite answer.
            if winner.record.tombstone or self._expired(winner.record):
                return None, OutcomeKind.NOT_FOUND, winner.node
            if self._possibly_stale(read):
                # Served only if the application's policy does not raise on WARNING
                # (the default does: the request gets a 503, not an old session).
                return winner, OutcomeKind.POSSIBLY_STALE, winner.node
            return winner, OutcomeKind.OK, winner.node
        if read.answered == 0:
            return None, OutcomeKind.UNAVAILABLE, None
        if read.answered < self._replicas:
            return None, OutcomeKind.PARTIAL_MISS, None
        return None, OutcomeKind.NOT_FOUND, None

    def _possibly_stale(self, read: _Read) -> bool:
        """Every copy sits on a node that just came back while another node is still
        unreachable: that node may hold a newer copy, so this one must not be served
        (nor repaired onto the others) until it answers or ``max_retry_after`` passes,
        the longest any breaker waits before it probes again."""
        if read.answered == read.asked:
            return False
        grace = self._max_retry_after
        return all(copy.node.breaker.rejoined_within(grace) for copy in read.copies)

    def _renewal_due(self, record: Record) -> bool:
        """Enough of the idle TTL has passed that a read renews it (``renew_after``)."""
        age = self._clock() - record.written
        return age >= self._renew_after * (record.ttl or self._idle_ttl)

    def _effective_ttl(self, record: Record) -> int:
        ttl = record.ttl or self._idle_ttl
        if self._absolute_ttl is not None and not record.tombstone:
            left = int(record.created + self._absolute_ttl - self._clock())
            ttl = min(ttl, max(left, 1))
        return max(1, min(ttl, _MAX_TTL))

    def _repair(self, op: _Op, key: str, read: _Read, *, renew: bool) -> None:
        """Rewrite stale, invalid and missing copies with the winner; touch when due."""
        winner = read.winner
        if winner is None:
            return
        record = winner.record
        due = renew and self._renewal_due(record)
        if not (due or read.mixed or read.misses or read.invalid):  # the usual case
            return
        if not record.tombstone and self._expired(record):
            return
        ttl = self._effective_ttl(record)
        plan: list[tuple[Node, tuple[Command, ...]]] = []
        for copy in read.copies:
            if copy.record.order != record.order:
                plan.append((copy.node, (cas(key, winner.blob, ttl, copy.cas),)))
        for node, token in read.invalid:
            plan.append((node, (cas(key, winner.blob, ttl, token),)))
        if not record.tombstone:
            for node in read.misses:
                plan.append((node, (add(key, winner.blob, ttl),)))
        if plan:
            op.flags.add(OutcomeKind.REPAIRED)
        if due:
            for copy in read.copies:
                if copy.record.order == record.order:
                    plan.append((copy.node, (touch(key, ttl),)))
        if not plan:
            return
        for reply in execute(plan, self._deadline(op)):
            command = reply.commands[0].name
            if reply.failure is not None:
                op.record(reply.node, command, NodeStatus(reply.failure.kind), reply.elapsed)
                continue
            status = {
                "STORED": NodeStatus.STORED,
                "TOUCHED": NodeStatus.TOUCHED,
            }.get(reply.values[0], NodeStatus.NOT_STORED)
            op.results.append((reply.node.address, command, status, reply.elapsed, ""))

    def _report(
        self, op: _Op, base: OutcomeKind, served: Node | None, read: _Read | None
    ) -> Outcome | None:
        version = None
        if read is not None and read.winner is not None:
            version = read.winner.record.version
        return self._finish(op, base, served, version)

    def _finish(
        self, op: _Op, base: OutcomeKind, served: Node | None, version: int | None
    ) -> Outcome | None:
        """Decide the outcome and report it; None when there is nothing to report."""
        kind = op.kind(base)
        if not severity_of(kind) and self._on_outcome is None:
            return None
        outcome = op.outcome(kind, served, version)
        self._emit(outcome)
        return outcome

    def _emit(self, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        level = outcome.level
        if level:
            # Built and handled directly: the guard must see NOTICE records even when
            # the logger's effective level (WARNING by default) would drop them.
            record = _logger.makeRecord(
                _logger.name, level, __file__, 0, "%s", (outcome,), None, extra={"outcome": outcome}
            )
            _logger.handle(record)

    # -- writing -------------------------------------------------------------------

    def _next_version(self, floor: int) -> int:
        with self._version_lock:
            version = max(time.time_ns(), self._last_version + 1, floor + 1)
            self._last_version = version
            return version

    def _write(self, op: _Op, writes: Sequence[_Write]) -> None:
        """Store every write on ``need`` answering nodes, falling back down the ranking."""
        while True:
            plan: dict[Node, list[_Write]] = {}
            for write in writes:
                if write.need <= 0 or write.taken:
                    continue
                for node in self._targets(op, write.ranked, write.need, write.consulted):
                    plan.setdefault(node, []).append(write)
            if not plan:
                return
            replies = execute(
                [(node, [w.command for w in items]) for node, items in plan.items()],
                self._deadline(op),
            )
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
                    name = write.command.name
                    op.results.append((reply.node.address, name, status, reply.elapsed, ""))
                    if stored:
                        write.acks.append(reply.node)
                        write.need -= 1
                    else:
                        write.taken = True

    def _encode(self, key: str, record: Record) -> bytes:
        self._note_lifetime(record)
        blob = encode(record, key, self._keys)
        if len(blob) > self._max_size:
            raise SessionTooLarge(len(blob), self._max_size)
        return blob

    def _write_outcome(
        self, op: _Op, writes: Sequence[_Write], version: int | None
    ) -> Outcome | None:
        fewest = self._replicas  # the acks of the least stored write
        for write in writes:
            fewest = min(fewest, len(write.acks))
        if fewest == 0:
            base = OutcomeKind.UNAVAILABLE
        elif fewest < self._replicas:
            base = OutcomeKind.DEGRADED
        else:
            base = OutcomeKind.OK
        served = writes[0].acks[0] if writes and writes[0].acks else None
        return self._finish(op, base, served, version)

    def _record_write(
        self, key: str, record: Record, verb: Callable[[str, bytes, int], Command]
    ) -> _Write:
        """The write of a live ``record`` under ``key`` (``verb`` is ``set_`` or ``add``) to
        its ranked nodes, expiring after the record's effective TTL."""
        blob = self._encode(key, record)
        expire = self._effective_ttl(record)
        return _Write(
            key, verb(key, blob, expire), rank(self._nodes, self._seeds, key), self._replicas
        )

    def _save(self, session: Session, *, must_create: bool, ttl: int | None) -> Outcome | None:
        key = storage_key(self._prefix, session.id)
        if ttl is not None:
            session.ttl = ttl
        now = self._clock()
        created = session.created or now
        version = self._next_version(session.version)
        life = session.ttl or self._idle_ttl
        record = Record(version, self._writer, created, now, life, session._encoded())
        write = self._record_write(key, record, add if must_create else set_)
        op = _Op("session.save", key)
        self._write(op, [write])
        if write.taken:
            self._rollback(op, key, write.acks)
            raise SessionExists(f"session id already in use (key ...{key[-12:]})")
        if session._lock is not None:
            self._unlock(session, op)
        outcome = self._write_outcome(op, [write], version)
        if write.acks:
            session.new = False
            session.modified = False
            session._version = version
            session._created = created
            assert write.command.value is not None  # ours: no MAC check needed
            known = self._known.get(session.id) or self._derive(key)
            self._remember(session.id, known, write.command.value, record)
        return outcome

    def _rollback(self, op: _Op, key: str, nodes: Sequence[Node]) -> None:
        if nodes:
            # From now: the copies an add left must go even if the save ran late.
            for reply in execute([(node, (delete(key),)) for node in nodes], self._deadline(None)):
                status = NodeStatus.DELETED if reply.failure is None else NodeStatus.ERROR
                op.results.append((reply.node.address, "delete", status, reply.elapsed, ""))

    def _tombstone_write(self, key: str, floor: int, ttl: int | None) -> tuple[_Write, int]:
        now = self._clock()
        version = self._next_version(floor)
        life = max(ttl or self._idle_ttl, self._idle_ttl)
        record = Record(version, self._writer, now, now, life, None)
        blob = self._encode(key, record)
        ranked = rank(self._nodes, self._seeds, key)
        return _Write(key, set_(key, blob, life), ranked, self._replicas), version

    def _tombstone(
        self, sid: str, floor: int, ttl: int | None, session: Session | None
    ) -> Outcome | None:
        key = storage_key(self._prefix, sid)
        op = _Op("session.destroy", key)
        write, version = self._tombstone_write(key, floor, ttl)
        self._write(op, [write])
        if session is not None and session._lock is not None:
            self._unlock(session, op)
        return self._write_outcome(op, [write], version)

    def _regenerate(self, session: Session) -> Outcome | None:
        old_key = storage_key(self._prefix, session.id)
        new_id = new_session_id()
        new_key = storage_key(self._prefix, new_id)
        now = self._clock()
        version = self._next_version(session.version)
        ttl = session.ttl or self._idle_ttl
        record = Record(version, self._writer, now, now, ttl, session._encoded())
        writes = [self._record_write(new_key, record, set_)]
        op = _Op("session.regenerate", new_key)
        self._write(op, writes)
        # The old id dies only once the data is safe under the new one.
        if not session.new and writes[0].acks:
            tomb, _ = self._tombstone_write(old_key, session.version, session.ttl)
            writes.append(tomb)
            self._write(op, [tomb])
        if writes[0].acks:
            self._unlock(session, op)
            session._id = new_id
            session._version = version
            session._created = now
            session.new = False
            session.modified = False
        return self._write_outcome(op, writes, version)

    # -- locking -------------------------------------------------------------------

    def _lock(self, op: _Op, key: str) -> _Lock | None:
        """Take the session's lock with memcached ``add``, waiting at most ``lock_timeout``."""
        lock_key = key + ":lock"
        ranked = rank(self._nodes, self._seeds, key)
        token = secrets.token_hex(8).encode()
        deadline = time.monotonic() + self._lock_timeout
        delay = self._lock_poll
        seen: set[Node] = set()
        node: Node | None = None
        while True:
            if node is None:
                targets = self._targets(op, ranked, 1, seen)
                if not targets:
                    return None
                node = targets[0]
            (reply,) = execute(
                [(node, (add(lock_key, token, self._lock_ttl),))], self._deadline(op)
            )
            if reply.failure is not None:
                op.record(node, "lock", NodeStatus(reply.failure.kind), reply.elapsed)
                node = None
                continue
            if reply.values[0] == _STORED:
                op.results.append((node.address, "lock", NodeStatus.LOCKED, reply.elapsed, ""))
                return _Lock(node.address, lock_key, time.monotonic())
            if time.monotonic() + delay > deadline:
                op.results.append((node.address, "lock", NodeStatus.BUSY, reply.elapsed, ""))
                op.flags.add(OutcomeKind.LOCK_TIMEOUT)
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _unlock(self, session: Session, op: _Op | None) -> None:
        lock, session._lock = session._lock, None
        if lock is not None:
            self._unlock_key(lock, op)

    def _unlock_key(self, lock: _Lock, op: _Op | None = None) -> None:
        # Past its TTL the lock may belong to another request now: leave it to expire.
        if time.monotonic() - lock.acquired > self._lock_ttl - 2:
            return
        node = next((n for n in self._nodes if n.address == lock.node), None)
        if node is None:
            return
        # From now, not from the operation's start: a late save still frees its lock.
        (reply,) = execute([(node, (delete(lock.key),))], self._deadline(None))
        if op is not None:
            status = NodeStatus.DELETED if reply.failure is None else NodeStatus(reply.failure.kind)
            op.results.append((node.address, "unlock", status, reply.elapsed, ""))
