"""A circuit breaker per node, shared by every thread of the process."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker", "FaultClock"]


class FaultClock:
    """When any node of one store last failed, rejoined or was reset, on the breakers' clock.

    Shared by the store's breakers. While it has been quiet for long enough, every write
    of the process reached its home nodes, so a read may ask the home nodes alone (see
    ``MemcacheSessionStore._read``). A single float, written without a lock: a racing
    writer stores a time just as recent.
    """

    __slots__ = ("_clock", "at")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = -math.inf

    def mark(self) -> None:
        """Note a fault now."""
        self.at = self._clock()

    def now(self) -> float:
        """The current time on the breakers' clock (a store stamps what it saw with it)."""
        return self._clock()

    def quiet_for(self, seconds: float) -> bool:
        """True if no fault was noted in the last ``seconds``."""
        return self._clock() - self.at >= seconds


class BreakerState(StrEnum):
    """Closed: calls go through. Open: the node is skipped. Half-open: one probe is let through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Looked up once for the hot checks: on 3.11 each Enum.MEMBER lookup goes through
# EnumType.__getattr__'s hook (about 600 instructions; every read and save checks).
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; probes again after a backoff.

    The backoff starts at ``backoff`` seconds and doubles after each probe that failed
    with a timeout or a closed connection, up to ``max_backoff``; a refused connection
    costs the node nothing, so a probe refused starts it over at ``backoff``. It counts
    from the start of the last probe: a probe that timed out after longer than the
    backoff is followed at once, so a hung node always has a probe waiting on it and is
    seen back with its first answer. While open, :meth:`allow` returns False at once, so
    a dead or hung node costs a request no time. When a probe is due exactly one caller
    of :meth:`probe` gets True (the store's prober, off the request path); the probe's
    success closes the breaker, its failure reopens it. A probe is due a backoff after
    the last one began, whether or not that one ended: the prober may then have a
    second probe in flight beside a slow one, and the first answer closes the breaker.
    A failure of a probe claimed before the breaker last closed (:meth:`claim_probe`'s
    number, given to :meth:`failure`) is not counted: it says nothing of the node now.
    ``on_open`` is called (outside the lock) each time the breaker opens: the store
    wakes its prober.

    It also keeps what :meth:`failed_throughout` needs to vouch for a copy: when the
    current streak of failures began, and whether the evidence since has a gap in which
    the node may have come back unseen (see there).
    """

    def __init__(
        self,
        threshold: int,
        backoff: float,
        max_backoff: float,
        clock: Callable[[], float] = time.monotonic,
        faults: FaultClock | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._current_backoff = backoff
        self._retry_at = 0.0
        self._probed_at = 0.0  # when the last probe began
        self._rejoined_at: float | None = None
        self._closings = 0  # how many times it closed (a probe's claim keeps the count)
        # The first failure of the streak heard without a gap since (failed_throughout),
        # the last time the node was heard failing or a probe of it began, and how late
        # past that (or past a probe's due time) the next may come without a gap: the
        # longest backoff, twice over (a late prober thread on a busy machine).
        self._failing_since: float | None = None
        self._heard_at = -math.inf
        self._gap = 2 * max_backoff
        self._refused = False
        self._faults = faults
        self._on_open = on_open

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._state.value} failures={self._failures}>"

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose backoff elapsed still reads open)."""
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far."""
        return self._failures

    def allow(self) -> bool:
        """True if a request may use the node now: only while the breaker is closed.

        A request never probes an open node (a hung node would cost it a timeout); the
        store's prober does, off the request path (:meth:`probe`).
        """
        return self._state is _CLOSED

    def probe(self) -> bool:
        """True if the caller may probe the node now: the breaker is not closed and its
        backoff has elapsed since the last probe began. Claims the probe: the next one
        is due a backoff later."""
        return self.claim_probe() is not None

    def claim_probe(self) -> int | None:
        """Claim a probe as :meth:`probe` does; None if none is due, else how many times
        the breaker had closed: pass it to :meth:`failure` with the probe's failure, so
        that a probe overtaken by another one's answer counts for nothing."""
        if self._state is _CLOSED:
            return None
        with self._lock:
            now = self._clock()
            if self._failures == 0 or now < self._retry_at:  # closed meanwhile, or not due
                return None
            self._heard(now)  # every probe's start is heard (failed_throughout)
            self._state = BreakerState.HALF_OPEN
            self._probed_at = now
            self._retry_at = now + self._current_backoff
            return self._closings

    def probe_in(self) -> float | None:
        """Seconds until the next probe is due (0 if due now), None while closed."""
        if self._state is _CLOSED:
            return None
        return max(0.0, self._retry_at - self._clock())

    def rejoined_within(self, seconds: float) -> bool:
        """True if the node came back (answered after failing, its breaker open or not)
        less than ``seconds`` ago: it may have missed writes while it was away."""
        at = self._rejoined_at
        return at is not None and self._clock() - at < seconds

    def rejoined_after(self, since: float) -> bool:
        """True if the node came back (answered after failing, its breaker open or not)
        after ``since``: it may have missed writes made while it was away."""
        at = self._rejoined_at
        return at is not None and at > since

    def failed_throughout(self, since: float) -> bool:
        """True if every request and probe to the node failed from ``since`` (or before)
        until now, heard on schedule: no answer, so no write reached it from this
        process, and another process's only if the node came back, took it and failed
        again between two probes.

        Each failure and each probe's start is heard. The next must come no later than
        twice ``max_backoff`` after the last one, or after the next probe was due while
        the breaker is open (a probe in flight waits out its timeout within that with
        the default options). A process that stalled longer (a long garbage
        collection, CPU starvation, SIGSTOP, also between a probe's claim and its send)
        has a gap in its evidence: the node may have come back in it, taken another
        process's newer save and failed again. The streak then counts from the first
        failure or probe after the gap, and a gap up to now counts too.
        """
        at = self._failing_since
        if at is None or at > since or self._failures == 0:
            return False
        due = self._heard_at  # _late() inlined: the outage read asks this of each node
        if self._state is _OPEN and self._retry_at > due:
            due = self._retry_at
        return self._clock() - due <= self._gap

    def success(self) -> None:
        """Record an answer: the breaker closes and the count restarts."""
        if self._state is _CLOSED and self._failures == 0:
            return
        with self._lock:
            # Back after failing, whether or not the breaker opened: the node may have
            # missed writes meanwhile (another process, whose breaker did open, wrote
            # around it).
            self._rejoined_at = self._clock()
            if self._state is not BreakerState.CLOSED:
                self._closings += 1
                self._mark()
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._failing_since = None
            self._current_backoff = self.backoff

    def reset(self) -> None:
        """Close the breaker now (an operator knows the node is back); the next call uses it."""
        with self._lock:
            self._state = BreakerState.CLOSED
            self._closings += 1
            self._failures = 0
            self._failing_since = None
            self._current_backoff = self.backoff
        self._mark()  # the node may have missed writes while it was away

    def errored(self) -> None:
        """Record an error reply: the node is alive (nothing is counted), but the
        command did not do its work there, so the fault clock notes it."""
        self._mark()

    def _mark(self) -> None:
        if self._faults is not None:
            self._faults.mark()

    @property
    def refused(self) -> bool:
        """True if the last failure was a refused connection: the process is gone, and
        memcached keeps nothing on disk, so the node holds nothing it held before."""
        return self._refused

    def failure(self, refused: bool = False, claimed: int | None = None) -> None:
        """Record a refused (``refused``), timed-out or closed connection.

        ``claimed``: the failure is a probe's, claimed when :meth:`claim_probe` gave
        that number. If the breaker closed since (another probe was answered), the
        failure is dropped: it is older news than that answer, and counting it could
        reopen the breaker. Dropping failure evidence never makes
        :meth:`failed_throughout` vouch for more."""
        with self._lock:
            if claimed is not None and claimed != self._closings:
                return
            self._mark()
            self._refused = refused
            now = self._clock()
            self._heard(now)
            if self._failures == 0:
                self._failing_since = now
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN:  # the probe failed
                if refused:
                    self._current_backoff = self.backoff
                else:
                    self._current_backoff = min(self._current_backoff * 2, self.max_backoff)
                self._state = BreakerState.OPEN
                self._retry_at = self._probed_at + self._current_backoff
                return
            if not (self._state is BreakerState.CLOSED and self._failures >= self.threshold):
                return
            self._open()
        if self._on_open is not None:
            self._on_open()

    def _late(self, now: float) -> bool:
        """True if nothing was heard of the node for too long at ``now``: more than
        twice ``max_backoff`` past the last failure or probe start, or past the next
        probe's due time while open (a process stalled, or its prober did)."""
        due = self._heard_at
        if self._state is _OPEN and self._retry_at > due:
            due = self._retry_at
        return now - due > self._gap

    def _heard(self, now: float) -> None:
        """The node is heard failing (or probed) at ``now``, before the state changes;
        after a gap the streak's evidence starts over (under the lock)."""
        if self._late(now):
            self._failing_since = now
        self._heard_at = now

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._retry_at = self._clock() + self._current_backoff
