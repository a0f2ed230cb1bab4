from collections.abc import Callable, Sequence
from typing import TypeVar

from ._wire import NodeFailure

T = TypeVar("T")

def setup(*, failure: Callable[[str, str], NodeFailure]) -> None: ...
def rank(key_hash: int, seeds: Sequence[int], nodes: Sequence[T]) -> list[T]: ...
def gets_round(
    fds: Sequence[int], request: bytes
) -> list[tuple[bytes, int] | NodeFailure | None]: ...
