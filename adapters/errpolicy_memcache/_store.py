"""MemcacheSessionStore: replicated, versioned, signed sessions that report each outcome."""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from types import MappingProxyType

import errpolicy
from errpolicy import Policy, match

from . import _core as core
from ._breaker import BreakerState, CircuitBreaker, FaultClock
from ._core import Acked, Known, Op, Read, Write
from ._envelope import EnvelopeError, Keyring, Record, decode, encode, normalize_keys
from ._errors import (
    InvalidSessionId,
    SessionExists,
    SessionTooLarge,
    SessionUnavailable,
)
from ._handoff import Handoff
from ._ids import is_valid_session_id, new_session_id, storage_key
from ._locks import LockAttempt, Step, unlock_plan
from ._metrics import StoreMetrics, StoreStats
from ._node import Node, Prober, Reply, execute, settle
from ._options import _positive as _positive  # the async driver imports it from here
from ._options import check_options, check_ttl
from ._outcome import NodeStatus, Outcome, OutcomeKind, severity_of
from ._placement import node_seed, rank
from ._sealed import new_acked, new_record, store_command
from ._session import Session, _Lock
from ._transport import TRANSPORTS, agreed_gets, stored_round
from ._wire import MAX_VALUE, Command, add, delete, gets, set_

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
# The usual save's members, looked up once: on 3.11 each Enum.MEMBER goes through
# EnumType.__getattr__'s hook (about 600 instructions).
_CLOSED = BreakerState.CLOSED
_OK = OutcomeKind.OK
_STORED = NodeStatus.STORED

# The session ids each store remembers with their verified copy (see _remember): at
# most this many, with copies of at most this many bytes each, so at most 4 MiB.
_VERIFIED_MAX = 1024
# What a store remembers of the ids it let go: the newest acknowledged version and its
# nodes (no data, about 300 bytes each), for this many more ids.
_ACKED_MAX = 16384
_VERIFIED_BLOB_MAX = 4096
# Larger verified copies too, up to this many bytes in all (the oldest dropped first):
# a MAC over 64 KiB costs several times what reading it does.
_VERIFIED_LARGE_BUDGET = 16 * 1024 * 1024
_VERIFIED_LARGE_MAX = 1024 * 1024  # each


class _Faults(FaultClock):
    """The fault clock, numbering its marks too: a session settled at one mark stays
    settled until the next (see ``_wide_read``), even when two marks read the same
    clock time (a coarse clock, or the simulation's). Each mark stores a number never
    stored before, so a mark racing a read's capture still changes what it captured."""

    __slots__ = ("_numbering", "_numbers", "marks")

    def __init__(self) -> None:
        super().__init__()
        self._numbers = itertools.count(1)
        # Faults are rare: a lock keeps two racing marks apart on a free-threaded build.
        self._numbering = threading.Lock()
        self.marks = 0

    def mark(self) -> None:
        with self._numbering:
            self.marks = next(self._numbers)
        super().mark()


def _check_id(session: Session) -> None:
    if not is_valid_session_id(session.id):
        raise InvalidSessionId(
            "the session's id does not have the shape of one this store issues "
            "(use store.new_session() or new_session_id())"
        )


def _agreed(replies: Sequence[Reply], replicas: int) -> tuple[bytes, list[Node]] | None:
    """The copy of a read that every node answered, when the first ``replicas`` replies
    hold the same bytes and the others the same or none, with the nodes holding it."""
    blob: bytes | None = None
    holders: list[Node] = []
    for index, reply in enumerate(replies):
        if reply.failure is not None:
            return None
        value = reply.values[0]
        if value is None:
            if index < replicas:
                return None
            continue
        if blob is None:
            blob = value[0]
        elif value[0] != blob:
            return None
        holders.append(reply.node)
    return None if blob is None else (blob, holders)


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
        replicas: int | None = None,
        *,
        prefix: str = "errpolicy:session:",
        idle_ttl: int = 1800,
        absolute_ttl: int | None = 86400,
        renew_after: float = 0.5,
        max_size: int = 256 * 1024,
        connect_timeout: float = 0.25,
        timeout: float = 0.5,
        failure_threshold: int = 3,
        retry_after: float = 0.1,
        max_retry_after: float = 0.4,
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
        options = check_options(
            servers,
            replicas,
            prefix=prefix,
            idle_ttl=idle_ttl,
            absolute_ttl=absolute_ttl,
            renew_after=renew_after,
            max_size=max_size,
            connect_timeout=connect_timeout,
            timeout=timeout,
            failure_threshold=failure_threshold,
            retry_after=retry_after,
            max_retry_after=max_retry_after,
            locking=locking,
            lock_timeout=lock_timeout,
            lock_ttl=lock_ttl,
            lock_poll=lock_poll,
            pool_size=pool_size,
            transport=transport,
            transports=TRANSPORTS,
            read_all_nodes=read_all_nodes,
            operation_timeout=operation_timeout,
        )
        addresses = options.addresses
        replicas = options.replicas
        if len(addresses) == 1:
            _logger.warning(
                "one memcached server: each session has one copy and there is no failover "
                "(if it stops, every session is unavailable; if it restarts, all are lost); "
                "list two or more servers in production"
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
        self._metrics = StoreMetrics()
        self._clock = clock
        self._read_all_nodes = read_all_nodes
        self._operation_timeout = options.operation_timeout
        self._known: dict[str, Known] = {}
        self._let_go: dict[str, Acked] = {}  # the acked versions of ids no longer known
        # The ids whose kept verified copy is over _VERIFIED_BLOB_MAX, and its size.
        self._large: dict[str, tuple[Known, int]] = {}
        self._large_bytes = 0
        self._large_lock = threading.Lock()
        self._faults = _Faults()
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
                    failure_threshold,
                    retry_after,
                    max_retry_after,
                    faults=self._faults,
                    on_open=self._wake_prober,
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
        self._by_address = {node.address: node for node in self._nodes}
        # The driver's I/O, in two callables: the simulation tests put simulated nodes here.
        self._execute: Callable[..., list[Reply]] = execute
        self._agreed_gets = agreed_gets
        self._stored_round = stored_round
        # Tombstones a node missed, locks whose add timed out: handed over when it is back.
        self._handoff = Handoff(self._nodes, self._run_plan, self._verify)
        self._prober = Prober(
            self._nodes, gets(prefix + "probe"), self._handoff.run, self._run_plan
        )

    def _run_plan(self, plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        return self._execute(plan, self._deadline(None))

    def _wake_prober(self) -> None:
        self._prober.wake()

    def __repr__(self) -> str:
        return f"<MemcacheSessionStore replicas={self._replicas} nodes={self._nodes!r}>"

    # -- public API ------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in the order given; ``node.breaker.state`` tells their health."""
        return tuple(self._nodes)

    def stats(self) -> StoreStats:
        """What this store counted since it was built: outcomes per operation, results
        per node, latency per operation, and each node's breaker state now."""
        return self._metrics.snapshot(self._nodes)

    def new_session(self) -> Session:
        """A fresh, empty session with a new id; no I/O."""
        return Session(new_session_id(), new=True, created=self._clock())

    def start(self, sid: str | None) -> Session:
        """Load the session ``sid``, or give a new one if it is None, malformed or unknown.

        Guarded by ``"session.start"``. With the default policy, a failed node costs a
        recorded notice; no node answering raises :class:`errpolicy.PolicyViolation`.
        An unknown or destroyed id never comes back: the new session has a fresh id.
        """
        if self._handoff.waiting:
            self._handoff.run()
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
            op = Op("session.exists", key)
            read = self._read(op, key)
            found, outcome = self._conclude(op, sid, key, read, renew=False)
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
        sid = session._id
        if type(sid) is not str or sid not in self._known:  # a kept id was checked
            _check_id(session)
        if ttl is not None:
            check_ttl(ttl)
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
        """Stop probing and close every pooled connection (the store can still be used;
        it reconnects)."""
        self._prober.close()
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
        wide = False
        if not self._locking:  # a lock is taken before reading
            known = known or self._known_for(sid, key)
            if self._reads_home(known):
                settled = self._home_read(sid, known, began)
            else:
                wide = True
                settled = self._wide_read(sid, known, began)
            if isinstance(settled, Record):
                return self._loaded(sid, settled), None
            home = settled  # None: start over; else the replies, which settle nothing
        op = Op("session.start", key, began)
        lock = self._lock(op, key) if self._locking else None
        read = self._read(op, key, home, wide=wide)
        found, outcome = self._conclude(op, sid, key, read, renew=True)
        if found is None:
            session = self.new_session()
            # The caller's id was unknown: never adopt it (session fixation).
            if lock is not None:
                self._unlock_key(lock)
        else:
            session = self._loaded(sid, found.record)
            session._lock = lock
        return session, outcome

    def _conclude(
        self, op: Op, sid: str, key: str, read: Read, *, renew: bool
    ) -> tuple[core.Copy | None, Outcome | None]:
        """Judge a read (:func:`core.judge`), carry out the repairs it allows, remember
        what the process now knows of the session, and report the outcome."""
        known, judgement, now = self._judge_read(sid, key, read)
        winner = read.winner
        if judgement.repair:
            self._repair(op, key, read, renew=renew and judgement.found is not None, now=now)
        if judgement.bury:
            write, _ = self._tombstone_write(key, winner.record.version if winner else 0, None)
            self._write(op, [write])
            self._handoff.hint(write)
            if write.acks:
                op.flags.add(OutcomeKind.REPAIRED)
        return judgement.found, self._concluded(op, sid, known, read, judgement)

    def _judge_read(self, sid: str, key: str, read: Read) -> tuple[Known, core.Judgement, float]:
        """The judgement of a read, and what it makes the process forget (no I/O; both
        drivers' ``_conclude`` carry out its repairs, then call :meth:`_concluded`)."""
        known = self._known.get(sid) or self._known_for(sid, key)
        now = self._clock()
        winner = read.winner
        judgement = core.judge(
            read,
            home=known.home,
            acked=known.acked,
            replicas=self._replicas,
            over=winner is not None and core.expired(winner.record, now, self._absolute_ttl),
            grace=self._max_retry_after,
            memory=self._settle_after,
        )
        known.strays = read.strays(known.home)
        if judgement.forget:
            known.acked = None
            self._let_go.pop(sid, None)
        return known, judgement, now

    def _concluded(
        self, op: Op, sid: str, known: Known, read: Read, judgement: core.Judgement
    ) -> Outcome | None:
        """After a judged read's repairs: remember what it acknowledged, report it."""
        winner = read.winner
        if judgement.found is not None and judgement.base is OutcomeKind.OK:
            record = judgement.found.record
            known.ack(Acked(record.version, False, read.holders(), self._faults.now()))
            self._keep(sid, known)
        elif winner is not None and winner.record.tombstone:
            known.ack(Acked(winner.record.version, True, read.holders(), self._faults.now()))
            self._keep(sid, known)
        version = winner.record.version if winner is not None else None
        return self._finish(op, judgement.base, judgement.served, version)

    def _loaded(self, sid: str, record: Record) -> Session:
        return Session(
            sid,
            new=False,
            version=record.version,
            created=record.created,
            ttl=None if record.ttl == self._idle_ttl else record.ttl,
            payload=record.payload,
        )

    def _derive(self, key: str) -> Known:
        """What a read of ``key`` needs: its home nodes (the top ``replicas`` of its
        ranking), their transports and the ``gets`` command."""
        home = rank(self._nodes, self._seeds, key)[: self._replicas]
        return Known(key, home, [node.transport for node in home], gets(key))

    def _settled(self) -> bool:
        """True if reads may start with the home nodes alone (see :meth:`_read`): the
        process has seen no fault for ``_settle_after`` seconds, and the store is not
        told to read every node."""
        return not self._read_all_nodes and self._faults.quiet_for(self._settle_after)

    def _home_read(self, sid: str, known: Known, began: float) -> Record | list[Reply] | None:
        """The usual read, kept short because every request pays it: when the process
        is settled (the caller checked) and the home nodes' breakers are closed, ask the
        home nodes; if all hold the same valid live copy, due no renewal and not older
        than a copy this process saw acknowledged, that is the session's record
        (reported only to ``on_outcome``: an OK read is silent).

        Otherwise the home nodes' replies, for :meth:`_read` to go on from, or None:
        a home node's breaker is not closed (nothing was sent), or the home nodes agree
        on a copy that needs more than this (invalid, a tombstone, expired, older than
        known, due a renewal: rare, so :meth:`_read` simply asks again).
        """
        home = known.home
        for node in home:
            if node.breaker.state is not BreakerState.CLOSED:
                return None  # _read decides and records skips
        found = self._agreed_gets(known.transports, known.command, began + self._operation_timeout)
        if type(found) is not bytes:
            assert isinstance(found, list)
            return settle([(node, (known.command,)) for node in home], found, began)
        done = time.perf_counter()
        for node in home:
            node.breaker.success()
        return self._home_record(sid, known, began, found, done)

    def _home_record(
        self, sid: str, known: Known, began: float, found: bytes, done: float
    ) -> Record | None:
        """What :meth:`_home_read` concludes when every home node answered ``found``
        (no I/O; the async driver's home read ends here too): the record, or None."""
        home = known.home
        verified = known.verified
        if verified is not None and found == verified[0]:  # these bytes passed the MAC
            record = verified[1]
        else:
            checked = self._verify(found, known.key)
            if type(checked) is not Record:
                return None
            record = checked
            if not record.tombstone:
                known.ack(Acked(record.version, False, known.homes, self._faults.now()))
            self._remember(sid, known, found, record)
        acked = known.acked
        if acked is not None and (acked.tombstone or acked.version > record.version):
            return None
        if record.tombstone or self._expired(record) or self._renewal_due(record):
            return None
        if self._on_outcome is not None:
            op = Op("session.start", known.key, began)
            for node in home:
                op.results.append((node.address, "gets", NodeStatus.HIT, done - began, ""))
            self._finish(op, OutcomeKind.OK, home[0], record.version)
        else:
            self._metrics.hit(home, done - began)
        return record

    def _wide_read(self, sid: str, known: Known, began: float) -> Record | list[Reply] | None:
        """The read of a process that is not settled (a recent fault, or
        ``read_all_nodes``), kept short as :meth:`_home_read` is: every node whose
        breaker is closed, asked in one round. When the first ``replicas`` of them hold
        the same valid live copy and the others the same or none, it is what
        :meth:`_read` would conclude (judged by :func:`core.judge` when a node was
        skipped, and reported as a failover); else the replies, for :meth:`_read`.
        """
        mark = self._faults.marks  # before the round: a fault during it unsettles
        asked, skipped = self._wide_targets(known)
        if not asked:
            return None
        at = time.perf_counter() - began
        command = (known.command,)
        plan = [(node, command) for node in asked]
        replies = self._execute(plan, began + self._operation_timeout)
        found = self._wide_record(sid, known, began, at, replies, skipped)
        self._settle(known, mark, found, skipped)
        return found

    def _reads_home(self, known: Known) -> bool:
        """True if a read of ``known`` may start with its home nodes alone: the process
        is settled, or this session was read whole since the last fault (both drivers)."""
        return known.settled == self._faults.marks or self._settled()

    def _settle(
        self, known: Known, mark: int, found: Record | list[Reply], skipped: list[Node]
    ) -> None:
        """After a wide read that began at fault mark ``mark`` (no I/O; both drivers):
        when every node answered and none holds a copy newer than home's (``found`` is
        the record), this session's reads may ask its home alone until the next fault
        (docs/design.md, "Careful after a fault, per session")."""
        if not skipped and not self._read_all_nodes and type(found) is Record:
            known.settled = mark

    def _wide_targets(self, known: Known) -> tuple[list[Node], list[Node]]:
        """The nodes a wide read asks (breaker closed) and skips, in ranking order."""
        asked: list[Node] = []
        skipped: list[Node] = []
        for node in rank(self._nodes, self._seeds, known.key):
            (asked if node.breaker.state is BreakerState.CLOSED else skipped).append(node)
        return asked, skipped

    def _wide_record(
        self,
        sid: str,
        known: Known,
        began: float,
        at: float,
        replies: list[Reply],
        skipped: list[Node],
    ) -> Record | list[Reply]:
        """What :meth:`_wide_read` concludes from the ``replies`` of the nodes it asked
        (no I/O; the async driver's wide read ends here too)."""
        found = _agreed(replies, self._replicas)
        if found is None:
            return replies
        blob, holders = found
        verified = known.verified
        if verified is not None and blob == verified[0]:  # these bytes passed the MAC
            record = verified[1]
        else:
            checked = self._verify(blob, known.key)
            if type(checked) is not Record:
                return replies
            record = checked
            self._remember(sid, known, blob, record)
        acked = known.acked
        if acked is not None and (acked.tombstone or acked.version > record.version):
            return replies
        if record.tombstone or self._expired(record) or self._renewal_due(record):
            return replies
        op: Op | None = None
        if skipped or self._on_outcome is not None:
            op = Op("session.start", known.key, began)
            for node in skipped:
                op.record(node, "-", NodeStatus.SKIPPED, at)
            for reply in replies:
                status = NodeStatus.MISS if reply.values[0] is None else NodeStatus.HIT
                op.results.append((reply.node.address, "gets", status, reply.elapsed, ""))
        served = holders[0]
        if skipped:
            read = Read()
            for reply in replies:
                value = reply.values[0]
                if value is not None:
                    read.add_copy(core.Copy(reply.node, record, value[0], value[1]))
            read.failed = skipped
            read.answered = len(replies)
            read.answered_by.update([reply.node.address for reply in replies])
            judgement = core.judge(
                read,
                home=known.home,
                acked=acked,
                replicas=self._replicas,
                over=False,
                grace=self._max_retry_after,
                memory=self._settle_after,
            )
            if judgement.base is not OutcomeKind.OK or judgement.found is None:
                return replies
            if judgement.forget or judgement.bury:
                return replies
            served = judgement.found.node
        addresses = frozenset([node.address for node in holders])
        # Copies outside home (a failover write left them): the next save writes over them.
        known.strays = addresses - known.homes
        known.ack(Acked(record.version, False, addresses, self._faults.now()))
        self._keep(sid, known)
        if op is not None:
            self._finish(op, OutcomeKind.OK, served, record.version)
        return record

    def _known_for(self, sid: str, key: str) -> Known:
        """A new :class:`Known` for an id the store does not keep now, with the version
        it saw acknowledged if it kept the id before (see :meth:`_keep`)."""
        known = self._derive(key)
        acked = self._let_go.get(sid)
        if acked is not None:
            known.acked = acked
        return known

    def _keep(self, sid: str, known: Known) -> None:
        """Keep ``known`` for ``sid`` as the most recent: at most ``_VERIFIED_MAX`` ids,
        the least recently written or judged go first (a session in use stays known, so
        its acknowledged version keeps guarding its reads)."""
        remembered = self._known
        if sid in remembered:
            remembered.pop(sid, None)  # None: a racing thread took it
        elif len(remembered) >= _VERIFIED_MAX:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # racing threads
                oldest = next(iter(remembered))
                acked = remembered.pop(oldest).acked
                if acked is not None:  # keep guarding its reads, with less memory
                    let_go = self._let_go
                    if len(let_go) >= _ACKED_MAX:
                        del let_go[next(iter(let_go))]
                    let_go[oldest] = acked
        remembered[sid] = known

    def _remember(self, sid: str, known: Known, blob: bytes, record: Record) -> None:
        """Keep ``known`` for ``sid``, with ``blob`` as a verified copy of ``record``:
        the next read skips the id check, the hashing and ranking, and the MAC if it
        finds the same bytes. Small copies only (see docs/memcache/security.md); the id
        is kept either way, with what the process knows was acknowledged."""
        if len(blob) <= _VERIFIED_BLOB_MAX:
            known.verified = (blob, record)
        else:
            self._remember_large(sid, known, blob, record)
        self._keep(sid, known)

    def _remember_large(self, sid: str, known: Known, blob: bytes, record: Record) -> None:
        """Keep a verified copy over ``_VERIFIED_BLOB_MAX`` bytes, within
        ``_VERIFIED_LARGE_BUDGET`` bytes for all of them: the oldest are let go first."""
        size = len(blob)
        if size > min(_VERIFIED_LARGE_MAX, _VERIFIED_LARGE_BUDGET):
            return
        with self._large_lock:
            large = self._large
            previous = large.pop(sid, None)
            self._large_bytes += size - (previous[1] if previous else 0)
            large[sid] = (known, size)
            while self._large_bytes > _VERIFIED_LARGE_BUDGET:
                oldest = next(iter(large))
                old_known, old_size = large.pop(oldest)
                self._large_bytes -= old_size
                verified = old_known.verified
                if verified is not None and len(verified[0]) > _VERIFIED_BLOB_MAX:
                    old_known.verified = None
            known.verified = (blob, record)

    def _read(
        self, op: Op, key: str, home: list[Reply] | None = None, *, wide: bool = False
    ) -> Read:
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
        once (design notes: docs/memcache/index.md); ``wide``: ``home`` holds the replies
        of :meth:`_wide_read`, which asked every node whose breaker was closed.
        """
        steps = self._read_steps(op, key, home, wide=wide)
        command = (gets(key),)
        try:
            targets = next(steps)
            while True:
                plan = [(node, command) for node in targets]
                targets = steps.send(self._execute(plan, self._deadline(op)))
        except StopIteration as done:
            read: Read = done.value
            return read

    def _read_steps(
        self, op: Op, key: str, home: list[Reply] | None, *, wide: bool
    ) -> Generator[list[Node], list[Reply], Read]:
        """The decisions of :meth:`_read`, with no I/O (both drivers step them): yields
        the nodes to ask for the session's copy in one round, is sent their replies, and
        returns the read."""
        ranked = rank(self._nodes, self._seeds, key)
        read = Read()
        decoded: dict[bytes, Record | EnvelopeError] = {}
        seen: set[Node] = set()
        at = time.perf_counter() - op.start
        replies: list[Reply] = []
        if home is not None:
            settled = not wide
            seen.update(reply.node for reply in home)
            replies = self._gather(read, key, home, decoded)
            if wide:  # record the skipped nodes (and ask any that came back since)
                rest = core.targets(op, ranked, len(ranked), seen, at, read.failed)
                if rest:
                    replies += self._gather(read, key, (yield rest), decoded)
        else:
            settled = self._settled()
            need = self._replicas if settled else len(ranked)
            chosen = core.targets(op, ranked, need, seen, at, read.failed)
            if chosen:
                replies = self._gather(read, key, (yield chosen), decoded)
        if settled and (len(read.copies) < self._replicas or read.mixed):
            rest = core.targets(op, ranked, len(ranked), seen, at, read.failed)
            if rest:
                replies += self._gather(read, key, (yield rest), decoded)
        core.note_read(op, read, replies, decoded, self._replicas)
        return read

    def _gather(
        self,
        read: Read,
        key: str,
        replies: list[Reply],
        decoded: dict[bytes, Record | EnvelopeError],
    ) -> list[Reply]:
        return core.gather(read, replies, decoded, lambda blob: self._verify(blob, key))

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
        if record.ttl > self._settle_after:  # the usual case, lock-free: nothing to raise
            with self._version_lock:  # check and set as one: a racing shorter TTL must not win
                self._settle_after = max(self._settle_after, float(record.ttl))

    def _deadline(self, op: Op | None) -> float:
        """The operation's deadline (``time.perf_counter()`` time): ``operation_timeout``
        after it began (None: from now)."""
        return (time.perf_counter() if op is None else op.start) + self._operation_timeout

    def _expired(self, record: Record) -> bool:
        return core.expired(record, self._clock(), self._absolute_ttl)

    def _renewal_due(self, record: Record) -> bool:
        """Enough of the idle TTL has passed that a read renews it (``renew_after``)."""
        age = self._clock() - record.written
        return age >= self._renew_after * (record.ttl or self._idle_ttl)

    def _effective_ttl(self, record: Record) -> int:
        return core.effective_ttl(record, self._idle_ttl, self._absolute_ttl, self._clock())

    def _repair(self, op: Op, key: str, read: Read, *, renew: bool, now: float) -> None:
        """Rewrite stale, invalid and missing copies with the winner; touch when due."""
        winner = read.winner
        if winner is None:
            return
        record = winner.record
        due = renew and self._renewal_due(record)
        if not (due or read.mixed or read.misses or read.invalid):  # the usual case
            return
        if not record.tombstone and core.expired(record, now, self._absolute_ttl):
            return
        ttl = core.effective_ttl(record, self._idle_ttl, self._absolute_ttl, now)
        plan, repaired = core.repair_plan(key, read, ttl, renew=due)
        if repaired:
            op.flags.add(OutcomeKind.REPAIRED)
        if plan:
            core.note_repairs(op, self._execute(plan, self._deadline(op)))

    def _finish(
        self, op: Op, base: OutcomeKind, served: Node | None, version: int | None
    ) -> Outcome | None:
        """Decide the outcome and report it; None when there is nothing to report."""
        kind = op.kind(base)
        self._metrics.record(op.name, kind, op.results, time.perf_counter() - op.start, op.flags)
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
            version = time.time_ns()  # max() of three, without max()'s argument parsing
            if version <= self._last_version:
                version = self._last_version + 1
            if version <= floor:
                version = floor + 1
            self._last_version = version
            return version

    def _write(self, op: Op, writes: Sequence[Write]) -> None:
        """Store every write on ``need`` answering nodes, falling back down the ranking."""
        while True:
            plan = core.write_round(op, writes, time.perf_counter() - op.start)
            if not plan:
                return
            sent = [(node, [w.command for w in items]) for node, items in plan.items()]
            replies = self._execute(sent, self._deadline(op))
            core.note_writes(op, plan, replies)

    def _encode(self, key: str, record: Record) -> bytes:
        if record.ttl > self._settle_after:  # rare: checked here to spare the call
            self._note_lifetime(record)
        blob = encode(record, key, self._keys)
        if len(blob) > self._max_size:
            raise SessionTooLarge(len(blob), self._max_size)
        return blob

    def _write_outcome(
        self, op: Op, writes: Sequence[Write], version: int | None
    ) -> Outcome | None:
        base = core.write_kind(writes, self._replicas)
        served = writes[0].acks[0] if writes and writes[0].acks else None
        return self._finish(op, base, served, version)

    def _record_write(
        self, key: str, record: Record, verb: Callable[[str, bytes, int], Command]
    ) -> Write:
        """The write of a live ``record`` under ``key`` (``verb`` is ``set_`` or ``add``) to
        its ranked nodes, expiring after the record's effective TTL."""
        blob = self._encode(key, record)
        return self._ranked_write(key, verb(key, blob, self._effective_ttl(record)))

    def _ranked_write(self, key: str, command: Command) -> Write:
        """``command`` to ``replicas`` nodes of ``key``'s ranking, falling back down it."""
        return Write(key, command, rank(self._nodes, self._seeds, key), self._replicas)

    def _acked(self, sid: str, key: str, write: Write, version: int, tombstone: bool) -> Known:
        """Remember that ``write`` was acknowledged (by the nodes in ``write.acks``)."""
        known = self._known.get(sid) or self._known_for(sid, key)
        holders = frozenset(node.address for node in write.acks)
        known.ack(Acked(version, tombstone, holders, self._faults.now()))
        self._keep(sid, known)
        return known

    def _save(self, session: Session, *, must_create: bool, ttl: int | None) -> Outcome | None:
        sid = session._id
        known = self._known.get(sid)
        key = known.key if known is not None else storage_key(self._prefix, sid)
        if ttl is not None:
            session.ttl = ttl
        now = self._clock()
        created = session._created or now
        version = self._next_version(session._version)
        life = session.ttl or self._idle_ttl
        record = new_record((version, self._writer, created, now, life, session._encoded()))
        if life > self._settle_after:  # rare: checked here to spare the call
            self._note_lifetime(record)
        expiry = life  # core.effective_ttl's usual case, without its min()s and max()es
        if self._absolute_ttl is not None:
            left = int(created + self._absolute_ttl - now)
            if left < expiry:
                expiry = left if left > 1 else 1
        if not 0 < life <= core.MAX_TTL:
            expiry = core.effective_ttl(record, self._idle_ttl, self._absolute_ttl, now)
        command = store_command(self._keys, key, record, expiry, must_create)  # signed in C
        blob = command.value
        assert blob is not None
        if len(blob) > self._max_size:
            raise SessionTooLarge(len(blob), self._max_size)
        op = Op("session.save", key)
        write: Write | None = None
        if not must_create and session._lock is None:
            if known is None:
                known = self._known_for(sid, key)
            if not known.strays:
                write = self._home_write(op, known, command)
                if write is None:  # every home node stored it: the usual save
                    home = known.home
                    if self._on_outcome is None:  # an OK save is silent: count it
                        elapsed = time.perf_counter() - op.start
                        self._metrics.record(op.name, _OK, op.results, elapsed)
                        outcome = None
                    else:
                        outcome = self._finish(op, OutcomeKind.OK, home[0], version)
                    self._saved(session, known, blob, record, version, created, home)
                    return outcome
        if write is None:
            write = self._ranked_write(key, command)
        self._write(op, [write])
        if write.acks and not must_create:
            self._overwrite_strays(op, sid, write)
            home = write.ranked[: self._replicas]
            if any(node not in write.acks for node in home):  # a failover write
                copy = add(key, blob, command.ttl)
                self._handoff.hint(write, home, copy)
        if write.taken:
            self._rollback(op, key, write.acks)
            raise SessionExists(f"session id already in use (key ...{key[-12:]})")
        if session._lock is not None:
            self._unlock(session, op)
        outcome = self._write_outcome(op, [write], version)
        if write.acks:
            known = self._known.get(sid) or self._known_for(sid, key)
            self._saved(session, known, blob, record, version, created, write.acks)
        return outcome

    def _home_write(self, op: Op, known: Known, command: Command) -> Write | None:
        """The usual save's one round, kept short as :meth:`_home_read` is: ``command``
        to every home node when their breakers are closed. None when each stored it
        (recorded in ``op`` as the general path records it); else the :class:`Write`
        with this round noted, for :meth:`_write` to go on from (falling back down the
        ranking exactly as if it had sent this round itself)."""
        home = known.home
        for node in home:
            if node.breaker.state is not _CLOSED:
                return self._ranked_write(known.key, command)
        began = time.perf_counter()
        answers = self._stored_round(known.transports, command, op.start + self._operation_timeout)
        if answers is True:
            elapsed = time.perf_counter() - began
            for node in home:
                node.breaker.success()
                op.results.append((node.address, command.name, _STORED, elapsed, ""))
            return None
        assert isinstance(answers, list)
        write = self._ranked_write(known.key, command)
        write.consulted.update(home)
        replies = settle([(node, (command,)) for node in home], answers, began)
        core.note_writes(op, {node: [write] for node in home}, replies)
        return write

    def _saved(
        self,
        session: Session,
        known: Known,
        blob: bytes,
        record: Record,
        version: int,
        created: float,
        holders: Sequence[Node],
    ) -> None:
        """A save acknowledged by ``holders``: the session is clean at ``version``, and
        the store keeps the copy it wrote (ours: no MAC check needed) as acknowledged."""
        session.new = False
        session.modified = False
        session._version = version
        session._created = created
        addresses = known.homes if holders is known.home else frozenset(n.address for n in holders)
        known.ack(new_acked((version, False, addresses, self._faults.now())))
        self._remember(session._id, known, blob, record)  # keeps known

    def _overwrite_strays(self, op: Op, sid: str, write: Write) -> None:
        """Write the saved copy over the copies the last read found below home too: a
        process that reads its own older copy there while home cannot answer serves it
        as the copy it saw acknowledged (``core.judge``); this way it finds this one."""
        stray = self._stray_write(sid, write)
        if stray is not None:
            self._write(op, [stray])
            write.acks.extend(stray.acks)

    def _stray_write(self, sid: str, write: Write) -> Write | None:
        """The write of a saved copy over the strays the last read of ``sid`` found
        that ``write`` did not reach (None: none); they are forgotten (no I/O)."""
        known = self._known.get(sid)
        if known is None or not known.strays:
            return None
        acked = {node.address for node in write.acks}
        nodes = [self._by_address[a] for a in known.strays if a not in acked]
        known.strays = frozenset()
        return Write(write.key, write.command, nodes, len(nodes)) if nodes else None

    def _hint_home(self, write: Write) -> None:
        """After a save acknowledged below home: an ``add`` of its copy for each home node
        it skipped, handed over when that node answers (see ``Handoff.hint``). The async
        driver's save calls it; the sync save does the same inline (its fast path)."""
        home = write.ranked[: self._replicas]
        if any(node not in write.acks for node in home):  # a failover write
            assert write.command.value is not None
            copy = add(write.key, write.command.value, write.command.ttl)
            self._handoff.hint(write, home, copy)

    def _rollback(self, op: Op, key: str, nodes: Sequence[Node]) -> None:
        if nodes:
            # From now: the copies an add left must go even if the save ran late.
            plan = [(node, (delete(key),)) for node in nodes]
            for reply in self._execute(plan, self._deadline(None)):
                status = NodeStatus.DELETED if reply.failure is None else NodeStatus.ERROR
                op.results.append((reply.node.address, "delete", status, reply.elapsed, ""))

    def _tombstone_write(self, key: str, floor: int, ttl: int | None) -> tuple[Write, int]:
        """A tombstone for ``key`` on every node: a failover write may have left a copy
        on any of them, and a copy the tombstone misses would come back once the home
        nodes lose theirs. It lives at least as long as any copy it replaces."""
        now = self._clock()
        version = self._next_version(floor)
        life = max(ttl or self._idle_ttl, self._idle_ttl)
        record = Record(version, self._writer, now, now, life, None)
        blob = self._encode(key, record)
        ranked = rank(self._nodes, self._seeds, key)
        return Write(key, set_(key, blob, life), ranked, len(ranked)), version

    def _tombstone(
        self, sid: str, floor: int, ttl: int | None, session: Session | None
    ) -> Outcome | None:
        key = storage_key(self._prefix, sid)
        op = Op("session.destroy", key)
        write, version = self._tombstone_write(key, floor, ttl)
        self._write(op, [write])
        self._handoff.hint(write)
        if write.acks:
            self._acked(sid, key, write, version, True)
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
        op = Op("session.regenerate", new_key)
        self._write(op, writes)
        # The old id dies only once the data is safe under the new one.
        if not session.new and writes[0].acks:
            tomb, tomb_version = self._tombstone_write(old_key, session.version, session.ttl)
            writes.append(tomb)
            self._write(op, [tomb])
            self._handoff.hint(tomb)
            if tomb.acks:
                self._acked(session.id, old_key, tomb, tomb_version, True)
        if writes[0].acks:
            self._acked(new_id, new_key, writes[0], version, False)
            self._unlock(session, op)
            session._id = new_id
            session._version = version
            session._created = now
            session.new = False
            session.modified = False
        return self._write_outcome(op, writes, version)

    # -- locking -------------------------------------------------------------------

    def _lock(self, op: Op, key: str) -> _Lock | None:
        """Take the session's lock: carry out the steps of a :class:`LockAttempt` (the
        decisions, in ``_locks``) until it is held or given up."""
        attempt = LockAttempt(
            op,
            key,
            rank(self._nodes, self._seeds, key),
            ttl=self._lock_ttl,
            timeout=self._lock_timeout,
            poll=self._lock_poll,
            now=time.monotonic(),
            abandoned=self._handoff.abandoned,
        )
        step = attempt.next_step(time.perf_counter() - op.start)
        while True:
            if step.step is Step.SEND:
                assert step.node is not None
                assert step.command is not None
                (reply,) = self._execute([(step.node, (step.command,))], self._deadline(op))
                step = attempt.replied(reply, time.monotonic())
                for node, token in attempt.abandon:  # may land when the node answers again
                    self._handoff.abandon(node, attempt.key, token, self._lock_ttl)
                attempt.abandon.clear()
            elif step.step is Step.CLEAR:
                assert step.node is not None
                gone = self._handoff.clear_lock(step.node, attempt.key, step.token)
                at = time.perf_counter() - op.start
                step = attempt.cleared(step.node, gone, at, time.monotonic())
            elif step.step is Step.WAIT:
                time.sleep(step.delay)
                step = attempt.next_step(time.perf_counter() - op.start)
            elif step.step is Step.LOCKED:
                assert step.node is not None
                return _Lock(step.node.address, attempt.key, time.monotonic())
            else:
                return None

    def _unlock(self, session: Session, op: Op | None) -> None:
        lock, session._lock = session._lock, None
        if lock is not None:
            self._unlock_key(lock, op)

    def _unlock_key(self, lock: _Lock, op: Op | None = None) -> None:
        node = self._by_address.get(lock.node)
        plan = unlock_plan(node, lock.key, lock.acquired, time.monotonic(), self._lock_ttl)
        if not plan:
            return
        # From now, not from the operation's start: a late save still frees its lock.
        (reply,) = self._execute(plan, self._deadline(None))
        if op is not None:
            status = NodeStatus.DELETED if reply.failure is None else NodeStatus(reply.failure.kind)
            op.results.append((reply.node.address, "unlock", status, reply.elapsed, ""))
