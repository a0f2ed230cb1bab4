"""Simulated users: real HTTP clients with their own cookie jars, and what they saw."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

#: A hit served with the user's own session, counter moved forward.
KEPT = "kept"
#: A login served (a new session was created on purpose).
LOGIN = "login"
#: The app no longer knew the user: the session was lost (a fresh empty one came back).
LOST = "lost"
#: The user's counter went backwards: an older copy of the session won.
STALE = "stale"
#: A clean 503 with Retry-After: the store could not answer, the session was not touched.
UNAVAILABLE = "unavailable"
#: Anything else: a 5xx other than the clean 503, a timeout, a refused connection.
ERROR = "error"

OUTCOMES = (KEPT, LOGIN, LOST, STALE, UNAVAILABLE, ERROR)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as a user saw it; ``t`` is seconds since the demo started."""

    t: float
    phase: str
    user: str
    action: str
    outcome: str
    status: int | None
    latency_ms: float
    detail: str = ""


class Gate:
    """Lets requests through during a phase; closing it waits for those in flight.

    So a fault is injected only between requests, and every request belongs to
    exactly one phase.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._phase: str | None = None
        self._inflight = 0
        self._stopped = False

    def enter(self) -> str | None:
        """Wait for an open phase and return its name; None once the demo stops."""
        with self._cond:
            while self._phase is None and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            self._inflight += 1
            return self._phase

    def leave(self) -> None:
        """Mark one request as finished."""
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def open(self, phase: str) -> None:
        """Let requests of ``phase`` through."""
        with self._cond:
            self._phase = phase
            self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Stop new requests and wait until none is in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._phase = None
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self) -> None:
        """Release every waiting user for good."""
        with self._cond:
            self._stopped = True
            self._phase = None
            self._cond.notify_all()


class Recorder:
    """Collects samples from all users, thread-safe."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self._lock = threading.Lock()
        self._samples: list[Sample] = []

    def add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    def samples(self, phase: str | None = None) -> list[Sample]:
        """A copy of the samples so far, of one phase or of all."""
        with self._lock:
            return [s for s in self._samples if phase is None or s.phase == phase]


class User(threading.Thread):
    """Logs in, then counts visits in a loop; logs in again only after a lost session."""

    def __init__(
        self,
        name: str,
        base_url: str,
        gate: Gate,
        recorder: Recorder,
        *,
        think: float,
        timeout: float,
    ) -> None:
        super().__init__(name=f"user-{name}", daemon=True)
        self.user = name
        self.base_url = base_url
        self.gate = gate
        self.recorder = recorder
        self.think = think
        self.timeout = timeout
        self.http = requests.Session()
        self.logged_in = False
        self.count = 0

    def run(self) -> None:
        try:
            while True:
                phase = self.gate.enter()
                if phase is None:
                    return
                try:
                    sample = self.step(phase)
                finally:
                    self.gate.leave()
                self.recorder.add(sample)
                time.sleep(self.think)
        finally:
            self.http.close()

    def step(self, phase: str) -> Sample:
        """One request: a login when the user has no session, else a hit."""
        action = "hit" if self.logged_in else "login"
        started = time.perf_counter()
        t = time.monotonic() - self.recorder.epoch
        try:
            if action == "login":
                response = self.http.post(
                    f"{self.base_url}/login", json={"user": self.user}, timeout=self.timeout
                )
            else:
                response = self.http.post(f"{self.base_url}/hit", timeout=self.timeout)
        except requests.RequestException as exc:
            latency = (time.perf_counter() - started) * 1000
            return Sample(t, phase, self.user, action, ERROR, None, latency, type(exc).__name__)
        latency = (time.perf_counter() - started) * 1000
        outcome, detail = self.judge(action, response)
        return Sample(t, phase, self.user, action, outcome, response.status_code, latency, detail)

    def judge(self, action: str, response: requests.Response) -> tuple[str, str]:
        """Classify a response against what this user knows of its own session."""
        status = response.status_code
        if status == 503:
            if response.headers.get("Retry-After") and "text/plain" in response.headers.get(
                "Content-Type", ""
            ):
                return UNAVAILABLE, ""
            return ERROR, "503 without Retry-After or plain-text body"
        if status == 401 and action == "hit":
            self.logged_in = False
            return LOST, f"had count {self.count}"
        if status != 200:
            return ERROR, f"HTTP {status}"
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            return ERROR, "body is not JSON"
        if body.get("user") != self.user:
            self.logged_in = False
            return LOST, f"session of {body.get('user')!r}"
        count = int(body.get("count") or 0)
        if action == "login":
            self.logged_in = True
            self.count = count
            return LOGIN, ""
        if count <= self.count:
            detail = f"count {count} after {self.count}"
            self.count = count
            return STALE, detail
        self.count = count
        return KEPT, ""
