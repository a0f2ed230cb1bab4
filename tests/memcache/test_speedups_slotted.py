"""The C ``slotted`` and ``timed_outcome`` (``_speedups.c``) against their Python
twins, ``py_node_results`` and ``py_timed_outcome``."""

from __future__ import annotations

import dataclasses
import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import _native
from errpolicy_memcache._outcome import (
    _OUTCOME_MEMBERS,
    _RESULT_MEMBERS,
    NodeResult,
    NodeStatus,
    Outcome,
    OutcomeKind,
    node_results,
    py_node_results,
    py_timed_outcome,
    timed_outcome,
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


_heads = st.tuples(
    st.text(max_size=20),
    st.sampled_from(list(OutcomeKind)),
    st.frozensets(st.sampled_from(list(OutcomeKind))),
    st.none() | st.text(max_size=20),
    st.text(max_size=12),
)


@st.composite
def _timed(draw: st.DrawFn) -> tuple[object, ...]:
    times = draw(st.lists(st.floats(allow_nan=False), max_size=6))
    index = st.integers(-3, -1) | (st.integers(0, len(times) - 1) if times else st.just(-1))
    rows = draw(
        st.lists(
            st.tuples(
                st.text(max_size=20),
                st.sampled_from(["gets", "-"]),
                st.sampled_from(list(NodeStatus)),
                index,
            ),
            max_size=8,
        )
    )
    version = draw(st.none() | st.integers(0, 2**64 - 1))
    return draw(_heads), tuple(rows), draw(st.floats(allow_nan=False)), times, version, 0.5


def _outcome_fields(outcome: Outcome) -> tuple[object, ...]:
    values = dataclasses.astuple(outcome)
    return (type(outcome), *values[:4], _fields(outcome.nodes), *values[5:])


@needs_c
@given(_timed())
def test_timed_outcome_equals_the_python_twin(args: tuple[object, ...]) -> None:
    """The Outcome made in C equals the Python twin's, field by field and by type, each
    row timed ``at`` or by its index into ``times``."""
    made = timed_outcome(*args)  # type: ignore[arg-type]
    expected = py_timed_outcome(*args)  # type: ignore[arg-type]
    assert _outcome_fields(expected) == _outcome_fields(made)
    assert expected == made
    assert gc.is_tracked(made)
    assert all(gc.is_tracked(r) for r in made.nodes)


_HEAD: tuple[object, ...] = ("session.start", OutcomeKind.FAILOVER, frozenset(), "a:1", "k")


@needs_c
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((_HEAD, (("a", "gets", NodeStatus.HIT, 1),), 0.0, [0.0], 1, 0.1), IndexError),
        ((_HEAD, (("a", "gets", NodeStatus.HIT),), 0.0, [0.0], 1, 0.1), TypeError),
        ((_HEAD, (("a", "gets", NodeStatus.HIT, "0"),), 0.0, [0.0], 1, 0.1), TypeError),
        ((_HEAD[:4], (), 0.0, [], 1, 0.1), TypeError),
        ((_HEAD, [], 0.0, [], 1, 0.1), TypeError),
        ((_HEAD, (), 0.0, (), 1, 0.1), TypeError),
        ((_HEAD, (), 0.0, []), TypeError),
    ],
)
def test_timed_outcome_refuses_bad_arguments(
    args: tuple[object, ...], error: type[Exception]
) -> None:
    """An index past ``times``, a short row, a non-integer index, a short head, a list
    of rows, a tuple of times, missing arguments: a typed error, nothing made."""
    assert speedups is not None
    with pytest.raises(error):
        speedups.timed_outcome(NodeResult, _RESULT_MEMBERS, Outcome, _OUTCOME_MEMBERS, *args)


@needs_c
def test_timed_outcome_checks_its_slots() -> None:
    """Slots of another class, or not five and eight of them: a TypeError."""
    assert speedups is not None
    for slots in ((_OUTCOME_MEMBERS, _RESULT_MEMBERS), (_RESULT_MEMBERS[:4], _OUTCOME_MEMBERS)):
        with pytest.raises(TypeError):
            speedups.timed_outcome(
                NodeResult, slots[0], Outcome, slots[1], _HEAD, (), 0.0, [], 1, 0.1
            )


def _slots(session: object) -> dict[str, object]:
    from errpolicy_memcache._session import Session

    return {name: getattr(session, name) for name in Session.__slots__}


def test_stored_slots_are_every_slot_of_a_session() -> None:
    """A stored session made in C sets every slot a Session has (a new slot must be added)."""
    from errpolicy_memcache._session import STORED_SLOTS, Session

    assert sorted(Session.__slots__) == sorted(member.__name__ for member in STORED_SLOTS)


@given(
    st.integers(0, 2**63),
    st.floats(allow_nan=False),
    st.integers(1, 2**31) | st.just(1800),
    st.binary(max_size=40) | st.none(),
)
def test_a_loaded_session_is_the_one_its_init_makes(
    version: int, created: float, ttl: int, payload: bytes | None
) -> None:
    """The store's loaded session (made in C where built) has every slot that
    ``Session(sid, new=False, ...)`` gives it, and its data reads the same."""
    from errpolicy_memcache import MemcacheSessionStore
    from errpolicy_memcache._envelope import Record
    from errpolicy_memcache._session import Session

    store = MemcacheSessionStore(["127.0.0.1:9"], "x" * 32, idle_ttl=1800)
    sid = "a" * 43
    loaded = store._core._loaded(sid, Record(version, "w", created, 0.0, ttl, payload))
    made = Session(
        sid,
        new=False,
        version=version,
        created=created,
        ttl=None if ttl == 1800 else ttl,
        payload=payload,
    )
    assert (Session, _slots(made)) == (type(loaded), _slots(loaded))
    assert gc.is_tracked(loaded)
