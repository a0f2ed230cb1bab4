"""Each store's breaker probes, recorded beside the ops: when a node's breaker let a
probe through, when it was sent and what came back. A slow all-back window is the
time a prober took to find the nodes back; the probes show where that time went."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from errpolicy_memcache import MemcacheSessionStore

from ._history import Probe, Recorder

Run = Callable[[Sequence[tuple[Any, Sequence[Any]]]], list[Any]]


def watch(store: MemcacheSessionStore, process: str, recorder: Recorder) -> None:
    """Record every probe ``store``'s prober makes, as ``process``.

    The prober is the store's own (a private attribute: the soak is a test of this
    package). Its claim (the breakers' ``probe()``) and its one-node round are wrapped;
    what they decide and send is unchanged.
    """
    prober = store._prober  # the soak observes the store's own prober
    claim: Callable[[], list[Any]] = prober.claim
    run: Run = prober._execute  # the round the prober sends its probe with
    claimed: dict[str, float] = {}
    lock = threading.Lock()

    def claiming() -> list[Any]:
        due = claim()
        now = time.monotonic()
        with lock:
            for node in due:
                claimed[node.address] = now
        return due

    def probing(plan: Sequence[tuple[Any, Sequence[Any]]]) -> list[Any]:
        start = time.monotonic()
        replies = run(plan)
        end = time.monotonic()
        for reply in replies:
            address = reply.node.address
            with lock:
                at = claimed.pop(address, start)
            status = "ok" if reply.failure is None else reply.failure.kind
            recorder.probe(Probe(process, address, at, start, end, status))
        return replies

    prober.claim = claiming  # type: ignore[method-assign]  # an instance's own hook
    prober._execute = probing
