"""Rendezvous (highest random weight) hashing: every key ranks all nodes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["rank"]

T = TypeVar("T")


def _score(node: str, key: str) -> int:
    digest = hashlib.blake2b(f"{node}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(nodes: Sequence[T], names: Sequence[str], key: str) -> list[T]:
    """``nodes`` ordered by their weight for ``key``, highest first.

    Adding or removing a node only moves the keys whose top ranks involve it; the order
    of the other nodes for a key never changes.
    """
    scored = sorted(
        range(len(nodes)), key=lambda i: (_score(names[i], key), names[i]), reverse=True
    )
    return [nodes[i] for i in scored]
