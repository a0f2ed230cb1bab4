"""Rendezvous (highest random weight) hashing: every key ranks all nodes."""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import TypeVar

from ._native import speedups

__all__ = ["key_hash", "node_seed", "rank", "rank_python"]

T = TypeVar("T")
_MASK = (1 << 64) - 1


def node_seed(name: str) -> int:
    """A node's 64-bit seed, from its ``host:port`` (the same in every process)."""
    return int.from_bytes(blake2b(name.encode(), digest_size=8).digest(), "big")


def rank(nodes: Sequence[T], seeds: Sequence[int], key: str) -> list[T]:
    """``nodes`` ordered by their weight for ``key``, highest first.

    One hash of the key, then each node's weight is a mix of it with the node's seed
    (splitmix64's finalizer: a cheap, well-spread 64-bit permutation). Adding or removing
    a node only moves the keys whose top ranks involve it; the order of the other nodes
    for a key never changes. The ordering runs in C where the speedups are built
    (every operation ranks its key), else in :func:`rank_python`.
    """
    return _order(key_hash(key), seeds, nodes)


def key_hash(key: str) -> int:
    """The 64-bit hash of a key that the ranking mixes with each node's seed."""
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big")


def rank_python(key_hash: int, seeds: Sequence[int], nodes: Sequence[T]) -> list[T]:
    """The reference ranking (``_speedups.rank`` is its C twin)."""
    weighted: list[tuple[int, int]] = []
    for i, seed in enumerate(seeds):  # the mix inlined: this runs on every operation
        x = key_hash ^ seed
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        weighted.append((x ^ (x >> 31), -i))
    # Highest weight first; -i keeps the given order among equal weights (stable).
    weighted.sort(reverse=True)
    return [nodes[-i] for _, i in weighted]


_order = rank_python if speedups is None else speedups.rank
