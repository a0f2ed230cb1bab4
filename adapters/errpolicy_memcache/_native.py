"""The C speedups of the session read (``_speedups.c``), when they were built.

``speedups`` is the module, or None: no C compiler at install time, or
``ERRPOLICY_PURE_PYTHON`` set to a non-empty value (the same switch as the core's).
Each C function has a Python twin that stays the reference and runs without it:
``_placement.rank``, the pipelined ``gets`` round of ``_transport`` (the same reply
grammar, limits and deadline), and the session data checks of ``_data`` (where C
only answers "surely fine" and leaves the rest to the Python walk).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Final

from ._wire import NodeFailure

__all__ = ["IMPLEMENTATION", "speedups"]


def _load() -> ModuleType | None:
    if os.environ.get("ERRPOLICY_PURE_PYTHON"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    _speedups.setup(failure=NodeFailure)
    return _speedups


speedups: Final = _load()

#: ``"c"`` when the C speedups are in use, else ``"python"``.
IMPLEMENTATION: Final = "c" if speedups is not None else "python"
