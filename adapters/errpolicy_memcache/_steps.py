"""The commands the store's sans-IO core yields to a driver (h11's model: the core
says what to send, the driver sends it and feeds the answer back).

Each operation of :class:`~._machine.StoreCore` is a generator of these: the driver
carries one out and sends the generator its answer, until the generator returns the
operation's result. Four commands, one answer each:

========== ================================================ ==========================
command    the driver does                                  and sends back
========== ================================================ ==========================
Round      each node's commands, in one round, by deadline  ``list[Reply]``, one a node
HomeGets   the home nodes' ``gets`` (the usual read)        ``bytes`` if all hold the
                                                            same copy, else replies
HomeStore  a write to every home node (the usual save)      ``True`` if all stored it,
                                                            else replies
Wait       sleeps ``seconds`` (a busy lock's poll)          ``None``
========== ================================================ ==========================

``HomeGets`` and ``HomeStore`` are a ``Round`` that a driver may carry out faster (the
synchronous one has a C round for each); answered as a ``Round``, they mean the same.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, NamedTuple, TypeAlias, TypeVar

from ._node import Node
from ._wire import Command

__all__ = ["Command", "HomeGets", "HomeStore", "Plan", "Round", "Steps", "Wait"]

T = TypeVar("T")

Plan: TypeAlias = Sequence[tuple[Node, Sequence[Command]]]


class Round(NamedTuple):
    """Send each node its commands in one round, by ``deadline`` (``perf_counter`` time)."""

    plan: Plan
    deadline: float


class HomeGets(NamedTuple):
    """``command`` (a ``gets``) to each of ``nodes`` over ``transports`` (theirs)."""

    nodes: Sequence[Node]
    transports: Sequence[Any]
    command: Command
    deadline: float


class HomeStore(NamedTuple):
    """``command`` (a ``set``) to each of ``nodes`` over ``transports`` (theirs)."""

    nodes: Sequence[Node]
    transports: Sequence[Any]
    command: Command
    deadline: float


class Wait(NamedTuple):
    """Sleep ``seconds``, then go on (the answer is None)."""

    seconds: float


#: An operation's steps: yields commands, is sent their answers, returns ``T``.
Steps: TypeAlias = Generator[Round | HomeGets | HomeStore | Wait, Any, T]
