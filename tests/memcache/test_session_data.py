"""Session data that would not come back the same from JSON is refused on save, with a
SessionDataError naming the path to the bad value; nothing is sent, nothing is lost."""

from __future__ import annotations

from collections import OrderedDict
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import MemcacheSessionError, MemcacheSessionStore, SessionDataError
from errpolicy_memcache._data import MAX_DEPTH, check_data, dumps_data, load_data
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import Counters


def nested(depth: int) -> dict[str, Any]:
    """A dict ``depth`` levels deep (the outer dict is level 1)."""
    data: dict[str, Any] = {}
    for _ in range(depth - 1):
        data = {"d": data}
    return data


REFUSED: dict[str, tuple[dict[Any, Any], tuple[str | int, ...]]] = {
    "int-key": ({1: 2}, ()),
    "bool-key-beside-its-str": ({True: 1, "true": 2}, ()),
    "nested-int-key": ({"cart": [{"n": 1}, {2: "x"}]}, ("cart", 1)),
    "nan": ({"x": [1.0, float("nan")]}, ("x", 1)),
    "object": ({"o": object()}, ("o",)),
    "int-key-in-a-tuple": ({"pair": (1, {2: 3})}, ("pair", 1)),
    "nan-in-a-set": ({"tags": {float("nan")}}, ("tags", 0)),
    "bytearray": ({"b": bytearray(b"raw")}, ("b",)),
}
# A tuple, set, bytes, datetime, UUID, Decimal ... are stored tagged: test_tagged_data.py.


@pytest.mark.parametrize(("data", "path"), REFUSED.values(), ids=REFUSED.keys())
def test_data_that_would_not_come_back_the_same_is_refused(
    data: dict[Any, Any], path: tuple[str | int, ...]
) -> None:
    """The error names where the bad value sits."""
    with pytest.raises(SessionDataError) as raised:
        dumps_data(data)
    assert path == raised.value.path


def test_ten_thousand_levels_are_refused_without_recursion_error() -> None:
    """Once RecursionError from save; now a SessionDataError at the depth limit."""
    with pytest.raises(SessionDataError, match="MAX_DEPTH") as raised:
        dumps_data(nested(10_000))
    assert ("d",) * MAX_DEPTH == raised.value.path


def test_the_depth_limit_itself_is_allowed() -> None:
    assert nested(MAX_DEPTH) == load_data(dumps_data(nested(MAX_DEPTH)).encode())


def test_a_cycle_is_refused_at_the_depth_limit() -> None:
    data: dict[str, Any] = {}
    data["self"] = data
    with pytest.raises(SessionDataError, match="MAX_DEPTH"):
        check_data(data)


def test_the_error_is_the_projects_and_the_builtins_it_resembles() -> None:
    with pytest.raises(SessionDataError) as raised:
        dumps_data({1: 2})
    error = raised.value
    assert (True, True, True) == (
        isinstance(error, MemcacheSessionError),
        isinstance(error, TypeError),
        isinstance(error, ValueError),
    )


def test_subclasses_that_come_back_equal_are_taken() -> None:
    """An IntEnum and an OrderedDict come back as int and dict, equal to what was saved."""

    class Level(IntEnum):
        HIGH = 3

    data = {"level": Level.HIGH, "ordered": OrderedDict(a=1)}
    assert data == load_data(dumps_data(data).encode())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_whatever_is_taken_comes_back_equal(data: dict[str, Any]) -> None:
    assert data == load_data(dumps_data(data).encode())


# -- through the store: refused before any I/O, the session keeps its data ----------------


@pytest.mark.memcached
@pytest.mark.parametrize(
    "bad",
    [{"n": {1: 2}}, {"n": {True: 1, "true": 2}}, {"deep": nested(10_000)}],
    ids=["int-key", "bool-and-str-key", "ten-thousand-levels"],
)
def test_save_refuses_it_before_any_io(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    counters: Counters,
    bad: dict[Any, Any],
) -> None:
    session = store.new_session()
    session["keep"] = 1
    session._data.update(bad)  # as a nested change would: past __setitem__'s own check
    before = [counters(server)["cmd_set"] for server in cluster.servers]
    with pytest.raises(SessionDataError):
        store.save(session)
    after = [counters(server)["cmd_set"] for server in cluster.servers]
    assert (before, 1) == (after, session["keep"])


@pytest.mark.memcached
def test_a_session_at_the_depth_limit_saves_and_reads_back(store: MemcacheSessionStore) -> None:
    session = store.new_session()
    session["deep"] = nested(MAX_DEPTH - 1)
    store.save(session)
    assert nested(MAX_DEPTH - 1) == store.start(session.id)["deep"]


def test_an_int_too_long_for_json_is_refused_with_its_path() -> None:
    """Python will not write an int of more than 4300 digits: refused, not a bare ValueError."""
    with pytest.raises(SessionDataError) as raised:
        dumps_data({"n": [10**5000]})
    assert ("n", 0) == raised.value.path
