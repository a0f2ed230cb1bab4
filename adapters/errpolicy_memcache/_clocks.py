"""The clocks a store's sans-IO core reads, handed to it by its driver.

The core (``_machine*.py``) and what it holds (breakers, the fault clock, the handoff)
read no clock of their own: each driver passes a :class:`Clocks` to the core, the
process's clocks unless a test or a simulation passes its own (h11's model: the
protocol's decisions take time as an input). One value, four callables, each bound
once by its reader, so a read costs what ``time.perf_counter()`` costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PROCESS_CLOCKS", "Clocks"]


@dataclass(frozen=True, slots=True)
class Clocks:
    """The core's four clocks.

    - ``wall``: seconds since the epoch, for creation times and expiry (the store's
      ``clock`` option);
    - ``monotonic``: seconds, for lock ages, breakers' backoffs, the fault clock and
      the handoff's expiries;
    - ``ticks``: seconds, for operation deadlines and elapsed times; the sync driver's
      transports keep their deadlines on ``time.perf_counter``, so a store that talks
      to real nodes keeps that one;
    - ``ns``: nanoseconds since the epoch, for record versions.
    """

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    ticks: Callable[[], float] = time.perf_counter
    ns: Callable[[], int] = time.time_ns


#: The process's clocks: what each driver passes unless told otherwise.
PROCESS_CLOCKS = Clocks()
