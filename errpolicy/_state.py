"""Which guard is open where: one ContextVar, read by the capture hooks.

A frame links a guard's report to the guard it is nested in. Threads do not
inherit frames; :func:`carry` hands one over explicitly. asyncio tasks created
inside a guard copy the context and so belong to it while it is open.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._report import Report

P = ParamSpec("P")
R = TypeVar("R")

_get_ident = threading.get_ident


#: An open guard in one thread: (its report, the enclosing frame, the owning
#: thread's ident, the Guard that opened it). A plain tuple because one is made
#: on every guard entry.
Frame = tuple["Report", "Frame | None", int, object]


active: contextvars.ContextVar[Frame | None] = contextvars.ContextVar(
    "errpolicy_active", default=None
)

#: ``[frame]``: the frame that was innermost when the garbage collector started to
#: run finalizers, else ``[None]``. While it is there it captures nothing: what the
#: finalizers of other calls' garbage raise is not its call's (errpolicy._hooks.
#: collecting keeps it; one collection runs at a time in an interpreter). A list,
#: not the ContextVar: a gc callback must not touch the ContextVar (Python 3.11
#: collects inside allocations, ``ContextVar.set``'s and ``reset``'s among them).
hidden: list[Frame | None] = [None]


def current_frame() -> Frame | None:
    """The innermost frame that may capture here, or ``None``.

    A context copied into another thread without :func:`carry` (Python 3.14 can
    do that) does not count: guards belong to the thread that opened them; nor
    does the frame the garbage collector hides while it runs finalizers.
    """
    frame = active.get()
    if frame is None or frame[2] != _get_ident() or frame is hidden[0]:
        return None
    return frame


def carry(function: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``function`` so that it runs inside the caller's current guard.

    Use it to hand work to a thread or an executor:
    ``executor.submit(errpolicy.carry(fetch), url)``. Events raised by the
    function then reach the guard that was open when ``carry`` was called,
    as long as that guard is still open.
    """
    frame = active.get()

    @functools.wraps(function)
    def carried(*args: P.args, **kwargs: P.kwargs) -> R:
        moved = None if frame is None else (frame[0], frame[1], _get_ident(), frame[3])
        token = active.set(moved)
        try:
            return function(*args, **kwargs)
        finally:
            active.reset(token)

    return carried
