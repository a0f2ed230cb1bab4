"""The outcome values a read or write reports: built fast, equal to what their
dataclass constructors build, and printed the same way."""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import NodeStatus, Outcome, OutcomeKind
from errpolicy_memcache._outcome import NodeResult, node_results, severity_of, worst

_RESULTS = st.lists(
    st.tuples(
        st.text(max_size=20),
        st.sampled_from(["gets", "set", "cas", "-", "add"]),
        st.sampled_from(list(NodeStatus)),
        st.floats(allow_nan=False),
        st.text(max_size=10),
    ),
    max_size=6,
)


@given(_RESULTS)
def test_node_results_equal_the_dataclass_s_own(
    results: list[tuple[str, str, NodeStatus, float, str]],
) -> None:
    """The fast builder makes the NodeResults that NodeResult(*r) makes, field by field."""
    made = node_results(results)
    expected = tuple(NodeResult(*r) for r in results)
    assert (expected, [dataclasses.astuple(r) for r in expected]) == (
        made,
        [dataclasses.astuple(r) for r in made],
    )


def test_a_fast_node_result_stays_frozen() -> None:
    """A NodeResult from the fast builder refuses assignment like any other."""
    (result,) = node_results([("n:1", "gets", NodeStatus.HIT, 0.001, "")])
    try:
        result.node = "other"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        frozen = True
    else:
        frozen = False
    assert (True, "n:1 gets=hit 1.0ms") == (frozen, str(result))


def test_the_remembered_worst_kind_is_the_computed_one() -> None:
    """worst() answers every set of flags and base as the severity order says, the
    first time (computed) and the second (remembered)."""
    kinds = list(OutcomeKind)
    expected = []
    actual = []
    for size in range(3):
        for flags in itertools.combinations(kinds, size):
            for base in kinds:
                pool = {base, *flags}
                top = max(severity_of(k) for k in pool)
                expected.append([k for k in kinds if k in pool and severity_of(k) == top][-1])
                first = worst(frozenset(flags), base)
                actual.append(first if first is worst(frozenset(flags), base) else None)
    assert expected == actual


def test_an_outcome_prints_each_node_s_status_value() -> None:
    """The message of a reported outcome names each node's command and status value."""
    outcome = Outcome(
        "session.start",
        OutcomeKind.FAILOVER,
        frozenset({OutcomeKind.FAILOVER}),
        "b:2",
        node_results(
            [("a:1", "-", NodeStatus.SKIPPED, 0.0, ""), ("b:2", "gets", NodeStatus.HIT, 0.1, "")]
        ),
        "abcdef",
        7,
        0.2,
    )
    expected = "session.start failover served_by=b:2 key=abcdef [a:1 -=skipped; b:2 gets=hit]"
    assert expected == str(outcome)
