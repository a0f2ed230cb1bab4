"""Helpers for the stress tests of tests/core and tests/memcache: release many threads
at once, and make the interpreter switch between them as often as it can."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

THREADS = 16


@contextlib.contextmanager
def switch_often() -> Iterator[None]:
    """Switch threads as often as the interpreter allows (every microsecond), then as before."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def run_threads(target: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads released at once; their results, in order.
    An exception in any thread fails the test."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert ([], [False] * count) == (errors, [thread.is_alive() for thread in threads])
    return results
