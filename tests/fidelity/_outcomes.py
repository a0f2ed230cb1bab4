"""Decisions, no I/O: read a run's outcomes, compare two runs, apply the allow-list.

A run's outcomes map each test id to one :class:`Outcome`. Two runs of the same
suite on the same interpreter, without and with errpolicy, must agree on every
id; the allow-list names the differences docs/capture.md keeps on purpose.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class AllowListError(ValueError):
    """The allow-list file is malformed; carries the entry's index (or None)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        where = "" if index is None else f"entry {index}: "
        super().__init__(f"{where}{message}")
        self.index = index


class Outcome(enum.Enum):
    """What became of one test."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # xfail included: both runs must agree on it anyway
    ERROR = "error"
    ABSENT = "absent"  # not in this run (collection changed, or the run crashed)


# The worst of several reports for one id wins (a failure, then a teardown error).
_RANK = {Outcome.PASSED: 0, Outcome.SKIPPED: 1, Outcome.FAILED: 2, Outcome.ERROR: 3}


def _worse(old: Outcome | None, new: Outcome) -> Outcome:
    return new if old is None or _RANK[new] >= _RANK[old] else old


def parse_junit(xml_text: str) -> dict[str, Outcome]:
    """Outcomes from pytest's ``--junitxml``: id ``classname::name``."""
    outcomes: dict[str, Outcome] = {}
    for case in ET.fromstring(xml_text).iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag for child in case}
        if "error" in kinds:
            outcome = Outcome.ERROR
        elif "failure" in kinds:
            outcome = Outcome.FAILED
        elif "skipped" in kinds:
            outcome = Outcome.SKIPPED
        else:
            outcome = Outcome.PASSED
        outcomes[test_id] = _worse(outcomes.get(test_id), outcome)
    return outcomes


def parse_unittest_json(text: str) -> dict[str, Outcome]:
    """Outcomes from ``_unittest_runner``'s JSON: ``{test id: outcome value}``."""
    return {test_id: Outcome(value) for test_id, value in json.loads(text).items()}


@dataclass(frozen=True, slots=True)
class Allowance:
    """One difference kept on purpose: which tests, where, and why."""

    suite: str
    test: str  # an fnmatch pattern over test ids
    reason: str
    pythons: tuple[str, ...] = ()  # "3.11", ...; empty: every version

    def covers(self, suite: str, python: str, test_id: str) -> bool:
        """Whether this entry allows ``test_id`` of ``suite`` to differ on ``python``."""
        return (
            self.suite == suite
            and (not self.pythons or python in self.pythons)
            and fnmatch.fnmatchcase(test_id, self.test)
        )


_KEYS = {"suite", "test", "reason", "python"}


def load_allowed(text: str) -> tuple[Allowance, ...]:
    """The ``[[allowed]]`` entries of an allow-list TOML text; each needs a reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AllowListError(f"not TOML: {exc}") from exc
    if set(data) - {"allowed"}:
        raise AllowListError(f"unknown top-level keys {sorted(set(data) - {'allowed'})}")
    entries = data.get("allowed", [])
    if not isinstance(entries, list):
        raise AllowListError("'allowed' must be an array of tables ([[allowed]])")
    allowances = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AllowListError("must be a table", index)
        if unknown := set(entry) - _KEYS:
            raise AllowListError(f"unknown keys {sorted(unknown)}", index)
        for key in ("suite", "test", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise AllowListError(f"{key!r} must be a non-empty string", index)
        pythons = entry.get("python", [])
        if not isinstance(pythons, list) or not all(isinstance(p, str) for p in pythons):
            raise AllowListError("'python' must be a list of versions like \"3.11\"", index)
        allowances.append(
            Allowance(entry["suite"], entry["test"], entry["reason"].strip(), tuple(pythons))
        )
    return tuple(allowances)


@dataclass(frozen=True, slots=True)
class Difference:
    """One test whose outcome changed; ``reason`` is set when the allow-list keeps it."""

    suite: str
    python: str
    test_id: str
    without: Outcome
    with_errpolicy: Outcome
    reason: str | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is not None


def compare(
    suite: str,
    python: str,
    without: Mapping[str, Outcome],
    with_errpolicy: Mapping[str, Outcome],
    allowed: Iterable[Allowance] = (),
) -> list[Difference]:
    """Every test id whose outcome differs between the runs, sorted by id."""
    allowances = tuple(allowed)
    differences = []
    for test_id in sorted(without.keys() | with_errpolicy.keys()):
        before = without.get(test_id, Outcome.ABSENT)
        after = with_errpolicy.get(test_id, Outcome.ABSENT)
        if before is after:
            continue
        reason = next(
            (a.reason for a in allowances if a.covers(suite, python, test_id)),
            None,
        )
        differences.append(Difference(suite, python, test_id, before, after, reason))
    return differences


def table(differences: Iterable[Difference]) -> str:
    """A plain-text table of differences: unexpected ones first, then the allowed."""
    rows = sorted(differences, key=lambda d: (d.allowed, d.suite, d.python, d.test_id))
    if not rows:
        return "no differences"
    header = ("suite", "python", "without", "with", "test id", "verdict")
    cells = [
        (
            d.suite,
            d.python,
            d.without.value,
            d.with_errpolicy.value,
            d.test_id,
            f"allowed: {d.reason}" if d.reason else "UNEXPECTED",
        )
        for d in rows
    ]
    # The verdict (maybe a long reason) ends the line unpadded.
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(5)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)), row[5]])
        for row in [header, *cells]
    )
