"""What a 503 says: to the operator, one log line per kind of refusal; to the client, what is known.

The store's error (:class:`errpolicy.PolicyViolation` or :class:`SessionUnavailable`)
carries the :class:`Outcome` of the operation that failed. :class:`Refusal` reads it
back out; :class:`Throttle` decides which refusals are logged, so that a flood of
identical 503s costs one line (and a count), not one line per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Literal

from ._errors import SessionUnavailable
from ._outcome import NodeStatus, Outcome, OutcomeKind

__all__ = ["THROTTLE", "Refusal", "Stage", "Throttle", "log_refusal", "refusal_headers"]

#: Where the request was refused: loading the session before the app, or saving it after.
Stage = Literal["load", "save"]

_LOADS = frozenset({"session.start", "session.exists"})
_DOWN = frozenset({NodeStatus.REFUSED, NodeStatus.CLOSED})

_NEW_VISITOR = (
    b"503 Service Unavailable: the session store cannot be reached right now, so no "
    b"session could be started. Please retry in a few seconds.\n"
)
_HELD_DOWN = (
    b"503 Service Unavailable: the servers that hold your session refuse connections "
    b"right now. Nothing was changed. If they were restarted, your session is lost and "
    b"you will have to sign in again; otherwise please retry in a few seconds.\n"
)
_HELD_SILENT = (
    b"503 Service Unavailable: the servers that hold your session did not answer in "
    b"time. Nothing was changed; please retry in a few seconds.\n"
)
_LOCKED = (
    b"503 Service Unavailable: another request of yours is still using your session. "
    b"Nothing was changed; please retry in a few seconds.\n"
)
_NOT_SAVED = (
    b"503 Service Unavailable: the session store could not confirm that this request's "
    b"change to your session was saved, so it may be lost. Please retry in a few seconds.\n"
)


def _outcomes(error: BaseException) -> Iterator[Outcome]:
    """The outcomes an error of the store carries (the policy's events keep their log
    records, and the store's records carry their outcome)."""
    if isinstance(error, SessionUnavailable):
        yield error.outcome
        return
    for sub in getattr(error, "exceptions", ()):
        record = getattr(getattr(sub, "event", None), "original", None)
        outcome = getattr(record, "outcome", None)
        if isinstance(outcome, Outcome):
            yield outcome
        else:
            yield from _outcomes(sub)


@dataclass(frozen=True, slots=True)
class Refusal:
    """One 503: the stage, the outcomes that caused it, and whether the client sent a
    session cookie. ``error`` is the store's error, shown when it carries no outcome."""

    stage: Stage
    outcomes: tuple[Outcome, ...]
    had_cookie: bool
    error: str = ""

    @classmethod
    def of(cls, error: BaseException, *, stage: Stage | None, had_cookie: bool) -> Refusal:
        """The refusal that ``error`` (raised by the store) caused; ``stage=None``: told
        by the failed operation (``session.start`` and ``session.exists`` load)."""
        outcomes = tuple(_outcomes(error))
        if stage is None:
            loads = all(o.operation in _LOADS for o in outcomes)
            stage = "load" if loads else "save"
        return cls(stage, outcomes, had_cookie, str(error))

    @property
    def signature(self) -> Hashable:
        """What makes two refusals the same for the log: the stage, and each outcome's
        operation, kind and node results in any order (not the key, the times, the
        details or the nodes' ranking, which differs per key)."""
        if not self.outcomes:
            return (self.stage, self.error)
        return (
            self.stage,
            tuple(
                (o.operation, o.kind, tuple(sorted((r.node, r.command, r.status) for r in o.nodes)))
                for o in self.outcomes
            ),
        )

    def message(self) -> str:
        """The log line: what failed, the key's short hash, and each node's result."""
        if not self.outcomes:
            return f"session store refused the request (503 at {self.stage}): {self.error}"
        parts = []
        for o in self.outcomes:
            nodes = ", ".join(str(r) for r in o.nodes) or "no node asked"
            parts.append(f"{o.operation} {o.kind.value}, key {o.key}, nodes: {nodes}")
        return f"session store refused the request (503 at {self.stage}): " + "; ".join(parts)

    def body(self) -> bytes:
        """The client's 503 text: only what is known (a first visit has no session to be
        safe; a refused connection may mean a restarted node, which lost its data)."""
        if not self.had_cookie:
            return _NEW_VISITOR
        if self.stage == "save":
            return _NOT_SAVED
        if any(o.kind is OutcomeKind.LOCK_TIMEOUT for o in self.outcomes):
            return _LOCKED
        statuses = [r.status for o in self.outcomes for r in o.nodes if r.status.failed]
        if statuses and all(s in _DOWN for s in statuses):
            return _HELD_DOWN
        return _HELD_SILENT


def refusal_headers(body: bytes, retry_after: int) -> list[tuple[str, str]]:
    """Headers of a 503 with ``body``: plain text, never cached, with ``Retry-After``."""
    return [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Retry-After", str(retry_after)),
        ("Cache-Control", "no-store"),
    ]


class Throttle:
    """Which refusals to log: the first of each signature, then at most one line per
    signature every ``interval`` seconds, telling how many were not logged meanwhile.

    Remembers at most ``max_kinds`` signatures (the oldest are forgotten first). Thread
    safe; ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        interval: float = 60.0,
        max_kinds: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_kinds = max_kinds
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[Hashable, list[float]] = {}  # signature: [logged at, not logged]

    def admit(self, signature: Hashable) -> int | None:
        """None: do not log. Else log, saying how many of the same were not logged."""
        now = self._clock()
        with self._lock:
            seen = self._seen.get(signature)
            if seen is None:
                if len(self._seen) >= self.max_kinds:
                    del self._seen[next(iter(self._seen))]
                self._seen[signature] = [now, 0]
                return 0
            if now - seen[0] >= self.interval:
                skipped = int(seen[1])
                seen[0], seen[1] = now, 0
                return skipped
            seen[1] += 1
            return None


#: The process's throttle, shared by the WSGI, Flask and Django glue.
THROTTLE = Throttle()


def log_refusal(
    logger: logging.Logger,
    error: BaseException,
    *,
    stage: Stage | None,
    had_cookie: bool,
    throttle: Throttle | None = None,
) -> Refusal:
    """Log the 503 that ``error`` caused (unless ``throttle`` holds it back) and return
    the :class:`Refusal`, whose :meth:`~Refusal.body` is the client's text. ``stage``
    None: see :meth:`Refusal.of`."""
    refusal = Refusal.of(error, stage=stage, had_cookie=had_cookie)
    skipped = (throttle or THROTTLE).admit(refusal.signature)
    if skipped is not None:
        more = f" ({skipped} more like it were not logged)" if skipped else ""
        logger.error("%s%s", refusal.message(), more, extra={"refusal": refusal})
    return refusal
