"""Copied beside errpolicy's build as ``errpolicy_fidelity_startup.py``; imported at
the start of every interpreter of a run with errpolicy, subprocesses included.

The suite's venv holds a ``.pth`` file (:data:`PTH_LINE`) that, only when
``ERRPOLICY_FIDELITY_MODE=with``, appends ``$ERRPOLICY_FIDELITY_BOOT`` to
``sys.path`` and imports this module, which installs errpolicy's hooks and starts
a daemon thread that keeps entering and leaving guards which raise their own
warnings and log records. Without that variable the line imports nothing, so
the run without errpolicy is a plain interpreter. A ``.pth`` file rather than
``PYTHONPATH``: isolated subprocesses (``python -I``) read it too.
Standard library and errpolicy's public API only: it runs on every Python the
harness drives, 3.11 to 3.15.
"""

from __future__ import annotations

import os

#: In every message of the thread, so a leak into a suite's output can be found.
MARKER = "errpolicy-fidelity-churn"
#: The module's name in the boot folder.
NAME = "errpolicy_fidelity_startup"
#: The one line of the venv's ``errpolicy-fidelity.pth`` (``site`` runs lines that start
#: with ``import``); ``os`` and ``sys`` are already imported by then.
PTH_LINE = (
    'import os, sys; os.environ.get("ERRPOLICY_FIDELITY_MODE") == "with" and ('
    f'sys.path.append(os.environ["ERRPOLICY_FIDELITY_BOOT"]), __import__("{NAME}"))'
)


def _churn(interval: float, counts: dict[str, object]) -> None:
    import logging
    import time
    import warnings

    import errpolicy

    class ChurnWarning(UserWarning):
        """The thread's own warning category."""

    # Not registered with logging's manager: a suite that lists or resets loggers
    # must not find it. Its records only ever reach errpolicy's hook.
    log = logging.Logger(f"{MARKER}.log", logging.DEBUG)
    # Errors and deprecations are recorded (to the NullSink), the rest suppressed:
    # both actions run on every cycle.
    policy = errpolicy.Policy(raise_on="NONE", record="ERROR | DEPRECATED")
    while True:
        try:
            with errpolicy.guard("fidelity.churn", policy=policy):
                warnings.warn(f"{MARKER}: warn", ChurnWarning, stacklevel=1)
                warnings.warn(f"{MARKER}: deprecated", DeprecationWarning, stacklevel=1)
                warnings.warn_explicit(
                    f"{MARKER}: explicit", ChurnWarning, __file__, 1, module=__name__
                )
                log.error("%s: error record", MARKER)
                log.warning("%s: warning record", MARKER)
            counts["cycles"] = int(counts["cycles"]) + 1  # type: ignore[call-overload]  # one writer
        except BaseException as exc:  # the thread must survive to count the rest
            counts["escaped"] = int(counts["escaped"]) + 1  # type: ignore[call-overload]
            counts.setdefault("first_escape", repr(exc)[:300])
        time.sleep(interval)


def _write_counts(folder: str, counts: dict[str, object]) -> None:
    import json

    path = os.path.join(folder, f"churn-{os.getpid()}.json")
    with open(path, "w", encoding="utf-8") as out:
        json.dump(counts, out)


#: The guard thread's counters (``cycles``, ``escaped``), once it has started.
COUNTS: dict[str, object] = {}


def _start() -> None:
    if os.environ.get("ERRPOLICY_FIDELITY_MODE") != "with":
        return  # imports nothing: the run without errpolicy stays a plain interpreter
    import atexit
    import threading

    import errpolicy

    # Recorded events stay on the guard's report: the default sink would log them.
    errpolicy.configure(sink=errpolicy.NullSink())
    errpolicy.install()
    if os.environ.get("ERRPOLICY_FIDELITY_CHURN", "1") == "0":
        return
    interval = float(os.environ.get("ERRPOLICY_FIDELITY_INTERVAL", "0.002"))
    counts = COUNTS
    counts.update(cycles=0, escaped=0)
    folder = os.environ.get("ERRPOLICY_FIDELITY_CHURN_DIR")
    if folder:
        atexit.register(_write_counts, folder, counts)
    threading.Thread(target=_churn, args=(interval, counts), name=MARKER, daemon=True).start()


if __name__ == NAME:  # the harness imports this file as tests.fidelity._startup: no start
    _start()
