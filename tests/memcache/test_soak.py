"""The fault-injection soak in CI: each scenario for a few seconds against 5 real
memcached nodes, 8 workers over two store instances; no read may be lost, stale or
resurrected, and no call may raise anything but the documented errors.

``make soak`` runs the same scenarios for minutes (docs/memcache/soak.md).
"""

from __future__ import annotations

import os

import pytest

from .soak import SCENARIOS, Kind, Result, Verdict, run, table

pytestmark = [pytest.mark.memcached, pytest.mark.slow]

# Seconds of faults per scenario: the four together, with start-up and the recovery
# sweeps, stay within 60-90 s of wall time on a busy two-core machine.
CI_SECONDS = {"A": 14.0, "B": 10.0, "C": 12.0, "R": 16.0}
SWEEP_LIMIT = 10.0  # a generous bound on recovery: every session readable again

# Scenarios whose read guarantees are still broken (issue 10 stays open for them). Their
# other guarantees (no unexpected exception, every session readable again after all-back)
# are asserted as for the rest; a read violation there is reported as an expected failure
# with its table and reproductions, and the scenario passes once the store keeps it.
# None today: A, B and C passed with seeds 1-7 in CI and in 3-minute runs
# (docs/memcache/soak.md).
OPEN: dict[str, str] = {}


def _explain(result: Result) -> str:
    """The table row and one reproduction per kind of violation, for the failure message."""
    lines = [table([result])]
    shown: set[Verdict] = set()
    for finding in result.report.findings:
        if finding.verdict in shown or finding.verdict.value not in result.report.violations():
            continue
        shown.add(finding.verdict)
        lines.extend(finding.reproduction(result.events, result.t0)[-25:])
    return "\n".join(lines)


# The nemesis hangs nodes; the soak sets its own store timeouts (tests/memcache/soak/).
@pytest.mark.hangs
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_store_keeps_its_contract_under_faults(memcached_binary: str, scenario: str) -> None:
    """No lost, stale or resurrected read and no unexpected exception in the scenario."""
    seed = int(os.environ.get("SOAK_SEED", "0"))
    result = run(scenario, CI_SECONDS[scenario], seed=seed, sweep_limit=SWEEP_LIMIT)
    print(_explain(result))  # shown with -rP, and the recovery time with it
    kinds = {(op.process, op.kind) for op in result.ops}
    assert {(p, k) for p in "AB" for k in Kind} <= kinds, "the workload did not run"
    assert result.events, "the nemesis injected no fault"
    violations = result.report.violations()
    assert 0 == violations["unexpected"], _explain(result)
    assert result.recovered, f"a session was still unreadable {SWEEP_LIMIT} s after all-back"
    expected = {"lost": 0, "stale": 0, "resurrected": 0, "unexpected": 0}
    if scenario in OPEN and expected != violations:
        pytest.xfail(f"{OPEN[scenario]}\n{_explain(result)}")
    assert expected == violations, _explain(result)
