"""The store's sans-IO core: the state one process keeps, and what it does with it.

:class:`State` holds what a store keeps between operations (options, nodes and their
breakers, the version clock, what the process knows of each id, the handoff, the
fault clock, the metrics) and the helpers that use it with no I/O. The operations are
step generators (``_steps``) on its subclasses: :mod:`._machine_lock` (locks, handover),
:mod:`._machine_write` (save, destroy, regenerate), :mod:`._machine_read` (start,
exists, and :class:`StoreCore`, the whole core). Each driver (``_store``, ``_aio_store``)
holds one :class:`StoreCore` and carries its commands out; no socket, no sleep here.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence

import errpolicy

from . import _core as core
from ._breaker import CircuitBreaker, FaultClock
from ._clocks import Clocks
from ._core import Acked, Known, Op, Write
from ._envelope import EnvelopeError, Keyring, Record, decode, encode, normalize_keys
from ._errors import SessionTooLarge
from ._handoff import Handoff
from ._ids import new_session_id
from ._metrics import StoreMetrics, StoreStats
from ._native import speedups
from ._node import Node
from ._options import Options
from ._outcome import Outcome, OutcomeKind, severity_of
from ._placement import node_seed, rank
from ._session import STORED_SLOTS, Session
from ._wire import Command, gets, set_

__all__ = ["LOGGER_NAME", "State"]

LOGGER_NAME = "errpolicy_memcache"
_logger = logging.getLogger(LOGGER_NAME)
_log_direct = errpolicy.log_direct
# Stored sessions made without their __init__ (speedups.slotted), where built.
_slotted: Callable[..., tuple[Session, ...]] | None = None if speedups is None else speedups.slotted

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

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self._numbers = itertools.count(1)
        # Faults are rare: a lock keeps two racing marks apart on a free-threaded build.
        self._numbering = threading.Lock()
        self.marks = 0

    def mark(self) -> None:
        with self._numbering:
            self.marks = next(self._numbers)
        super().mark()


class State:
    """What one store keeps between operations, and the helpers over it (no I/O).

    Built from checked :class:`Options` and the caller's values. It holds the nodes'
    identities and breakers, never their connections (each driver opens its own),
    and reads only the ``clocks`` its driver gives it (:mod:`._clocks`); ``on_open``
    is called when a breaker opens (the driver wakes its prober)."""

    def __init__(
        self,
        options: Options,
        secret_key: str | bytes | Sequence[str | bytes],
        *,
        prefix: str,
        idle_ttl: int,
        absolute_ttl: int | None,
        renew_after: float,
        max_size: int,
        connect_timeout: float,
        timeout: float,
        failure_threshold: int,
        retry_after: float,
        max_retry_after: float,
        locking: bool,
        lock_timeout: float,
        lock_ttl: int,
        lock_poll: float,
        read_all_nodes: bool,
        on_outcome: Callable[[Outcome], None] | None,
        clocks: Clocks,
        on_open: Callable[[], None],
    ) -> None:
        self._keys = Keyring(normalize_keys(secret_key))
        self._replicas = options.replicas
        self._prefix = prefix
        self._idle_ttl = idle_ttl
        self._absolute_ttl = absolute_ttl
        self._renew_after = renew_after
        self._max_size = max_size
        self._locking = locking
        #: True if ``start`` takes the session's lock (the driver keeps it until saved).
        self.locking = locking
        #: Each node's connect and read timeouts (a driver's own connections use them).
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._max_retry_after = max_retry_after
        self._lock_timeout = lock_timeout
        self._lock_ttl = lock_ttl
        self._lock_poll = lock_poll
        self._on_outcome = on_outcome
        self._metrics = StoreMetrics()
        # Each clock bound once: a read costs one attribute lookup (see _clocks).
        self.clocks = clocks
        self._clock = clocks.wall
        self._monotonic = clocks.monotonic
        self._ticks = clocks.ticks
        self._ns = clocks.ns
        self._read_all_nodes = read_all_nodes
        self._operation_timeout = options.operation_timeout
        #: Seconds an operation may take in all (a driver's home rounds use it).
        self.operation_timeout = options.operation_timeout
        self._known: dict[str, Known] = {}
        self._let_go: dict[str, Acked] = {}  # the acked versions of ids no longer known
        # The ids whose kept verified copy is over _VERIFIED_BLOB_MAX, and its size.
        self._large: dict[str, tuple[Known, int]] = {}
        self._large_bytes = 0
        self._large_lock = threading.Lock()
        self._faults = _Faults(clocks.monotonic)
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
                    clocks.monotonic,
                    faults=self._faults,
                    on_open=on_open,
                ),
            )
            for host, port in options.addresses
        ]
        self._seeds = [node_seed(node.address) for node in self._nodes]
        # Each ordered home a read used, numbered (see _route_of).
        self._route_numbers: dict[tuple[Node, ...], int] = {}
        self._routes: list[tuple[Node, ...]] = []
        self._by_address = {node.address: node for node in self._nodes}
        # Tombstones a node missed, locks whose add timed out: handed over when it is back.
        self._handoff = Handoff(
            self._nodes, self._verify, self._operation_timeout, clocks.monotonic, clocks.ticks
        )
        #: The harmless command a prober sends to a node whose breaker is open.
        self.probe = gets(prefix + "probe")

    def __repr__(self) -> str:
        return f"replicas={self._replicas} nodes={self._nodes!r}"

    # -- what a driver reads ---------------------------------------------------------

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in the order given."""
        return tuple(self._nodes)

    @property
    def handoff(self) -> Handoff:
        """What waits for a node that answers again (``hand_over`` steps carry it)."""
        return self._handoff

    @property
    def faults(self) -> FaultClock:
        """The fault clock every breaker marks."""
        return self._faults

    @property
    def known_ids(self) -> Mapping[str, Known]:
        """The ids the process keeps (read only: a driver checks membership)."""
        return self._known

    @property
    def max_size(self) -> int:
        """The ``max_size`` option: the largest record this store writes."""
        return self._max_size

    @property
    def absolute_ttl(self) -> int | None:
        """The ``absolute_ttl`` option."""
        return self._absolute_ttl

    def stats(self) -> StoreStats:
        """What the store counted since it was built (see ``MemcacheSessionStore.stats``)."""
        return self._metrics.snapshot(self._nodes)

    def new_session(self) -> Session:
        """A fresh, empty session with a new id; no I/O."""
        return Session(new_session_id(), new=True, created=self._clock())

    def now(self) -> float:
        """The store's wall clock (the ``clock`` option)."""
        return self._clock()

    def deadline(self, op: Op | None) -> float:
        """The operation's deadline (on the ``ticks`` clock): ``operation_timeout``
        after it began (None: from now)."""
        return (self._ticks() if op is None else op.start) + self._operation_timeout

    # -- what the process knows of each id -------------------------------------------

    def _derive(self, key: str) -> Known:
        """What a read of ``key`` needs: its home nodes (the top ``replicas`` of its
        ranking), their route (see :meth:`route`) and the ``gets`` command."""
        home = rank(self._nodes, self._seeds, key)[: self._replicas]
        return Known(key, home, self._route_of(home), gets(key))

    def _route_of(self, home: list[Node]) -> int:
        """The number of the ordered ``home``: a driver keeps each route's connections
        under it (one list index per read, not a lookup per node)."""
        ordered = tuple(home)
        route = self._route_numbers.get(ordered)
        if route is None:
            with self._version_lock:  # rare (once per ordered home): numbered once
                route = self._route_numbers.get(ordered)
                if route is None:
                    # Its nodes first, then its number: a thread that finds the number
                    # finds the nodes.
                    route = len(self._routes)
                    self._routes.append(ordered)
                    self._route_numbers[ordered] = route
        return route

    def route(self, number: int) -> tuple[Node, ...]:
        """The home nodes, in order, that route ``number`` (``Known.route``) stands for."""
        return self._routes[number]

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

    def _acked(self, sid: str, key: str, write: Write, version: int, tombstone: bool) -> Known:
        """Remember that ``write`` was acknowledged (by the nodes in ``write.acks``)."""
        known = self._known.get(sid) or self._known_for(sid, key)
        holders = frozenset(node.address for node in write.acks)
        known.ack(Acked(version, tombstone, holders, self._faults.now()))
        self._keep(sid, known)
        return known

    # -- records ---------------------------------------------------------------------

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

    def _next_version(self, floor: int) -> int:
        ns = self._ns  # a call of an attribute: LOAD_METHOD would not specialize
        with self._version_lock:
            version = ns()  # max() of three, without max()'s argument parsing
            if version <= self._last_version:
                version = self._last_version + 1
            if version <= floor:
                version = floor + 1
            self._last_version = version
            return version

    def _encode(self, key: str, record: Record) -> bytes:
        if record.ttl > self._settle_after:  # rare: checked here to spare the call
            self._note_lifetime(record)
        blob = encode(record, key, self._keys)
        if len(blob) > self._max_size:
            raise SessionTooLarge(len(blob), self._max_size)
        return blob

    def _expired(self, record: Record) -> bool:
        return core.expired(record, self._clock(), self._absolute_ttl)

    def _renewal_due(self, record: Record) -> bool:
        """Enough of the idle TTL has passed that a read renews it (``renew_after``)."""
        age = self._clock() - record.written
        return age >= self._renew_after * (record.ttl or self._idle_ttl)

    def _effective_ttl(self, record: Record) -> int:
        return core.effective_ttl(record, self._idle_ttl, self._absolute_ttl, self._clock())

    def _loaded(self, sid: str, record: Record) -> Session:
        ttl = None if record.ttl == self._idle_ttl else record.ttl
        payload = record.payload
        if _slotted is not None and payload is not None:  # no __init__ frame: every read
            row = (sid, None, payload, False, False, record.version, record.created, ttl, None)
            return _slotted(Session, STORED_SLOTS, (row,))[0]
        return Session(
            sid, new=False, version=record.version, created=record.created, ttl=ttl, payload=payload
        )

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

    # -- reporting -------------------------------------------------------------------

    def _write_outcome(
        self, op: Op, writes: Sequence[Write], version: int | None
    ) -> Outcome | None:
        base = core.write_kind(writes, self._replicas)
        served = writes[0].acks[0] if writes and writes[0].acks else None
        return self._finish(op, base, served, version)

    def _finish(
        self, op: Op, base: OutcomeKind, served: Node | None, version: int | None
    ) -> Outcome | None:
        """Decide the outcome and report it; None when there is nothing to report."""
        kind = op.kind(base)
        elapsed = self._ticks() - op.start
        self._metrics.record(op.name, kind, op.results, elapsed, op.flags)
        if not severity_of(kind) and self._on_outcome is None:
            return None
        outcome = op.outcome(kind, served, version, elapsed)
        self._emit(outcome)
        return outcome

    def _emit(self, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        level = outcome.level
        if level:
            # Made and handled whatever the logger's level: the guard must see NOTICE
            # records even when the effective level (WARNING by default) drops them.
            _log_direct(
                _logger, level, "%s", (str(outcome),), pathname=__file__, extra={"outcome": outcome}
            )
