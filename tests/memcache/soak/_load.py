"""How busy the machine was during a run: a thread that sleeps a fixed tick and
records how late it woke up (the wait a worker's thread sees before it runs again,
GIL included) and the load average, and every garbage collection that held the
process for 10 ms or more. A read that times out on a running node while threads
wake up hundreds of milliseconds late was waiting on the machine (or on the
collector, which stops every thread of the process)."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

TICK = 0.1  # seconds between samples


@dataclass(frozen=True, slots=True)
class Sample:
    """At ``at`` (monotonic), a ``TICK`` sleep ended ``lag`` seconds late; ``load`` is
    the one-minute load average then."""

    at: float
    lag: float
    load: float


@dataclass(frozen=True, slots=True)
class Collection:
    """A garbage collection of ``generation`` begun at ``at`` that held every thread
    of the process for ``seconds``."""

    at: float
    generation: int
    seconds: float


LONG_COLLECTION = 0.01  # seconds: shorter collections are not recorded


class Sampler:
    """Samples in a daemon thread, and records long garbage collections, from
    :meth:`start` until :meth:`stop`."""

    def __init__(self, tick: float = TICK) -> None:
        self._tick = tick
        self._stop = threading.Event()
        self._samples: list[Sample] = []
        self._collections: list[Collection] = []
        self._collecting = 0.0
        self._thread = threading.Thread(target=self._run, name="soak-load", daemon=True)

    def start(self) -> Sampler:
        """Begin sampling; return self."""
        gc.callbacks.append(self._on_gc)
        self._thread.start()
        return self

    def stop(self) -> tuple[tuple[Sample, ...], tuple[Collection, ...]]:
        """End sampling and return the samples and the long collections."""
        self._stop.set()
        self._thread.join()
        gc.callbacks.remove(self._on_gc)
        return tuple(self._samples), tuple(self._collections)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # Runs in whichever thread triggered the collection, with the GIL held.
        now = time.monotonic()
        if phase == "start":
            self._collecting = now
        elif now - self._collecting >= LONG_COLLECTION:
            took = now - self._collecting
            self._collections.append(Collection(self._collecting, info["generation"], took))

    def _run(self) -> None:
        while True:
            asleep = time.monotonic()
            if self._stop.wait(self._tick):
                return
            woke = time.monotonic()
            lag = max(0.0, woke - asleep - self._tick)
            self._samples.append(Sample(woke, lag, os.getloadavg()[0]))


def busiest(samples: Sequence[Sample], start: float, end: float) -> Sample | None:
    """The sample with the longest lag in ``[start, end]`` (None: none there)."""
    inside = [sample for sample in samples if start <= sample.at <= end]
    return max(inside, key=lambda sample: sample.lag, default=None)
