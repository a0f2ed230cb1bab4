"""The core's reads, as steps (``_steps``): start, exists, the read's rounds and its
judging and repairs; and :class:`StoreCore`, the whole sans-IO core both drivers hold."""

from __future__ import annotations

from . import _core as core
from ._breaker import BreakerState
from ._core import Acked, Known, Op, Read
from ._envelope import EnvelopeError, Record
from ._ids import is_valid_session_id, storage_key
from ._machine_wide import WideReading
from ._node import Node, Reply
from ._outcome import NodeStatus, Outcome, OutcomeKind
from ._placement import rank
from ._session import Session, _Lock
from ._steps import ROUND, Steps
from ._wire import gets

__all__ = ["StoreCore"]

_CLOSED = BreakerState.CLOSED  # one Enum lookup, not one per node per read (3.11)


class Reading(WideReading):
    """Read steps over the store's state."""

    def home_known(self, sid: str | None) -> Known | None:
        """The usual read's first half, no I/O and no generator (every request pays
        it): the :class:`Known` of ``sid`` when ``start`` may ask its home nodes alone
        in one round now (no locking, the process or this session settled, every home
        breaker closed). The driver reads ``known.command`` from ``known.home`` and
        hands an agreed copy to :meth:`home_session`, or the replies to :meth:`start`.
        None: :meth:`start`'s steps do the whole read."""
        if self._locking or type(sid) is not str:
            return None
        known = self._known.get(sid)  # an id read or written before: checked, hashed
        if known is None:
            if not is_valid_session_id(sid):
                return None
            known = self._known_for(sid, storage_key(self._prefix, sid))
        if not self._reads_home(known):
            return None
        for node in known.home:
            if node.breaker.state is not _CLOSED:
                return None
        return known

    def home_session(self, sid: str, known: Known, began: float, found: bytes) -> Session | None:
        """The usual read's second half: every home node answered ``found``. The session
        when that copy settles the read (see :meth:`_home_record`), else None: the
        driver runs :meth:`start` (with no replies: it asks again)."""
        done = self._ticks()
        for node in known.home:
            node.breaker.success()
        record = self._home_record(sid, known, began, found, done)
        return None if record is None else self._loaded(sid, record)

    def start(
        self,
        sid: str | None,
        held: list[_Lock] | None = None,
        *,
        began: float | None = None,
        home: list[Reply] | None = None,
        wide: bool = False,
    ) -> Steps[tuple[Session, Outcome | None]]:
        """Load the session ``sid`` (see ``MemcacheSessionStore.start``): the session
        and the outcome to report. ``began``: the driver read the home nodes at that
        time (:meth:`home_known`), and ``home`` holds their replies (None: start over);
        with ``wide``, ``home`` holds the replies of the wide read's nodes instead
        (:meth:`read_plan`). With locking, the lock once taken is appended to
        ``held`` too, for a driver whose caller never gets the session to release it."""
        if type(sid) is not str:
            return self.new_session(), None
        known = self._known.get(sid)
        if known is not None:
            key = known.key
        elif is_valid_session_id(sid):
            key = storage_key(self._prefix, sid)
        else:
            return self.new_session(), None
        if began is None:
            began = self._ticks()
            if not self._locking and not self._reads_home(known or self._known_for(sid, key)):
                # After a fault: every node whose breaker is closed, in one round.
                wide = True
                known = known or self._known_for(sid, key)
                settled = yield from self._wide_read(sid, known, began)
                if isinstance(settled, Record):
                    return self._loaded(sid, settled), None
                home = settled  # None: start over; else the replies, which settle nothing
        op = Op("session.start", key, began)
        lock: _Lock | None = None
        if self._locking:
            lock = yield from self.lock(op, key)
            if lock is not None and held is not None:
                held.append(lock)
        read = yield from self._read(op, key, home, wide=wide)
        found_copy, outcome = yield from self._conclude(op, sid, key, read, renew=True)
        if found_copy is None:
            session = self.new_session()
            # The caller's id was unknown: never adopt it (session fixation).
            if lock is not None:
                if held is not None:
                    held.clear()
                yield from self.unlock_key(lock)
        else:
            session = self._loaded(sid, found_copy.record)
            session._lock = lock
        return session, outcome

    def exists(self, sid: str) -> Steps[tuple[core.Copy | None, Outcome | None]]:
        """Read ``sid`` whole without renewing it: the live copy found (or None) and the
        outcome to report (``exists``, ``expires_in``)."""
        key = storage_key(self._prefix, sid)
        op = Op("session.exists", key, self._ticks())
        read = yield from self._read(op, key)
        return (yield from self._conclude(op, sid, key, read, renew=False))

    def expires_in(self, record: Record) -> int:
        """Seconds until ``record`` expires: what is left of its idle lifetime since it
        was written, capped by the absolute lifetime; at least 1 (no I/O)."""
        now = self._clock()
        left = record.written + (record.ttl or self._idle_ttl) - now
        absolute = self._absolute_ttl
        if absolute is not None:
            left = min(left, record.created + absolute - now)
        return max(int(left), 1)

    # -- the fast reads --------------------------------------------------------------

    def _home_record(
        self, sid: str, known: Known, began: float, found: bytes, done: float
    ) -> Record | None:
        """What the home read concludes when every home node answered ``found`` (no
        I/O): the session's record when it is a valid live copy, due no renewal and not
        older than a copy this process saw acknowledged (reported only to
        ``on_outcome``: an OK read is silent); else None (rare: :meth:`_read` simply
        asks again)."""
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

    # -- the whole read ----------------------------------------------------------------

    def _read(
        self, op: Op, key: str, home: list[Reply] | None = None, *, wide: bool = False
    ) -> Steps[Read]:
        """Ask the session's home nodes, and every other node whose breaker allows it
        unless the home nodes settle the read. ``home``: the home nodes' replies, when
        the home read already asked them.

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
        ranked = rank(self._nodes, self._seeds, key)
        read = Read()
        decoded: dict[bytes, Record | EnvelopeError] = {}
        seen: set[Node] = set()
        at = self._ticks() - op.start
        replies: list[Reply] = []
        command = (gets(key),)
        deadline = self.deadline(op)
        if home is not None:
            settled = not wide
            seen.update(reply.node for reply in home)
            replies = self._gather(read, key, home, decoded)
            if wide:  # record the skipped nodes (and ask any that came back since)
                rest = core.targets(op, ranked, len(ranked), seen, at, read.failed)
                if rest:
                    answers = yield (ROUND, [(node, command) for node in rest], deadline)
                    replies += self._gather(read, key, answers, decoded)
        else:
            settled = self._settled()
            need = self._replicas if settled else len(ranked)
            chosen = core.targets(op, ranked, need, seen, at, read.failed)
            if chosen:
                answers = yield (ROUND, [(node, command) for node in chosen], deadline)
                replies = self._gather(read, key, answers, decoded)
        if settled and (len(read.copies) < self._replicas or read.mixed):
            rest = core.targets(op, ranked, len(ranked), seen, at, read.failed)
            if rest:
                answers = yield (ROUND, [(node, command) for node in rest], deadline)
                replies += self._gather(read, key, answers, decoded)
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

    def _conclude(
        self, op: Op, sid: str, key: str, read: Read, *, renew: bool
    ) -> Steps[tuple[core.Copy | None, Outcome | None]]:
        """Judge a read (:func:`core.judge`), carry out the repairs it allows, remember
        what the process now knows of the session, and report the outcome."""
        known, judgement, now = self._judge_read(sid, key, read)
        winner = read.winner
        if judgement.repair:
            yield from self._repair(
                op, key, read, renew=renew and judgement.found is not None, now=now
            )
        if judgement.bury:
            write, _ = self._tombstone_write(key, winner.record.version if winner else 0, None)
            yield from self._write(op, [write])
            self._handoff.hint(write)
            if write.acks:
                op.flags.add(OutcomeKind.REPAIRED)
        return judgement.found, self._concluded(op, sid, known, read, judgement)

    def _judge_read(self, sid: str, key: str, read: Read) -> tuple[Known, core.Judgement, float]:
        """The judgement of a read, and what it makes the process forget."""
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

    def _repair(self, op: Op, key: str, read: Read, *, renew: bool, now: float) -> Steps[None]:
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
            core.note_repairs(op, (yield (ROUND, plan, self.deadline(op))))


class StoreCore(Reading):
    """The store's sans-IO core: its state and every operation as steps (``_steps``).

    A driver builds one (see ``MemcacheSessionStore`` and ``AsyncMemcacheSessionStore``)
    and, for each call, runs the operation's generator: it carries out each command
    (``_steps``: a round, the usual save's home round, a wait), sends the answer back,
    and gets the result when the generator returns. The usual read is two plain calls
    around one round (:meth:`home_known`, :meth:`home_session`). The operations: :meth:`start`,
    :meth:`exists`, :meth:`save`, :meth:`tombstone` (destroy, delete),
    :meth:`regenerate`, :meth:`lock`, :meth:`unlock`, :meth:`unlock_key`,
    :meth:`hand_over`.
    """
