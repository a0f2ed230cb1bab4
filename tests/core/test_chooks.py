"""The hooks exist twice, in C (errpolicy/_chooks.c) and in Python (errpolicy._hooks.PyHook):
which one runs, what only the C one can get wrong (references, binding), and that both
answer the same."""

from __future__ import annotations

import contextvars
import gc
import logging
import os
import subprocess
import sys
import tracemalloc
import warnings
from typing import Any

import errpolicy
import pytest
from errpolicy import Policy, _hooks

COMPILED = _hooks.IMPLEMENTATION == "c"
needs_c = pytest.mark.skipif(not COMPILED, reason="the C hooks are not loaded")
RECORD_ALL = Policy(raise_on="NONE", record="ALL")
OTHER_SCOPE = Policy(raise_on="NONE", scope=errpolicy.match.logger("nothing.matches"))


@pytest.mark.skipif(
    not os.environ.get("CI") or bool(os.environ.get("ERRPOLICY_PURE_PYTHON")),
    reason="only CI promises a C compiler",
)
def test_ci_runs_the_compiled_hooks() -> None:
    """CI machines have a compiler: hooks that silently fell back to Python fail here."""
    assert "c" == _hooks.IMPLEMENTATION


def test_pure_python_switch_is_honoured_by_the_hooks() -> None:
    """ERRPOLICY_PURE_PYTHON=1 makes the hooks Python objects."""
    code = "from errpolicy import _hooks; print(_hooks.IMPLEMENTATION)"
    env = {**os.environ, "ERRPOLICY_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "python" == out.stdout.strip()


def hook_types() -> list[type[Any]]:
    """Every hook implementation that can run here."""
    types: list[type[Any]] = [_hooks.PyHook]
    if COMPILED:
        from errpolicy import _chooks

        types.append(_chooks.Hook)
    return types


@pytest.mark.parametrize("hook_type", hook_types())
def test_a_hook_answers_as_the_slow_function_says(hook_type: type[Any]) -> None:
    """Outside a guard: the original. Inside: None, True (forward) or (callable, args)."""
    active: Any = _hooks._active
    calls: list[tuple[Any, ...]] = []

    def original(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        return "original"

    answers: list[Any] = [None, True, (lambda *a: f"other {a}", (1, 2))]

    def slow(frame: Any, *args: Any, **kwargs: Any) -> Any:
        return answers.pop(0)

    hook = hook_type(original, slow, active)
    assert "original" == hook(1, key="v")
    with errpolicy.guard("t"):
        assert hook(2) is None
        assert "original" == hook(3, key="w")  # forwarded as given
        assert "other (1, 2)" == hook(4)
    assert [((1,), {"key": "v"}), ((3,), {"key": "w"})] == calls


@pytest.mark.parametrize("hook_type", hook_types())
def test_forwarding_switches_capture_off_and_back_on(hook_type: type[Any]) -> None:
    """What a hook forwards runs as outside any guard; the guard is back afterwards."""
    seen: list[object] = []
    hook = hook_type(
        lambda: seen.append(errpolicy._state.current_frame()), lambda f: True, _hooks._active
    )
    with errpolicy.guard("t"):
        hook()
        assert errpolicy._state.current_frame() is not None
    assert [None] == seen


@pytest.mark.parametrize("hook_type", hook_types())
def test_a_method_hook_binds_and_a_function_hook_does_not(hook_type: type[Any]) -> None:
    """bind=True binds like a function on a class; otherwise the hook stays unbound."""

    class Owner:
        method = hook_type(lambda *a: a, None, _hooks._active, bind=True)
        function = hook_type(lambda *a: a, None, _hooks._active)

    owner = Owner()
    assert (owner, 1) == owner.method(1)
    assert (1,) == owner.function(1)


@pytest.mark.parametrize("hook_type", hook_types())
def test_a_hook_without_slow_is_a_pass_through(hook_type: type[Any]) -> None:
    """slow=None: inside a guard too, the original runs (errpolicy's layer after uninstall)."""
    hook = hook_type(lambda: "original", None, _hooks._active)
    with errpolicy.guard("t"):
        assert "original" == hook()


@needs_c
def test_c_hook_refuses_what_is_not_callable() -> None:
    """The C constructor checks its arguments."""
    from errpolicy import _chooks

    with pytest.raises(TypeError):
        _chooks.Hook(1, None, _hooks._active)
    with pytest.raises(TypeError):
        _chooks.Hook(print, None, contextvars.copy_context())
    with pytest.raises(TypeError):
        _chooks.Hook(print, None, _hooks._active, hidden=(None,))
    with pytest.raises(TypeError):
        _chooks.GuardIsOpen(_hooks._active, (None,))


def test_the_hooks_and_the_filter_step_aside_for_the_frame_the_collector_hides() -> None:
    """While errpolicy._state.hidden holds this thread's frame, the hook forwards and the
    filter's matcher is false; other frames of the thread still count (the C hooks and
    the Python twin alike)."""
    from errpolicy import _state

    calls: list[str] = []
    hook = _hooks._make_hook(
        "t", lambda: calls.append("original") or "original", lambda frame: "slow", False, True
    )
    with errpolicy.guard("t") as report:
        frame = _state.active.get()
        assert frame is not None
        assert frame[0] is report
        assert "slow" == hook()
        assert _hooks._MATCHER.match("")
        _state.hidden[0] = frame
        try:
            assert "original" == hook()
            assert not _hooks._MATCHER.match("")
            assert _state.current_frame() is None
            with errpolicy.guard("t.own") as own:  # opened while hidden: counts, alone
                assert "slow" == hook()
                assert _state.active.get()[1] is None  # type: ignore[index]
        finally:
            _state.hidden[0] = None
        assert "slow" == hook()
    assert own.events == ()
    assert calls == ["original"]


@needs_c
def test_c_hooks_leak_nothing() -> None:
    """Tens of thousands of calls through every path of the C hooks leave no memory behind."""
    errpolicy.configure(sink=errpolicy.NullSink())
    logger = logging.getLogger("t.chooks.leak")
    logger.propagate = False
    logger.addHandler(logging.NullHandler())

    def run(n: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(n):
                warnings.warn("outside", UserWarning)
                logger.warning("outside %d", i)
                with errpolicy.guard("t", policy=OTHER_SCOPE):
                    warnings.warn("forwarded", UserWarning)
                    logger.warning("forwarded")
                with errpolicy.guard("t", policy=RECORD_ALL):
                    warnings.warn("taken", UserWarning)
                    logger.warning("taken")

    run(500)  # warm caches
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(4_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # One leaked reference per call would keep megabytes; allow for allocator noise.
    assert grown < 64_000, grown
