"""The guard's hot path exists twice, in C (errpolicy/_speedups.c) and in Python
(errpolicy/_core.py). These tests pin down which one runs and check what only the C one
can get wrong (setup's checks, references). `make pytest` runs the whole of tests/core
again with ERRPOLICY_PURE_PYTHON=1, as a pytest run of its own."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import os
import subprocess
import sys
import tracemalloc
import warnings
from types import ModuleType

import errpolicy
import pytest
from errpolicy import ConfigurationError, Policy, _core
from errpolicy._event import new_event

COMPILED = _core.IMPLEMENTATION == "c"
needs_c = pytest.mark.skipif(not COMPILED, reason="the C speedups are not loaded")


@pytest.mark.skipif(
    not os.environ.get("CI") or bool(os.environ.get("ERRPOLICY_PURE_PYTHON")),
    reason="only CI promises a C compiler",
)
def test_ci_runs_the_compiled_guard() -> None:
    """CI machines have a compiler: a build that silently fell back to Python fails here."""
    assert "c" == _core.IMPLEMENTATION


def test_pure_python_switch_is_honoured() -> None:
    """ERRPOLICY_PURE_PYTHON=1 in a new process selects the Python entry path."""
    code = "from errpolicy import _core; print(_core.IMPLEMENTATION)"
    env = {**os.environ, "ERRPOLICY_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "python" == out.stdout.strip()


@pytest.mark.skipif(
    not os.environ.get("ERRPOLICY_PURE_PYTHON"), reason="for the run on the Python twins"
)
def test_the_run_on_the_python_twins_runs_python() -> None:
    """The second pass of `make pytest` really exercises errpolicy/_core.py."""
    assert "python" == _core.IMPLEMENTATION


def test_guard_lookup_answers_like_the_python_function() -> None:
    same = errpolicy.guard("speedups.same")
    assert same is errpolicy.guard("speedups.same")
    assert same is errpolicy.guard(name="speedups.same")
    own = errpolicy.guard("speedups.same", policy=Policy(raise_on="NONE"))
    assert own is not same
    assert "speedups.same" == own.name
    with pytest.raises(ConfigurationError, match="non-empty name"):
        errpolicy.guard(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="non-empty name"):
        errpolicy.guard(["x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        errpolicy.guard()  # type: ignore[call-arg]


def _fresh_speedups() -> ModuleType:
    """Another module object of errpolicy._speedups, with its own state (PEP 489)."""
    spec = importlib.util.find_spec("errpolicy._speedups")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_c
def test_each_module_object_has_its_own_state() -> None:
    """Multi-phase init: a second module object has its own types and is not set up."""
    from errpolicy import _speedups

    fresh = _fresh_speedups()
    assert fresh is not _speedups
    assert fresh.GuardCore is not _speedups.GuardCore
    with pytest.raises(RuntimeError, match="setup"):
        fresh.guard("speedups.fresh")
    with pytest.raises(RuntimeError, match="setup"):
        fresh.GuardCore().__enter__()
    with pytest.raises(RuntimeError, match="setup_event"):
        fresh.new_event()
    assert errpolicy.guard("speedups.fresh") is errpolicy.guard("speedups.fresh")


@needs_c
def test_setup_refuses_what_the_hot_path_cannot_use() -> None:
    fresh = _fresh_speedups()

    class Report(fresh.ReportCore):  # type: ignore[misc,name-defined]
        pass

    with pytest.raises(TypeError):
        fresh.setup(active=None)
    good = {
        "active": errpolicy._state.active,
        "warnings_module": warnings,
        "front_filter": None,
        "ensure_ready": lambda: None,
        "config_module": errpolicy._config,
        "report_type": Report,
        "resolve": lambda guard, config: None,
        "finish": lambda report, exc: None,
        "shared_guards": {"kept": "the guard"},
        "make_guard": lambda name: None,
        "policy_type": Policy,
        "hidden": errpolicy._state.hidden,
    }
    bad: dict[str, object] = {
        "active": "not a ContextVar",
        "report_type": errpolicy.Report,  # another module object's ReportCore
        "warnings_module": object(),
        "finish": 42,
        "shared_guards": [],
        "policy_type": "Policy",
        "hidden": (None,),  # read as a list of one frame
    }
    for key, value in bad.items():
        with pytest.raises(TypeError):
            fresh.setup(**{**good, key: value})
    fresh.setup(**good)
    assert "the guard" == fresh.guard("kept")


@needs_c
def test_setup_event_refuses_names_that_are_not_slots() -> None:
    """new_event writes at the slots' offsets: a name that is no slot of the type is refused."""
    fresh = _fresh_speedups()
    names = tuple(f.name for f in dataclasses.fields(errpolicy.Event))
    with pytest.raises(TypeError, match="not a slot"):
        fresh.setup_event(errpolicy.Event, (*names[:-1], "as_dict"), (None, "default"), 0)
    with pytest.raises(TypeError):
        fresh.setup_event(errpolicy.Event, names[:-1], (None, "default"), 0)

    class Shadowed(errpolicy.Event):
        __slots__ = ()
        message = "a class attribute"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="not a slot"):
        fresh.setup_event(Shadowed, names, (None, "default"), 0)


def test_guard_entries_leak_nothing() -> None:
    """Reports, frames, tokens and policies made per entry are all freed."""
    policy = Policy(raise_on="NONE", record="ALL")
    errpolicy.configure(sink=errpolicy.NullSink())
    recording = errpolicy.Guard("speedups.leak", policy=policy)
    idle = errpolicy.guard("speedups.idle")
    fields = [f.name for f in dataclasses.fields(errpolicy.Event)][:14]

    def run(n: int) -> None:
        for i in range(n):
            with idle:
                pass
            with errpolicy.guard("speedups.idle"), idle:
                pass
            with errpolicy.guard("speedups.kept", policy=policy):
                pass
            made = new_event(*fields)
            assert made == errpolicy.Event(**dict(zip(fields, fields, strict=True)))
            if i % 10 == 0:
                with recording as report:
                    warnings.warn("leak check", UserWarning, stacklevel=1)
                assert 1 == len(report.recorded)

    run(2_000)  # warm caches: the class-level storage, interned strings, free lists
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(20_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 20,000 leaked reports would be over a megabyte; allow for allocator noise.
    assert grown < 64_000, grown


def test_an_exit_without_entry_is_refused_and_changes_nothing() -> None:
    g = errpolicy.guard("speedups.stray")
    with pytest.raises(RuntimeError, match="not the innermost"):
        g.__exit__(None, None, None)
    with g as report:
        assert report.open
    assert not report.open
    assert errpolicy._state.active.get() is None
