from collections.abc import Callable, Sequence
from hashlib import _Hash
from typing import Any, Literal, TypeVar, overload

from ._wire import NodeFailure

T = TypeVar("T")

def setup(*, failure: Callable[[str, str], NodeFailure]) -> None: ...
def plain_json(data: object, max_depth: int) -> bool: ...
def plain_payload(payload: bytes, max_depth: int) -> bool: ...
def rank(key_hash: int, seeds: Sequence[int], nodes: Sequence[T]) -> list[T]: ...
@overload
def gets_round(
    fds: Sequence[int],
    request: bytes,
    agree: Literal[False] = ...,
    timeout: float | None = ...,
    max_value: int | None = ...,
) -> list[tuple[bytes, int] | NodeFailure | None]: ...
@overload
def gets_round(
    fds: Sequence[int],
    request: bytes,
    agree: bool,
    timeout: float | None = ...,
    max_value: int | None = ...,
) -> bytes | list[tuple[bytes, int] | NodeFailure | None]: ...
def line_round(
    fds: Sequence[int], request: bytes, timeout: float | None = ...
) -> list[bytes | NodeFailure]: ...
def timed_outcome(
    result_cls: type[Any],
    result_slots: tuple[Any, ...],
    outcome_cls: type[T],
    outcome_slots: tuple[Any, ...],
    head: tuple[Any, ...],
    rows: tuple[tuple[Any, ...], ...],
    at: float,
    times: list[float],
    version: int | None,
    elapsed: float,
    /,
) -> T: ...
def slotted(
    cls: type[T], slots: tuple[object, ...], rows: Sequence[tuple[object, ...]]
) -> tuple[T, ...]: ...
def seal(
    inner: _Hash,
    outer: _Hash,
    key: str,
    version: int,
    writer: str,
    created: float,
    written: float,
    ttl: int,
    payload: bytes | None,
) -> bytes | None: ...
def seal_store(
    verb: bytes,
    expiry: int,
    inner: _Hash,
    outer: _Hash,
    key: str,
    version: int,
    writer: str,
    created: float,
    written: float,
    ttl: int,
    payload: bytes | None,
) -> tuple[bytes, bytes] | None: ...
def seal_save(
    record_type: type[Any],
    command_type: type[Any],
    name: str,
    read: Callable[..., Any],
    expiry: int,
    inner: _Hash,
    outer: _Hash,
    key: str,
    version: int,
    writer: str,
    created: float,
    written: float,
    ttl: int,
    payload: bytes | None,
) -> tuple[Any, Any] | None: ...
def gets_reply(data: bytes, max_value: int) -> tuple[bytes, int] | NodeFailure | int | None: ...
def wide_round(
    fds: Sequence[int],
    request: bytes,
    need: int,
    timeout: float | None = ...,
    max_value: int | None = ...,
) -> tuple[bytes, int] | list[tuple[bytes, int] | NodeFailure | None]: ...
