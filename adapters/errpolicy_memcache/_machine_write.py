"""The core's writes, as steps (``_steps``): save, destroy (a tombstone on every node),
regenerate, and the rounds that store a write on enough nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from . import _core as core
from ._breaker import BreakerState
from ._core import Known, Op, Write
from ._envelope import Record
from ._errors import InvalidSessionId, SessionExists, SessionTooLarge
from ._ids import is_valid_session_id, new_session_id, storage_key
from ._machine import _VERIFIED_BLOB_MAX
from ._machine_lock import Locking
from ._node import Node, Reply
from ._options import check_ttl
from ._outcome import NodeStatus, Outcome, OutcomeKind
from ._sealed import new_acked, new_record, save_command
from ._session import Session
from ._steps import HOME_STORE, ROUND, Steps
from ._wire import Command, add, delete, set_

__all__ = ["Saving", "Writing", "check_id"]

#: What :meth:`Writing.prepare_save` decided: the Known to store at home in one round
#: (or None), the command, the operation (None for the home round: made only if needed),
#: the Known, the record, its bytes, ``created``, and when the save began.
Saving: TypeAlias = tuple[
    Known | None, Command, Op | None, Known | None, Record, bytes, float, float
]

# The usual save's members, looked up once: on 3.11 each Enum.MEMBER goes through
# EnumType.__getattr__'s hook (about 600 instructions).
STORED = NodeStatus.STORED
CLOSED = BreakerState.CLOSED
OK = OutcomeKind.OK


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
            plan = core.write_round(op, writes, self._ticks() - op.start)
            if not plan:
                return
            sent = [(node, [w.command for w in items]) for node, items in plan.items()]
            replies = yield (ROUND, sent, self.deadline(op))
            core.note_writes(op, plan, replies)

    def prepare_save(self, session: Session, must_create: bool, ttl: int | None) -> Saving:
        """What a save writes (no I/O: the version, the signed record, the command),
        and the :class:`Known` whose home nodes the driver may store it on in one round
        now (``saving[0]``; None: :meth:`save`'s steps do it all). Every save pays
        this: no generator here (see docs/design.md)."""
        start = self._ticks()
        sid = session._id
        known = self._known.get(sid)
        key = known.key if known is not None else storage_key(self._prefix, sid)
        now = self._clock()
        created = session._created or now
        version = self._next_version(session._version)
        life = ttl or session.ttl or self._idle_ttl
        payload = session._payload  # Session._encoded's usual case: data never read
        if payload is None or session._data_cache is not None:
            payload = session._encoded()
        expiry = life  # core.effective_ttl's usual case, without its min()s and max()es
        if self._absolute_ttl is not None:
            left = int(created + self._absolute_ttl - now)
            if left < expiry:
                expiry = left if left > 1 else 1
        if life > self._settle_after or not 0 < life <= core.MAX_TTL:  # rare
            record = new_record((version, self._writer, created, now, life, payload))
            if life > self._settle_after:
                self._note_lifetime(record)
            if not 0 < life <= core.MAX_TTL:
                expiry = core.effective_ttl(record, self._idle_ttl, self._absolute_ttl, now)
        record, command = save_command(  # the record and its command made and signed in C
            self._keys, key, version, self._writer, created, now, life, payload, expiry, must_create
        )
        blob = command.value
        assert blob is not None
        if len(blob) > self._max_size:
            raise SessionTooLarge(len(blob), self._max_size)
        home: Known | None = None
        if not must_create and session._lock is None:
            if known is None:
                known = self._known_for(sid, key)
            if not known.strays:
                home = known
                for node in known.home:
                    if node.breaker.state is not CLOSED:
                        home = None
                        break
        op = Op("session.save", key, start) if home is None else None
        return (home, command, op, known, record, blob, created, start)

    def home_saved(
        self, session: Session, ttl: int | None, saving: Saving, began: float
    ) -> Outcome | None:
        """The usual save's end: every home node stored the command (no I/O). What
        :meth:`_saved` does, inline: this runs on every save."""
        known, command, _, _, record, blob, created, start = saving
        assert known is not None
        home = known.home
        for node in home:
            node.breaker.success()
        if ttl is not None:
            session.ttl = ttl
        version = record.version
        if self._on_outcome is None:  # an OK save is silent: count it
            self._metrics.saved(known.homes, self._ticks() - start)
            outcome = None
        else:
            op = Op("session.save", known.key, start)
            elapsed = self._ticks() - began
            for node in home:
                op.results.append((node.address, command.name, STORED, elapsed, ""))
            outcome = self._finish(op, OK, home[0], version)
        session.new = False
        session.modified = False
        session._version = version
        session._created = created
        acked = known.acked  # Known.ack's rule for a copy that is no tombstone, inline
        if acked is None or not (acked.tombstone or acked.version > version):
            known.acked = new_acked((version, False, known.homes, self._faults.now()))
        sid = session._id
        remembered = self._known
        if len(blob) <= _VERIFIED_BLOB_MAX and sid in remembered:  # _remember, inline
            known.verified = (blob, record)
            remembered.pop(sid, None)  # None: a racing thread took it
            remembered[sid] = known  # the most recently written
        else:
            self._remember(sid, known, blob, record)  # keeps known
        return outcome

    def save(
        self,
        session: Session,
        must_create: bool,
        ttl: int | None,
        saving: Saving | None = None,
        answers: list[Reply] | None = None,
    ) -> Steps[Outcome | None]:
        """Write the session to its replicas (see ``MemcacheSessionStore.save``). The
        session changes only once the write went out: a save a driver abandons halfway
        leaves it modified, at its old version. ``saving``: :meth:`prepare_save`'s (made
        here if None); ``answers``: the replies of the driver's home round when not
        every home node stored it (the steps go on from them)."""
        if saving is None:
            saving = self.prepare_save(session, must_create, ttl)
            if saving[0] is not None:  # the usual save's round, as a driver sends it
                began = self._ticks()
                stored = yield (HOME_STORE, saving[0], saving[1])
                if stored is True:
                    return self.home_saved(session, ttl, saving, began)
                answers = stored
        home_known, command, op, _, record, blob, created, start = saving
        sid = session._id
        key = command.key
        version = record.version
        if op is None:  # the home round did not store it everywhere
            op = Op("session.save", key, start)
        write: Write | None = None
        if answers is not None:
            # Go on from the home round as if the general path had sent it itself.
            assert home_known is not None
            write = self._ranked_write(key, command)
            write.consulted.update(home_known.home)
            core.note_writes(op, {node: [write] for node in home_known.home}, answers)
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
            for reply in (yield (ROUND, plan, self.deadline(None))):
                status = NodeStatus.DELETED if reply.failure is None else NodeStatus.ERROR
                op.results.append((reply.node.address, "delete", status, reply.elapsed, ""))

    def tombstone(
        self, sid: str, floor: int, ttl: int | None, session: Session | None
    ) -> Steps[Outcome | None]:
        """Destroy the stored session ``sid``: a tombstone on every node (hinted to
        those it missed), then the session's lock released."""
        key = storage_key(self._prefix, sid)
        op = Op("session.destroy", key, self._ticks())
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
        op = Op("session.regenerate", new_key, self._ticks())
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
