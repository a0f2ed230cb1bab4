"""The asyncio store's recovery on its event loop: probing open breakers, and handing
over what waits for a node that answers again (``_handover``'s decisions).

One task per event loop that uses the store, started when a breaker opens there or a
request finds something to hand over, ending when every breaker is closed, its probes
ended and nothing is asked of it, and cancelled by ``aclose()``. Each probe runs in a
task of its own (the sync prober's thread per probe), on the schedule the sync prober
keeps (``_node.Probes``: a node's next probe a backoff after its last one began, at
most two in flight per node in the process, the first answer closes the breaker), so
a slow or hung node's probe holds back neither its own node's next probe nor another
node's. No thread and no blocking socket: the probes and handovers go through the
driver's own asyncio connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ._node import Claim, Node, Probes, Reply
from ._steps import Steps
from ._wire import Command

__all__ = ["AsyncRecovery"]

Run = Callable[[Sequence[tuple[Node, Sequence[Command]]], float], Awaitable[list[Reply]]]
Drive = Callable[[Steps[None]], Awaitable[None]]

if TYPE_CHECKING:
    from ._machine_read import StoreCore


class _Worker:
    """One loop's task, its probes' tasks, and what wakes it."""

    __slots__ = ("asked", "probes", "task", "wakeup")

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.asked = False  # a request found something to hand over, or a probe an answer
        self.task: asyncio.Task[None] | None = None
        self.probes: set[asyncio.Task[bool]] = set()


class AsyncRecovery:
    """Probes the store's open breakers and hands over what waits for its nodes, in one
    task per event loop and one per probe. ``core`` holds the breakers and the handoff
    (shared by every loop) and the probe command, ``run`` carries a plan out without
    recording it on the breakers (the driver's ``_exchange``: each probe's answer is
    recorded by :class:`Probes`), ``drive`` carries out the core's steps (the driver's
    ``_drive``). The schedule is shared by every loop, so a node has at most two probes
    in flight in the process."""

    def __init__(self, core: StoreCore, run: Run, drive: Drive) -> None:
        self._core = core
        self._run = run
        self._drive = drive
        self._probe = core.probe
        self._probes = Probes(core.nodes)
        self._workers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Worker] = (
            weakref.WeakKeyDictionary()
        )

    def wake(self) -> None:
        """A breaker opened (called by it, in the task whose request saw the failure):
        this loop's task probes it when its backoff ends."""
        self._ensure(asked=False)

    def hand_over_soon(self) -> None:
        """A request found something waiting: if a node it waits for is back, this
        loop's task hands it over (the request does not wait for it)."""
        if self._core.handoff.ready():
            self._ensure(asked=True)

    def _ensure(self, *, asked: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop: the next request on one starts the task
            return
        worker = self._workers.get(loop)
        if worker is None:
            worker = self._workers[loop] = _Worker()
        worker.asked = worker.asked or asked
        if worker.task is None or worker.task.done():
            worker.task = loop.create_task(self._work(worker), name="errpolicy_memcache-recovery")
        else:
            worker.wakeup.set()

    async def aclose(self) -> None:
        """Cancel this loop's task and its probes, and wait until they ended (a later
        failure starts a new one)."""
        worker = self._workers.pop(asyncio.get_running_loop(), None)
        if worker is None:
            return
        tasks = [*worker.probes, *([worker.task] if worker.task is not None else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def stop(self) -> None:
        """Cancel every loop's task and probes without waiting (from outside the loops:
        a store that is dropped, as Django's settings change)."""
        workers = list(self._workers.items())
        self._workers.clear()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, worker in workers:
            if loop.is_closed():
                continue
            for task in [*worker.probes, *([worker.task] if worker.task is not None else [])]:
                if task.done():
                    continue
                if running is loop:
                    task.cancel()
                else:
                    loop.call_soon_threadsafe(task.cancel)

    async def _work(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._loop_until_idle(worker)
        finally:  # an ended task keeps no reference to its loop here
            if self._workers.get(loop) is worker:
                del self._workers[loop]

    async def _loop_until_idle(self, worker: _Worker) -> None:
        probes = self._probes
        loop = asyncio.get_running_loop()
        while True:
            worker.wakeup.clear()
            if worker.asked:
                worker.asked = False
                await self.hand_over()
            for claim in probes.claim():
                task = loop.create_task(self._answered(claim), name="errpolicy_memcache-probe")
                worker.probes.add(task)
                # Also when cancelled before it ran: the claim is no longer in flight.
                task.add_done_callback(functools.partial(self._probe_ended, worker, claim))
            waits = probes.waits()
            if not worker.asked and not worker.probes and not probes.open():
                return  # every breaker closed: a breaker that opens starts a new task
            # Nothing to wait for: each open node has two probes in flight (on this loop
            # or another), and the end of one wakes this task.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(waits) if waits else None):
                    await worker.wakeup.wait()

    def _probe_ended(self, worker: _Worker, claim: Claim, task: asyncio.Task[bool]) -> None:
        """A probe's task ended: it is no longer in flight; if the node answered, the
        loop's task hands over what waits for it. Every loop's task may claim again."""
        self._probes.ended(claim)
        worker.probes.discard(task)
        if not task.cancelled():
            if task.exception() is None:
                worker.asked = worker.asked or task.result()
            else:  # a bug: reported as the loop reports a task's error
                task.get_loop().call_exception_handler(
                    {
                        "message": "errpolicy_memcache probe failed",
                        "exception": task.exception(),
                        "task": task,
                    }
                )
        for loop, other in list(self._workers.items()):
            if other is worker:
                other.wakeup.set()
            elif not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    loop.call_soon_threadsafe(other.wakeup.set)

    async def _answered(self, claim: Claim) -> bool:
        """Send the probe ``claim`` and record its answer (:meth:`Probes.record`); True
        if the node answered."""
        (reply,) = await self._run([(claim.node, (self._probe,))], self._deadline())
        return self._probes.record(claim, reply.failure)

    async def probe_due(self) -> bool:
        """Probe every node whose probe is due, one after another, recording each
        answer; hand over what waits once one answered. False if no probe was due (the
        simulation's deterministic driver)."""
        due = self._probes.claim()
        answered = False
        for claim in due:
            try:
                answered = await self._answered(claim) or answered
            finally:
                self._probes.ended(claim)
        if answered:
            await self.hand_over()
        return bool(due)

    async def hand_over(self) -> None:
        """Hand over what waits for the nodes that answer again (the core's
        ``hand_over`` steps: locks whose ``add`` timed out removed, missed tombstones
        and copies written). One handover at a time in the process."""
        steps = self._core.hand_over()
        try:
            await self._drive(steps)
        finally:
            steps.close()  # a cancelled handover lets go of the handoff at once

    def _deadline(self) -> float:
        return self._core.deadline(None)
