"""The core's wide read, in plain calls and as steps (``_steps``): after a fault, and
during an outage, ``start()`` asks every node whose breaker is closed; when their
copies agree it is judged in short (:func:`core.judge_agreed`) and reported without
an :class:`Op`, and anything else goes to the general read (``_machine_read``)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from . import _core as core
from . import _machine
from ._breaker import BreakerState
from ._core import Acked, Known
from ._envelope import Record
from ._ids import is_valid_session_id, storage_key
from ._machine_write import Writing
from ._metrics import FOLD_AT as _FOLD_AT
from ._metrics import StoreMetrics
from ._node import Node, Reply
from ._outcome import _SEVERITY, NodeStatus, OutcomeHead, OutcomeKind, TimedRow, timed_outcome
from ._placement import rank
from ._session import Session
from ._steps import ROUND, Steps

__all__ = ["WideRead", "WideReading"]

#: What :meth:`WideReading.read_plan` gives a driver for a wide read: the session's
#: :class:`Known`, the nodes to ask (breaker closed, in ranking order; the driver
#: talks to them through its own transports), the nodes skipped (breaker open), the
#: fault mark before the round, and how many of the asked nodes must hold the copy
#: (``need`` of ``_transport.wide_gets``).
WideRead = tuple[Known, list[Node], list[Node], int, int]

_CLOSED = BreakerState.CLOSED  # one Enum lookup, not one per node per read (3.11)
_START = "session.start"
_HIT = NodeStatus.HIT
_MISS = NodeStatus.MISS
_SKIPPED = NodeStatus.SKIPPED
_FAILOVER = OutcomeKind.FAILOVER
_OK = OutcomeKind.OK
_FAILED_OVER = frozenset([OutcomeKind.FAILOVER])
_NO_FLAGS: frozenset[OutcomeKind] = frozenset()
_address = attrgetter("address")
_new_acked = tuple.__new__  # Acked without its Python __new__ (a frame per read)
_PATHNAME = _machine.__file__  # the notice's file, as _machine's _emit names it


def _agreed(replies: Sequence[Reply], replicas: int) -> tuple[bytes, int] | None:
    """The copy of a read that every node answered, when the first ``replicas`` replies
    hold the same bytes and the others the same or none, with a bit per reply that
    holds it (the first reply the lowest bit): ``_transport.wide_agreed`` over
    replies."""
    blob: bytes | None = None
    hits = 0
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
        hits |= 1 << index
    return None if blob is None else (blob, hits)


class Pattern:
    """What a served wide read of a session derives from which nodes it asked, which of
    them held the copy (``hits``' bits) and which it skipped, kept on its
    :class:`Known` (``counted``) while the same nodes answer the same way (every read
    of an outage): the ``holders``, their ``addresses``, the ``strays`` (holders
    outside home), the outcome's ``head`` (operation, kind, flags, served node, key),
    its ``rows`` (node, command, status, index of its time) and its ``level``, the
    counters' ``keys`` (outcome, flags, one per node's result), the metrics' ``tally``
    of those keys (None: counted by ``keys``) and the notice's ``text`` (the outcome's
    ``str()``: it shows no times)."""

    __slots__ = (
        "addresses",
        "asked",
        "head",
        "hits",
        "holders",
        "keys",
        "level",
        "rows",
        "skipped",
        "strays",
        "tally",
        "text",
    )

    def __init__(
        self, known: Known, asked: list[Node], hits: int, skipped: list[Node], metrics: StoreMetrics
    ) -> None:
        self.hits = hits
        self.asked = asked
        self.skipped = skipped
        if hits == (1 << len(asked)) - 1:
            holders = asked
        else:
            holders = [node for i, node in enumerate(asked) if hits >> i & 1]
        self.holders = holders
        self.addresses = addresses = frozenset(map(_address, holders))
        self.strays = addresses - known.homes
        kind, flags = (_FAILOVER, _FAILED_OVER) if skipped else (_OK, _NO_FLAGS)
        self.level = _SEVERITY[kind]
        served = holders[0].address if holders else None
        results = [(node.address, _SKIPPED) for node in skipped]
        rows: list[TimedRow] = [(node.address, "-", _SKIPPED, -1) for node in skipped]
        for i, node in enumerate(asked):
            status = _HIT if hits >> i & 1 else _MISS
            results.append((node.address, status))
            rows.append((node.address, "gets", status, i))
        flag_keys = [(_START, flag) for flag in flags]
        self.keys = ((_START, kind), flag_keys, results)
        self.tally = metrics.tally((_START, kind), flag_keys, results)
        self.head: OutcomeHead = (_START, kind, flags, served, known.key[-12:])
        self.rows = tuple(rows)
        self.text = str(timed_outcome(self.head, self.rows, 0.0, [0.0] * len(asked), None, 0.0))


class WideReading(Writing):
    """The wide read over the store's state."""

    def read_plan(self, sid: str | None) -> Known | WideRead | None:
        """How the sync driver reads ``sid`` in plain calls, no generator (every request
        pays it): its :class:`Known` when :meth:`home_known` would give it (the home
        read), a :data:`WideRead` when ``start`` would ask every node whose breaker is
        closed now (the process not settled since a fault, as during an outage): the
        driver reads ``known.command`` from its transports with
        ``_transport.wide_gets`` and hands an agreed copy to :meth:`wide_session`, or
        the replies to :meth:`start` (``wide=True``); None: :meth:`start`'s steps.
        The checks of :meth:`home_known`, which the async driver calls, repeated: one
        call less on the usual read."""
        if self._locking or type(sid) is not str:
            return None
        known = self._known.get(sid)  # an id read or written before: checked, hashed
        if known is None:
            if not is_valid_session_id(sid):
                return None
            known = self._known_for(sid, storage_key(self._prefix, sid))
        # _reads_home, inline (one call, not three): ``mark`` read before the round, as
        # _wide_read does: a fault during it unsettles.
        faults = self._faults
        mark = faults.marks
        if known.settled == mark or (  # faults.quiet_for(), inline
            not self._read_all_nodes and self._monotonic() - faults.at >= self._settle_after
        ):
            for node in known.home:
                if node.breaker._state is not _CLOSED:  # .state without the property's call
                    return None
            return known
        ranked = known.ranked
        if ranked is None:
            ranked = known.ranked = rank(self._nodes, self._seeds, known.key)
        asked: list[Node] = []
        skipped: list[Node] = []
        for node in ranked:
            if node.breaker._state is _CLOSED:  # .state without the property's call
                asked.append(node)
            else:
                skipped.append(node)
        if not asked:
            return None
        return known, asked, skipped, mark, self._replicas

    def wide_session(
        self, sid: str, wide: WideRead, began: float, found: tuple[bytes, int]
    ) -> Session | None:
        """The wide read's second half: every node asked answered, those of ``found``'s
        bits with its bytes (``_transport.wide_gets``), the others a miss. The session
        when that copy settles the read as :meth:`_wide_read` would (reported as it
        reports it), else None: the driver runs :meth:`start` (with no replies: it asks
        again)."""
        done = self._ticks()
        known, asked, skipped, mark, _ = wide
        for node in asked:
            breaker = node.breaker
            if breaker._state is not _CLOSED or breaker._failures:  # success()'s own test
                breaker.success()
        blob, hits = found
        record = self._wide_found(
            sid, known, began, blob, asked, hits, [done - began] * len(asked), skipped, 0.0
        )
        if record is None:
            return None
        if not skipped and not self._read_all_nodes:
            known.settled = mark  # as _settle: every node answered, home holds the newest
        return self._loaded(sid, record)

    def _wide_read(
        self, sid: str, known: Known, began: float
    ) -> Steps[Record | list[Reply] | None]:
        """The read of a process that is not settled (a recent fault, or
        ``read_all_nodes``), kept short as the home read is: every node whose breaker
        is closed, asked in one round. When the first ``replicas`` of them hold the
        same valid live copy and the others the same or none, it is what :meth:`_read`
        would conclude (judged by :func:`core.judge` when a node was skipped, and
        reported as a failover); else the replies, for :meth:`_read`.
        """
        mark = self._faults.marks  # before the round: a fault during it unsettles
        asked, skipped = self._wide_targets(known)
        if not asked:
            return None
        at = self._ticks() - began
        command = (known.command,)
        plan = [(node, command) for node in asked]
        replies = yield (ROUND, plan, began + self._operation_timeout)
        found = self._wide_record(sid, known, began, at, replies, skipped)
        self._settle(known, mark, found, skipped)
        return found

    def _settled(self) -> bool:
        """True if reads may start with the home nodes alone (see :meth:`_read`): the
        process has seen no fault for ``_settle_after`` seconds, and the store is not
        told to read every node."""
        return not self._read_all_nodes and self._faults.quiet_for(self._settle_after)

    def _reads_home(self, known: Known) -> bool:
        """True if a read of ``known`` may start with its home nodes alone: the process
        is settled, or this session was read whole since the last fault."""
        return known.settled == self._faults.marks or self._settled()

    def _settle(
        self, known: Known, mark: int, found: Record | list[Reply], skipped: list[Node]
    ) -> None:
        """After a wide read that began at fault mark ``mark``: when every node answered
        and none holds a copy newer than home's (``found`` is the record), this
        session's reads may ask its home alone until the next fault (docs/design.md,
        "Careful after a fault, per session")."""
        if not skipped and not self._read_all_nodes and type(found) is Record:
            known.settled = mark

    def _wide_targets(self, known: Known) -> tuple[list[Node], list[Node]]:
        """The nodes a wide read asks (breaker closed) and skips, in ranking order."""
        asked: list[Node] = []
        skipped: list[Node] = []
        ranked = known.ranked
        if ranked is None:
            ranked = known.ranked = rank(self._nodes, self._seeds, known.key)
        for node in ranked:
            (asked if node.breaker.state is _CLOSED else skipped).append(node)
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
        """What :meth:`_wide_read` concludes from the ``replies`` of the nodes it asked."""
        found = _agreed(replies, self._replicas)
        if found is None:
            return replies
        asked = [reply.node for reply in replies]
        times = [reply.elapsed for reply in replies]
        record = self._wide_found(sid, known, began, found[0], asked, found[1], times, skipped, at)
        return replies if record is None else record

    def _wide_found(
        self,
        sid: str,
        known: Known,
        began: float,
        blob: bytes,
        asked: list[Node],
        hits: int,
        times: list[float],
        skipped: list[Node],
        at: float,
    ) -> Record | None:
        """What a wide read concludes when every node of ``asked`` answered, those of
        ``hits``' bits with ``blob`` and the others a miss (``times``: each one's
        seconds since ``began``), and the ``skipped`` were skipped ``at`` seconds in:
        the record when it is a valid live copy, due no renewal, not older than a copy
        this process saw acknowledged, and judged ``ok`` (:func:`core.judge_agreed`,
        :func:`core.judge`'s decision in short), reported as a failover when a node was
        skipped; else None (the general read decides)."""
        # The holders, their addresses, the strays and the counters' keys, kept on
        # ``known`` while the same nodes answer the same way (every outage read).
        pattern = known.counted
        if (
            pattern is None
            or pattern.hits != hits
            or pattern.asked != asked
            or pattern.skipped != skipped
        ):
            pattern = known.counted = Pattern(known, asked, hits, skipped, self._metrics)
        holders = pattern.holders
        addresses = pattern.addresses
        verified = known.verified
        if verified is not None and blob == verified[0]:  # these bytes passed the MAC
            record = verified[1]
        else:
            checked = self._verify(blob, known.key)
            if type(checked) is not Record:
                return None
            record = checked
            self._remember(sid, known, blob, record)
        acked = known.acked
        version = record.version
        if acked is not None and (acked.tombstone or acked.version > version):
            return None
        # Not a tombstone, not past its absolute lifetime (_expired), due no renewal
        # (_renewal_due): inline, one clock read.
        now = self._clock()
        absolute = self._absolute_ttl
        if (
            record.payload is None
            or (absolute is not None and now >= record.created + absolute)
            or now - record.written >= self._renew_after * (record.ttl or self._idle_ttl)
        ):
            return None
        # core.judge_agreed, its usual answer first: the checks it starts with passed
        # above, and with a node skipped it serves what _vouches vouches for (one call
        # less per outage read); anything else it decides itself.
        if (
            skipped
            and not core._vouches(
                acked,
                version,
                addresses,
                skipped,
                core._NO_ADDRESSES,  # none refused, as judge_agreed passes
                len(asked) - len(holders),
                self._replicas,
            )
            and not core.judge_agreed(
                version,
                holders,
                addresses,
                len(asked) - len(holders),
                skipped,
                known.home,
                acked,
                self._replicas,
                self._max_retry_after,
                self._settle_after,
            )
        ):
            return None
        # Copies outside home (a failover write left them): the next save writes over them.
        known.strays = pattern.strays
        # known.ack, inline: kept unless a racing thread saw a tombstone or a newer copy.
        current = known.acked
        if current is None or (not current.tombstone and version >= current.version):
            known.acked = _new_acked(Acked, (version, False, addresses, self._monotonic()))
        remembered = self._known  # _keep's usual case inline: an id kept, made the newest
        if remembered.pop(sid, None) is known:
            remembered[sid] = known
        else:
            self._keep(sid, known)
        # Counted and reported as ``_finish`` does for its :class:`Op` (the same counts
        # and outcome), inline: every outage read pays this.
        if skipped or self._on_outcome is not None:
            elapsed = self._ticks() - began
            tally = pattern.tally
            if tally is not None:
                tally.append(elapsed)  # atomic: the metrics fold it under their lock
                if len(tally) >= _FOLD_AT:
                    self._metrics.fold(tally)
            else:
                keys = pattern.keys
                self._metrics.counted(_START, keys[0], keys[1], keys[2], elapsed)
            outcome = timed_outcome(pattern.head, pattern.rows, at, times, version, elapsed)
            # _emit, inline (its call and the level property's: every outage read pays them).
            on_outcome = self._on_outcome
            if on_outcome is not None:
                on_outcome(outcome)
            level = pattern.level
            if level:
                # _machine's names, looked up at the call (a test swaps the logging path).
                _machine._log_direct(
                    _machine._logger,
                    level,
                    "%s",
                    (pattern.text,),  # str(outcome), made once per pattern: it shows no times
                    pathname=_PATHNAME,
                    extra={"outcome": outcome},
                )
        return record
