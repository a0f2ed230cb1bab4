"""The asyncio store's recovery on its event loop: probing open breakers, and handing
over what waits for a node that answers again (``_handover``'s decisions).

One task per event loop that uses the store, started when a breaker opens there or a
request finds something to hand over, ending when every breaker is closed and nothing
is asked of it, and cancelled by ``aclose()``. No thread and no blocking socket: the
probes and handovers go through the driver's own asyncio connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ._node import Node, Reply
from ._steps import Steps
from ._wire import Command

__all__ = ["AsyncRecovery"]

Run = Callable[[Sequence[tuple[Node, Sequence[Command]]], float], Awaitable[list[Reply]]]
Drive = Callable[[Steps[None]], Awaitable[None]]

if TYPE_CHECKING:
    from ._machine_read import StoreCore


class _Worker:
    """One loop's task, and what wakes it."""

    __slots__ = ("asked", "task", "wakeup")

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.asked = False  # a request found something to hand over
        self.task: asyncio.Task[None] | None = None


class AsyncRecovery:
    """Probes the store's open breakers and hands over what waits for its nodes, in one
    task per event loop. ``core`` holds the breakers and the handoff (shared by every
    loop) and the probe command, ``run`` carries a plan out (the driver's
    ``_execute``), ``drive`` carries out the core's steps (the driver's ``_drive``)."""

    def __init__(self, core: StoreCore, run: Run, drive: Drive) -> None:
        self._core = core
        self._run = run
        self._drive = drive
        self._probe = core.probe
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
        """Cancel this loop's task and wait until it ended (a later failure starts a
        new one)."""
        worker = self._workers.pop(asyncio.get_running_loop(), None)
        if worker is None or worker.task is None:
            return
        worker.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker.task

    def stop(self) -> None:
        """Cancel every loop's task without waiting (from outside the loops: a store
        that is dropped, as Django's settings change)."""
        workers = list(self._workers.items())
        self._workers.clear()
        for loop, worker in workers:
            task = worker.task
            if task is None or task.done() or loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
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
        nodes = self._core.nodes
        while True:
            worker.wakeup.clear()
            if worker.asked:
                worker.asked = False
                await self.hand_over()
            waits = [wait for node in nodes if (wait := node.breaker.probe_in()) is not None]
            if not waits and not worker.asked:
                return  # every breaker closed: a breaker that opens starts a new task
            if waits and await self.probe_due():
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(waits) if waits else None):
                    await worker.wakeup.wait()

    async def probe_due(self) -> bool:
        """Probe, in one round, every node whose probe is due (its breaker claims it);
        hand over what waits once one answered. False if no probe was due."""
        due = [node for node in self._core.nodes if node.breaker.probe()]
        if not due:
            return False
        replies = await self._run([(node, (self._probe,)) for node in due], self._deadline())
        if any(reply.failure is None for reply in replies):
            await self.hand_over()
        return True

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
