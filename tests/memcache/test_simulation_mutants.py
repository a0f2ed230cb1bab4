"""Mutation meta-tests: the simulation (``test_simulation.py``) is run against stores
broken on purpose, one rule of the contract at a time, and must find a failing
schedule for each. A mutant it lets through is a gap in its checker or its schedules.

Each search is derandomized (the same schedules every run) and stops at the first
failure, without shrinking: a few hundred schedules at most, a few seconds each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from errpolicy_memcache import _core
from errpolicy_memcache._core import Write
from errpolicy_memcache._handoff import Handoff
from errpolicy_memcache._machine_read import StoreCore
from errpolicy_memcache._node import Node
from errpolicy_memcache._wire import Command

from .test_simulation import DoubleFaultSimulation, RollingSimulation, StoreSimulation

# CPU-bound searches (tens of seconds alone); the suite's 120 s limit is there to catch
# hangs, and a machine busy with other work must not trip it.
pytestmark = pytest.mark.timeout(900)

_HUNT = settings(
    max_examples=300,
    stateful_step_count=50,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],  # found is enough: no shrinking
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
)

Patch = Callable[[pytest.MonkeyPatch], None]


def _no_stray_overwrite(monkeypatch: pytest.MonkeyPatch) -> None:
    """A save leaves the copies its read found below home as they were."""
    monkeypatch.setattr(StoreCore, "_stray_write", lambda self, sid, write: None)


def _no_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that skipped a home node never hands its copy there."""
    hint = Handoff.hint

    def tombstones_only(
        self: Handoff,
        write: Write,
        nodes: Sequence[Node] | None = None,
        command: Command | None = None,
    ) -> None:
        if command is None:  # a tombstone's hint, not a save's
            hint(self, write, nodes, command)

    monkeypatch.setattr(Handoff, "hint", tombstones_only)


def _tombstone_home_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A logout tombstones the home nodes only (issue 10's defect 1)."""
    tombstone_write = StoreCore._tombstone_write
    hint = Handoff.hint

    def home_only(self: StoreCore, key: str, floor: int, ttl: int | None) -> tuple[Write, int]:
        write, version = tombstone_write(self, key, floor, ttl)
        return Write(write.key, write.command, write.ranked, self._replicas), version

    def home_hint(
        self: Handoff,
        write: Write,
        nodes: Sequence[Node] | None = None,
        command: Command | None = None,
    ) -> None:
        if command is None and nodes is None:
            nodes = write.ranked[: write.need]
        hint(self, write, nodes, command)

    monkeypatch.setattr(StoreCore, "_tombstone_write", home_only)
    monkeypatch.setattr(Handoff, "hint", home_hint)


def _no_repair(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read never copies the newest data back onto the nodes that miss it."""
    monkeypatch.setattr(StoreCore, "_repair", lambda self, *a, **k: iter(()))


def _below_home_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge serves a copy no home node holds while a home node cannot answer."""
    stale_holders = _core._stale_holders

    def unless_below_home(
        holders: Any, failed: Any, home: Any, grace: float, acked: Any = None
    ) -> bool:
        failed_home = [node for node in home if node in failed]
        if failed_home and not any(node in home for node in holders):
            return False  # the rule taken out
        return stale_holders(holders, failed, home, grace, acked)

    # Both judges use it: core.judge, and core.judge_agreed on the wide read's short path.
    monkeypatch.setattr(_core, "_stale_holders", unless_below_home)


def _vouch_for_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge vouches for any copy, however many nodes a newer save could hide on."""
    monkeypatch.setattr(_core, "_vouches", lambda *args: True)


# Each mutant, with the schedules that catch it soonest (derandomized: the same
# schedule every run). Rolling: nothing read between faults; double: two at once.
MUTANTS: dict[str, tuple[Patch, type[StoreSimulation]]] = {
    "save skips the stray overwrite": (_no_stray_overwrite, RollingSimulation),
    "save skips the hint to a skipped home node": (_no_hint, DoubleFaultSimulation),
    "tombstone skips the strays": (_tombstone_home_only, RollingSimulation),
    "read skips the repair": (_no_repair, DoubleFaultSimulation),
    "judge serves below-home copies unvouched": (_below_home_served, DoubleFaultSimulation),
    "judge vouches for any copy": (_vouch_for_all, DoubleFaultSimulation),
}


def _hunt(machine: type[StoreSimulation]) -> str | None:
    """The checker's message for the first failing schedule found; None if none."""
    try:
        run_state_machine_as_test(machine, settings=_HUNT)
    except AssertionError as failure:
        return str(failure).splitlines()[0]
    except Flaky as failure:  # found, but not twice: still found
        return str(failure).splitlines()[0]
    return None


# The checker's verdicts (test_simulation.py): any other AssertionError is not one.
VERDICTS = ("lost:", "stale", "strays kept:", "a live copy after the logout:", "resurrected")


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_simulation_catches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulation finds a failing schedule against a store broken this way."""
    patch, machine = MUTANTS[name]
    patch(monkeypatch)
    found = _hunt(machine)
    assert found is not None, f"no schedule fails with the mutant: {name}"
    assert found.startswith(VERDICTS), found
