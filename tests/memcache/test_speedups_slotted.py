"""The C ``slotted`` (``_speedups.c``) against its Python twin, ``py_node_results``."""

from __future__ import annotations

import dataclasses
import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import _native
from errpolicy_memcache._outcome import (
    _RESULT_MEMBERS,
    NodeResult,
    NodeStatus,
    Outcome,
    node_results,
    py_node_results,
)

speedups = _native.speedups
needs_c = pytest.mark.skipif(speedups is None, reason="the C speedups are not built here")

_rows = st.lists(
    st.tuples(
        st.text(max_size=30),
        st.sampled_from(["gets", "-", "set", "cas"]),
        st.sampled_from(list(NodeStatus)),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    max_size=8,
)


def _fields(results: tuple[NodeResult, ...]) -> list[tuple[object, ...]]:
    return [(type(r), *dataclasses.astuple(r)) for r in results]


@needs_c
@given(_rows)
def test_slotted_node_results_equal_the_python_twins(rows: list[tuple[object, ...]]) -> None:
    """Every NodeResult made in C equals the Python twin's, field by field and by type."""
    made = node_results(rows)  # type: ignore[arg-type]
    assert _fields(py_node_results(rows)) == _fields(made)  # type: ignore[arg-type]
    assert py_node_results(rows) == made  # type: ignore[arg-type]
    assert all(gc.is_tracked(r) for r in made)


def test_node_results_are_the_dataclass_values() -> None:
    """node_results makes what NodeResult(*row) makes (either implementation)."""
    rows = [("a:1", "gets", NodeStatus.HIT, 0.25, ""), ("b:2", "-", NodeStatus.SKIPPED, 0.0, "x")]
    assert [NodeResult(*row) for row in rows] == list(node_results(rows))


@needs_c
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((NodeResult, _RESULT_MEMBERS, [("a", "gets", NodeStatus.HIT, 0.0)]), TypeError),
        ((NodeResult, _RESULT_MEMBERS, [["a", "gets", NodeStatus.HIT, 0.0, ""]]), TypeError),
        ((NodeResult, _RESULT_MEMBERS, 5), TypeError),
        ((NodeResult, ("node",), []), TypeError),
        ((Outcome, _RESULT_MEMBERS, []), TypeError),
        ((NodeResult, (NodeResult.__dict__["node"],) * 17, []), ValueError),
        ((NodeResult, _RESULT_MEMBERS), TypeError),
        (("NodeResult", _RESULT_MEMBERS, []), TypeError),
    ],
)
def test_slotted_refuses_bad_arguments(args: tuple[object, ...], error: type[Exception]) -> None:
    """A short row, a list row, no sequence, a non-slot, another class's slot, too many
    slots, a missing argument or a non-type: a typed error, nothing made."""
    assert speedups is not None
    with pytest.raises(error):
        speedups.slotted(*args)
