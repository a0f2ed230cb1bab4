"""The core's writes, as steps (``_steps``): save, destroy (a tombstone on every node),
regenerate, and the rounds that store a write on enough nodes."""

from __future__ import annotations

import time
from collections.abc import Sequence

from . import _core as core
from ._breaker import BreakerState
from ._core import Acked, Known, Op, Write
from ._envelope import Record
from ._errors import InvalidSessionId, SessionExists
from ._ids import is_valid_session_id, new_session_id, storage_key
from ._machine_lock import Locking
from ._node import Node
from ._options import check_ttl
from ._outcome import NodeStatus, Outcome, OutcomeKind
from ._session import Session
from ._steps import HomeStore, Round, Steps
from ._wire import Command, add, delete, set_

__all__ = ["Writing", "check_id"]


def check_id(session: Session) -> None:
    """Refuse a session whose id this store could not have issued."""
    if not is_valid_session_id(session.id):
        raise InvalidSessionId(
            "the session's id does not have the shape of one this store issues "
            "(use store.new_session() or new_session_id())"
        )


class Writing(Locking):
    """Write steps over the store's state."""

    def check_save(self, session: Session, ttl: int | None) -> None:
        """What ``save`` refuses before any I/O: a malformed id, a bad ``ttl``."""
        sid = session._id
        if type(sid) is not str or sid not in self._known:  # a kept id was checked
            check_id(session)
        if ttl is not None:
            check_ttl(ttl)

    def _write(self, op: Op, writes: Sequence[Write]) -> Steps[None]:
        """Store every write on ``need`` answering nodes, falling back down the ranking."""
        while True:
            plan = core.write_round(op, writes, time.perf_counter() - op.start)
            if not plan:
                return
            sent = [(node, [w.command for w in items]) for node, items in plan.items()]
            replies = yield Round(sent, self.deadline(op))
            core.note_writes(op, plan, replies)

    def save(self, session: Session, must_create: bool, ttl: int | None) -> Steps[Outcome | None]:
        """Write the session to its replicas (see ``MemcacheSessionStore.save``). The
        session changes only once the write went out: a save a driver abandons halfway
        leaves it modified, at its old version."""
        sid = session._id
        known = self._known.get(sid)
        key = known.key if known is not None else storage_key(self._prefix, sid)
        now = self._clock()
        created = session._created or now
        version = self._next_version(session._version)
        life = ttl or session.ttl or self._idle_ttl
        record = Record(version, self._writer, created, now, life, session._encoded())
        blob = self._encode(key, record)
        expiry = core.effective_ttl(record, self._idle_ttl, self._absolute_ttl, now)
        command = (add if must_create else set_)(key, blob, expiry)
        op = Op("session.save", key)
        write: Write | None = None
        if not must_create and session._lock is None:
            if known is None:
                known = self._known_for(sid, key)
            if not known.strays:
                write = yield from self._home_write(op, known, command)
                if write is None:  # every home node stored it: the usual save
                    if ttl is not None:
                        session.ttl = ttl
                    home = known.home
                    if self._on_outcome is None:  # an OK save is silent: count it
                        elapsed = time.perf_counter() - op.start
                        self._metrics.record(op.name, OutcomeKind.OK, op.results, elapsed)
                        outcome = None
                    else:
                        outcome = self._finish(op, OutcomeKind.OK, home[0], version)
                    self._saved(session, known, blob, record, version, created, home)
                    return outcome
        if write is None:
            write = self._ranked_write(key, command)
        yield from self._write(op, [write])
        if ttl is not None:  # kept once the write went out
            session.ttl = ttl
        if write.acks and not must_create:
            yield from self._overwrite_strays(op, sid, write)
            home = write.ranked[: self._replicas]
            if any(node not in write.acks for node in home):  # a failover write
                copy = add(key, blob, command.ttl)
                self._handoff.hint(write, home, copy)
        if write.taken:
            yield from self._rollback(op, key, write.acks)
            raise SessionExists(f"session id already in use (key ...{key[-12:]})")
        if session._lock is not None:
            yield from self.unlock(session, op)
        outcome = self._write_outcome(op, [write], version)
        if write.acks:
            known = self._known.get(sid) or self._known_for(sid, key)
            self._saved(session, known, blob, record, version, created, write.acks)
        return outcome

    def _home_write(self, op: Op, known: Known, command: Command) -> Steps[Write | None]:
        """The usual save's one round (``HomeStore``), kept short as the home read is:
        ``command`` to every home node when their breakers are closed. None when each
        stored it (recorded in ``op`` as the general path records it); else the
        :class:`Write` with this round noted, for :meth:`_write` to go on from (falling
        back down the ranking exactly as if it had sent this round itself)."""
        home = known.home
        for node in home:
            if node.breaker.state is not BreakerState.CLOSED:
                return self._ranked_write(known.key, command)
        began = time.perf_counter()
        deadline = op.start + self._operation_timeout
        answers = yield HomeStore(home, known.transports, command, deadline)
        if answers is True:
            elapsed = time.perf_counter() - began
            for node in home:
                node.breaker.success()
                op.results.append((node.address, command.name, NodeStatus.STORED, elapsed, ""))
            return None
        write = self._ranked_write(known.key, command)
        write.consulted.update(home)
        core.note_writes(op, {node: [write] for node in home}, answers)
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
        known.ack(Acked(version, False, addresses, self._faults.now()))
        self._remember(session._id, known, blob, record)  # keeps known

    def _overwrite_strays(self, op: Op, sid: str, write: Write) -> Steps[None]:
        """Write the saved copy over the copies the last read found below home too: a
        process that reads its own older copy there while home cannot answer serves it
        as the copy it saw acknowledged (``core.judge``); this way it finds this one."""
        stray = self._stray_write(sid, write)
        if stray is not None:
            yield from self._write(op, [stray])
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

    def _rollback(self, op: Op, key: str, nodes: Sequence[Node]) -> Steps[None]:
        if nodes:
            # From now: the copies an add left must go even if the save ran late.
            plan = [(node, (delete(key),)) for node in nodes]
            for reply in (yield Round(plan, self.deadline(None))):
                status = NodeStatus.DELETED if reply.failure is None else NodeStatus.ERROR
                op.results.append((reply.node.address, "delete", status, reply.elapsed, ""))

    def tombstone(
        self, sid: str, floor: int, ttl: int | None, session: Session | None
    ) -> Steps[Outcome | None]:
        """Destroy the stored session ``sid``: a tombstone on every node (hinted to
        those it missed), then the session's lock released."""
        key = storage_key(self._prefix, sid)
        op = Op("session.destroy", key)
        write, version = self._tombstone_write(key, floor, ttl)
        yield from self._write(op, [write])
        self._handoff.hint(write)
        if write.acks:
            self._acked(sid, key, write, version, True)
        if session is not None and session._lock is not None:
            yield from self.unlock(session, op)
        return self._write_outcome(op, [write], version)

    def regenerate(self, session: Session) -> Steps[Outcome | None]:
        """Give the session a new id: its data under the new id first, then a tombstone
        for the old one (the old id dies only once the data is safe)."""
        old_key = storage_key(self._prefix, session.id)
        new_id = new_session_id()
        new_key = storage_key(self._prefix, new_id)
        now = self._clock()
        version = self._next_version(session.version)
        ttl = session.ttl or self._idle_ttl
        record = Record(version, self._writer, now, now, ttl, session._encoded())
        writes = [self._record_write(new_key, record, set_)]
        op = Op("session.regenerate", new_key)
        yield from self._write(op, writes)
        if not session.new and writes[0].acks:
            tomb, tomb_version = self._tombstone_write(old_key, session.version, session.ttl)
            writes.append(tomb)
            yield from self._write(op, [tomb])
            self._handoff.hint(tomb)
            if tomb.acks:
                self._acked(session.id, old_key, tomb, tomb_version, True)
        if writes[0].acks:
            self._acked(new_id, new_key, writes[0], version, False)
            yield from self.unlock(session, op)
            session._id = new_id
            session._version = version
            session._created = now
            session.new = False
            session.modified = False
        return self._write_outcome(op, writes, version)
