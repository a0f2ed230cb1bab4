"""The commands the store's sans-IO core yields to a driver (h11's model: the core
says what to send, the driver sends it and feeds the answer back).

Each operation of :class:`~._machine_read.StoreCore` is a generator of these: the
driver carries one out and sends the generator its answer, until the generator
returns the operation's result. Three commands, each a plain tuple whose first item
names it (a tuple: every request builds some, and a tuple costs a fraction of an
object with attributes):

- ``(ROUND, plan, deadline)``: send each node its commands in one round, by
  ``deadline`` (on the core's ``ticks`` clock, ``_clocks``); answer: ``list[Reply]``,
  one a node.
- ``(HOME_STORE, known, command)``: the usual save, ``command`` to each of
  ``known.home`` (the sync driver's C round over the connections of
  ``known.route``); answer:
  ``True`` if every one stored it, else their replies.
- ``(WAIT, seconds)``: sleep (a busy lock's poll); answer: ``None``.

The usual read and save need no generator at all (the sync driver's fast paths): a
driver asks ``StoreCore.home_known`` which home to read, reads it in one round, and
hands the agreed copy to ``StoreCore.home_session`` (or the replies to
``StoreCore.start``); a save is ``prepare_save``, one round, ``home_saved`` (or the
replies to ``StoreCore.save``). ``HOME_STORE`` is that round when the save's steps run
whole (the asyncio driver).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeAlias, TypeVar

from ._node import Node
from ._wire import Command

__all__ = ["HOME_STORE", "ROUND", "WAIT", "Plan", "Steps"]

T = TypeVar("T")

Plan: TypeAlias = Sequence[tuple[Node, Sequence[Command]]]

ROUND = "round"
HOME_STORE = "home_store"
WAIT = "wait"

#: An operation's steps: yields commands (tuples, above), is sent their answers,
#: returns ``T``.
Steps: TypeAlias = Generator[tuple[Any, ...], Any, T]
