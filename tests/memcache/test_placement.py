"""Rendezvous hashing ranks every node for every key, stably."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache._placement import node_seed, rank

NAMES = [f"127.0.0.1:{port}" for port in range(11211, 11217)]
SEEDS = [node_seed(n) for n in NAMES]


@given(st.text(min_size=1))
def test_rank_is_a_permutation(key: str) -> None:
    """Every node appears exactly once."""
    assert sorted(NAMES) == sorted(rank(NAMES, SEEDS, key))


@given(st.text(min_size=1))
def test_rank_is_deterministic(key: str) -> None:
    """The same key always ranks the nodes the same way."""
    assert rank(NAMES, SEEDS, key) == rank(NAMES, SEEDS, key)


@given(st.text(min_size=1), st.sampled_from(NAMES))
def test_removing_a_node_keeps_the_order_of_the_others(key: str, gone: str) -> None:
    """Only the removed node leaves the ranking; the others keep their relative order."""
    rest = [n for n in NAMES if n != gone]
    assert [n for n in rank(NAMES, SEEDS, key) if n != gone] == rank(
        rest, [node_seed(n) for n in rest], key
    )


def test_primaries_spread_over_the_nodes() -> None:
    """Over many keys every node is first for some of them."""
    firsts = {rank(NAMES, SEEDS, f"key-{i}")[0] for i in range(300)}
    assert set(NAMES) == firsts
