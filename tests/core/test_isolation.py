"""Each guard sees its own events and no one else's: threads, tasks, carry."""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import errpolicy
import pytest
from errpolicy import Policy
from errpolicy.testing import ErrGuard

log = logging.getLogger("t.isolation")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(logging.NullHandler())
RECORD_ALL = Policy(raise_on="NONE", record="ALL")


def test_threads_started_inside_a_guard_do_not_inherit_it() -> None:
    """A plain thread's events do not reach the guard that was open when it started."""
    errpolicy.configure(sink=errpolicy.NullSink())
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        t = threading.Thread(target=lambda: log.warning("from thread"))
        t.start()
        t.join()
        log.warning("own")
    assert ["own"] == [e.message for e in report.events]


def test_carry_hands_the_guard_to_an_executor() -> None:
    """errpolicy.carry(fn) runs fn inside the caller's guard in a worker thread."""
    errpolicy.configure(sink=errpolicy.NullSink())
    with ThreadPoolExecutor(1) as pool, errpolicy.guard("t", policy=RECORD_ALL) as report:
        pool.submit(errpolicy.carry(log.warning), "carried").result()
        pool.submit(log.warning, "not carried").result()
    assert ["carried"] == [e.message for e in report.events]
    assert report.events[0].thread != threading.current_thread().name


def test_carry_after_the_guard_closed_captures_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A carried function that runs after its guard closed behaves as outside any guard."""
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        late = errpolicy.carry(logging.getLogger("t.late").warning)
    with caplog.at_level(logging.WARNING, logger="t.late"):
        late("too late")
    assert () == report.events
    assert ["too late"] == [r.getMessage() for r in caplog.records]


async def test_tasks_created_inside_a_guard_belong_to_it_while_open() -> None:
    """asyncio tasks copy the context: while the guard is open, their events are its own."""
    errpolicy.configure(sink=errpolicy.NullSink())
    async with errpolicy.guard("t", policy=RECORD_ALL) as report:
        await asyncio.gather(*(asyncio.create_task(_warn_later(i)) for i in range(3)))
    assert ["task 0", "task 1", "task 2"] == sorted(e.message for e in report.events)


async def test_task_outliving_its_guard_is_not_captured(errguard: ErrGuard) -> None:
    """A task still running after its guard closed is treated as outside that guard."""
    go = asyncio.Event()

    async def later() -> None:
        await go.wait()
        log.warning("after close")

    async with errpolicy.guard("t", policy=RECORD_ALL) as report:
        task = asyncio.create_task(later())
    go.set()
    await task
    assert () == report.events
    # It went on to the test's own guard (the plugin's), which holds it.
    assert ["after close"] == [e.message for e in errguard.assert_logged(logger="t.isolation")]


async def test_concurrent_tasks_have_separate_guards() -> None:
    """Two tasks each in its own guard, interleaving at awaits, never see each other's events."""

    async def worker(name: str) -> list[str]:
        async with errpolicy.guard(name, policy=RECORD_ALL) as report:
            for i in range(20):
                log.warning("%s %d", name, i)
                await asyncio.sleep(0)
        return [e.message for e in report.events]

    a, b = await asyncio.gather(worker("a"), worker("b"))
    assert [f"a {i}" for i in range(20)] == a
    assert [f"b {i}" for i in range(20)] == b


async def _warn_later(i: int) -> None:
    await asyncio.sleep(0)
    warnings.warn(f"task {i}", UserWarning)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# -- the stress test -----------------------------------------------------------

THREADS = 8
TASKS = 50
ROUNDS = 26  # 8 * 50 * 26 = 10,400 guarded calls


def test_stress_threads_times_tasks_no_misattribution() -> None:
    """8 threads x 50 tasks, each running guards that emit their own warnings and records:
    every guard sees exactly its own events, over more than 10,000 guarded calls."""
    errpolicy.configure(sink=errpolicy.NullSink())
    errors: list[str] = []
    counts: list[int] = []
    lock = threading.Lock()

    async def task(thread_no: int, task_no: int) -> int:
        done = 0
        for round_no in range(ROUNDS):
            tag = f"{thread_no}/{task_no}/{round_no}"
            async with errpolicy.guard("stress", policy=RECORD_ALL) as report:
                warnings.warn(f"w {tag}", UserWarning)
                await asyncio.sleep(0)
                log.warning("l %s", tag)
                await asyncio.sleep(0)
                warnings.warn(f"w {tag}", UserWarning)  # the same warning again: a repeat
            got = [e.message for e in report.events]
            if [f"w {tag}", f"l {tag}", f"w {tag}"] != got:
                with lock:
                    errors.append(f"{tag}: {got}")
            done += 1
        return done

    def thread_main(thread_no: int) -> None:
        async def main() -> None:
            results = await asyncio.gather(*(task(thread_no, t) for t in range(TASKS)))
            with lock:
                counts.append(sum(results))

        asyncio.run(main())

    threads = [threading.Thread(target=thread_main, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [] == errors[:5]
    assert THREADS * TASKS * ROUNDS == sum(counts)
    assert sum(counts) >= 10_000


def test_stress_unguarded_noise_never_reaches_a_guard() -> None:
    """Threads logging outside any guard, next to threads inside guards: no leaks either way."""
    errpolicy.configure(sink=errpolicy.NullSink())
    noise = logging.getLogger("t.noise")
    noise.propagate = False
    keep = _Keep()
    noise.addHandler(keep)
    stop = threading.Event()
    leaks: list[str] = []

    def noisy() -> None:
        n = 0
        while not stop.is_set() and n < 200_000:
            noise.warning("noise")
            n += 1

    def guarded() -> None:
        for _ in range(2_000):
            with errpolicy.guard("g", policy=RECORD_ALL) as report:
                log.warning("mine")
            if [e.message for e in report.events] != ["mine"]:
                leaks.append(repr(report.events))

    noisers = [threading.Thread(target=noisy) for _ in range(2)]
    workers = [threading.Thread(target=guarded) for _ in range(4)]
    for t in noisers + workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    for t in noisers:
        t.join()
    noise.removeHandler(keep)
    assert [] == leaks[:3]
    assert all(m == "noise" for m in keep.messages)
    assert len(keep.messages) > 0
