"""The workload: worker threads that each own a set of sessions, drive them through
start / modify+save / destroy / delete / regenerate over two store instances (two "web
servers"), and record every call and what the store said.

Each session is used by one worker at a time, so the expected state of every session is
known: the checker needs no guess about concurrent writers.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import errpolicy

from errpolicy_memcache import (
    MemcacheSessionStore,
    NodeStatus,
    Outcome,
    Session,
    SessionUnavailable,
)

from ._history import Kind, Op, Recorder, Reply, Status

T = TypeVar("T")

PAD = "x" * 300  # a record of about the size of a small real session


class Outcomes:
    """The outcomes a store reports, per calling thread (``on_outcome`` runs in the
    thread that called the store)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, outcome: Outcome) -> None:
        self.current().append(outcome)

    def current(self) -> list[Outcome]:
        """This thread's outcomes since the last :meth:`clear`."""
        found: list[Outcome] | None = getattr(self._local, "outcomes", None)
        if found is None:
            found = self._local.outcomes = []
        return found

    def clear(self) -> None:
        """Forget this thread's outcomes."""
        self._local.outcomes = []


@dataclass(frozen=True, slots=True)
class Said:
    """What one call gave: its result, the status, the outcomes reported during it."""

    status: Status
    outcomes: tuple[Outcome, ...]
    detail: str
    start: float
    end: float

    @property
    def acks(self) -> frozenset[str]:
        """The nodes that stored a write."""
        return frozenset(
            result.node
            for outcome in self.outcomes
            for result in outcome.nodes
            if result.status is NodeStatus.STORED
        )

    @property
    def replies(self) -> tuple[Reply, ...]:
        """What each node answered, in every outcome reported during the call."""
        return tuple(
            Reply(result.node, result.command, result.status.value, result.elapsed)
            for outcome in self.outcomes
            for result in outcome.nodes
        )

    @property
    def served_by(self) -> str | None:
        """The node whose copy a read served."""
        return self.outcomes[-1].served_by if self.outcomes else None


def _refusal(exc: BaseException, outcomes: list[Outcome]) -> str | None:
    """The outcome kind of a documented refusal, or None for any other exception."""
    if isinstance(exc, SessionUnavailable):
        return exc.outcome.kind.value
    if isinstance(exc, errpolicy.PolicyViolation):
        for event in exc.report.raised:
            outcome = getattr(event.original, "outcome", None)
            if isinstance(outcome, Outcome):
                return outcome.kind.value
        return outcomes[-1].kind.value if outcomes else "policy_violation"
    return None


class Worker:
    """One thread of requests over its own sessions."""

    def __init__(
        self,
        index: int,
        stores: Mapping[str, MemcacheSessionStore],
        outcomes: Mapping[str, Outcomes],
        recorder: Recorder,
        *,
        sessions: int = 216,
        hot: int = 16,
        pace: float = 0.002,
        seed: int = 0,
    ) -> None:
        self.index = index
        self._stores = stores
        self._outcomes = outcomes
        self._recorder = recorder
        self._target = sessions
        self._hot = hot
        self._pace = pace
        self._rng = random.Random(seed * 1009 + index)
        self._values = itertools.count(index * 10**9 + 1)
        self.live: list[str] = []
        self.retired: list[str] = []
        self.ready: dict[str, float] = {}  # sid -> when a read through every store worked

    # -- one call ------------------------------------------------------------------

    def _call(self, process: str, fn: Callable[[], T]) -> tuple[T | None, Said]:
        outcomes = self._outcomes[process]
        outcomes.clear()
        start = time.monotonic()
        try:
            result = fn()
        except Exception as exc:  # every exception is recorded and judged
            end = time.monotonic()
            seen = list(outcomes.current())
            kind = _refusal(exc, seen)
            status = Status.FAIL if kind is not None else Status.ERROR
            detail = kind if kind is not None else f"{type(exc).__name__}: {exc}"
            return None, Said(status, tuple(seen), detail, start, end)
        end = time.monotonic()
        return result, Said(Status.OK, tuple(outcomes.current()), "", start, end)

    def _record(
        self,
        process: str,
        sid: str,
        kind: Kind,
        said: Said,
        *,
        value: int | None = None,
        nodes: frozenset[str] | None = None,
        status: Status | None = None,
        note: str = "",
    ) -> None:
        if status is None:
            status = said.status
            if kind is not Kind.READ and status is Status.FAIL:
                status = Status.UNKNOWN  # a failed write may have landed, or land later
        self._recorder.op(
            Op(
                process,
                self.index,
                sid,
                kind,
                status,
                said.start,
                said.end,
                value=value,
                nodes=said.acks if nodes is None else nodes,
                served_by=said.served_by if kind is Kind.READ else None,
                detail=", ".join(part for part in (note, said.detail) if part),
                replies=said.replies if kind is Kind.READ else (),
            )
        )

    # -- requests --------------------------------------------------------------------

    def read(self, process: str, sid: str) -> tuple[Session | None, bool]:
        """``start(sid)``, recorded: the session if one with data was served, and True
        if the store answered at all (a new session counts; a refusal does not)."""
        store = self._stores[process]
        session, said = self._call(process, lambda: store.start(sid))
        if session is None or session.new:
            self._record(process, sid, Kind.READ, said)
            return None, said.status is Status.OK
        value = session.get("v")
        if not isinstance(value, int):
            data = f"served data without a value: {dict(session)!r:.80}"
            self._record(process, sid, Kind.READ, said, status=Status.ERROR, note=data)
            return None, True
        self._record(process, sid, Kind.READ, said, value=value)
        return session, True

    def save(self, process: str, session: Session) -> None:
        """Write a new value into ``session`` and save it, recorded."""
        value = next(self._values)
        session["v"] = value
        session["pad"] = PAD
        sid = session.id
        store = self._stores[process]
        _, said = self._call(process, lambda: store.save(session))
        self._record(process, sid, Kind.SAVE, said, value=value)

    def create(self, process: str) -> None:
        """A new session (no cookie), saved with a first value."""
        session = self._stores[process].new_session()
        self.save(process, session)
        self.live.append(session.id)

    def destroy(self, process: str, session: Session) -> None:
        """Log out through a loaded session."""
        sid = session.id
        store = self._stores[process]
        _, said = self._call(process, lambda: store.destroy(session))
        self._record(process, sid, Kind.DESTROY, said)
        self._retire(sid)

    def delete(self, process: str, sid: str) -> None:
        """Log out by id, without loading."""
        store = self._stores[process]
        _, said = self._call(process, lambda: store.delete(sid))
        self._record(process, sid, Kind.DESTROY, said, note="delete")
        self._retire(sid)

    def regenerate(self, process: str, session: Session, value: int) -> None:
        """A new id for the same data; the old id dies."""
        old = session.id
        store = self._stores[process]
        _, said = self._call(process, lambda: store.regenerate(session))
        # Which nodes stored which key is not told apart in the outcome: no holders.
        note = "regenerate"
        self._record(process, old, Kind.DESTROY, said, nodes=frozenset(), note=note)
        if session.id != old:
            self._record(
                process, session.id, Kind.SAVE, said, value=value, nodes=frozenset(), note=note
            )
        self._retire(old)
        if session.id != old:
            if said.status is Status.OK:
                self.live.append(session.id)
            else:
                self.retired.append(session.id)

    def _retire(self, sid: str) -> None:
        if sid in self.live:
            self.live.remove(sid)
        self.retired.append(sid)
        del self.retired[:-500]

    # -- the loop ------------------------------------------------------------------------

    def step(self) -> None:
        """One request, chosen at random."""
        rng = self._rng
        process = "B" if rng.random() < 0.3 else "A"
        if len(self.live) < self._target:
            self.create(process)
            return
        roll = rng.random()
        if roll < 0.08 and self.retired:
            self.read(process, rng.choice(self.retired))
            return
        # A few busy users and many idle ones: idle sessions are not repaired by reads
        # between faults, which is what rolling restarts and double faults test.
        pool = self.live[: self._hot] if rng.random() < 0.7 else self.live
        sid = rng.choice(pool)
        if roll < 0.12:
            self.delete(process, sid)
            return
        session, answered = self.read(process, sid)
        if session is None:
            if answered:
                self._retire(sid)  # logged out: the user starts again
            return
        if roll < 0.3:
            return  # a request that only reads
        if roll < 0.34:
            self.destroy(process, session)
        elif roll < 0.37:
            self.regenerate(process, session, session["v"])
        else:
            self.save(process, session)

    def run(self, healed: threading.Event, stop: threading.Event) -> None:
        """Requests until ``healed`` is set, then the recovery sweep until every live
        session was read through every store, or ``stop``."""
        while not healed.is_set() and not stop.is_set():
            self.step()
            time.sleep(self._pace)
        self.sweep(stop)

    def sweep(self, stop: threading.Event) -> None:
        """Read every live session through each store until each has worked once."""
        pending = {(sid, process) for sid in self.live for process in self._stores}
        while pending and not stop.is_set():
            for sid, process in sorted(pending):
                if self.read(process, sid)[1]:
                    pending.discard((sid, process))
                    if not any(s == sid for s, _ in pending):
                        self.ready[sid] = time.monotonic()
            time.sleep(self._pace)
