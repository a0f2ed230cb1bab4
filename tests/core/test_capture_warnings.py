"""Warnings raised inside a guard are captured, every one; outside, nothing changes."""

from __future__ import annotations

import _warnings
import gc
import logging
import subprocess
import sys
import textwrap
import threading
import types
import warnings

import errpolicy
import pytest
from errpolicy import Action, Policy, Severity, _hooks

RECORD_ALL = Policy(raise_on="NONE", record="ALL")


def emit(text: str, category: type[Warning] = UserWarning) -> None:
    warnings.warn(text, category, stacklevel=2)


def test_every_repeat_from_one_line_is_captured() -> None:
    """Three identical warnings from one line give three events (recwarn gives one)."""
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        for _ in range(3):
            warnings.warn("same", UserWarning)
    assert ["same"] * 3 == [e.message for e in report.events]


def test_repeat_is_captured_after_the_registry_suppressed_it_outside() -> None:
    """A warning the module registry already saw outside a guard is still captured inside."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        ns: dict[str, object] = {"__name__": "tmod_registry", "warnings": warnings}
        exec(compile("def f():\n    warnings.warn('seen', UserWarning)\n", "tmod.py", "exec"), ns)
        f = ns["f"]
        assert callable(f)
        with warnings.catch_warnings(record=True) as outside:
            f()
            f()
        assert 1 == len(outside)
        registry = ns["__warningregistry__"]
        assert isinstance(registry, dict)
        assert any(isinstance(k, tuple) and k[0] == "seen" for k in registry)
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        f()
    assert ["seen"] == [e.message for e in report.events]


def test_c_level_warning_is_captured() -> None:
    """A warning from the C function itself (as C extensions raise them) is captured."""
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        _warnings.warn("from C", RuntimeWarning)
        _warnings.warn("from C", RuntimeWarning)
    assert [("from C", RuntimeWarning)] * 2 == [(e.message, e.category) for e in report.events]


def test_resource_warning_from_the_garbage_collector_is_captured() -> None:
    """A ResourceWarning the interpreter raises (ignored by default outside) reaches the guard."""
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        f = open(__file__)  # noqa: SIM115  # left unclosed on purpose
        del f
        gc.collect()
    assert [ResourceWarning] == [e.category for e in report.events]


def test_warn_explicit_is_captured() -> None:
    """warnings.warn_explicit inside a guard is captured with its own location."""
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        warnings.warn_explicit("explicit", UserWarning, "somewhere.py", 7)
    (event,) = report.events
    assert ("explicit", "somewhere.py", 7) == (event.message, event.filename, event.lineno)


def test_captured_warning_points_at_the_caller() -> None:
    """filename and lineno honour stacklevel, as the warnings module does."""
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        emit("located")
        line = sys._getframe().f_lineno - 1
    (event,) = report.events
    assert (__file__, line) == (event.filename, event.lineno)


def test_warning_instance_and_category() -> None:
    """A Warning instance keeps its class and object; the original is a WarningMessage."""
    w = DeprecationWarning("old api")
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        warnings.warn(w)
    (event,) = report.events
    assert DeprecationWarning is event.category
    assert w is event.original.message
    assert Severity.DEPRECATED == event.severity


def test_bad_category_raises_type_error_as_warnings_does() -> None:
    """A non-Warning category is a TypeError inside a guard too."""
    with pytest.raises(TypeError), errpolicy.guard("t", policy=RECORD_ALL):
        warnings.warn("x", int)  # type: ignore[arg-type]


def _type_error(*args: object, **kwargs: object) -> str:
    try:
        warnings.warn(*args, **kwargs)  # type: ignore[call-overload]
    except TypeError as error:
        return str(error)
    raise AssertionError("no TypeError")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), (("m",), {"bogus": 1}), (("m", UserWarning, 1, None, 5), {}), (("m", int), {})],
)
def test_arguments_that_do_not_bind_raise_the_original_error_inside_a_guard(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    """Bad arguments to warnings.warn raise warn()'s own TypeError inside a guard, nothing taken."""
    outside = _type_error(*args, **kwargs)
    with errpolicy.guard("t", policy=RECORD_ALL) as report:
        inside = _type_error(*args, **kwargs)
    assert outside == inside
    assert () == report.events


def test_error_filter_does_not_raise_inside_a_guard() -> None:
    """Inside a guard the policy decides, not the filters: an 'error' filter does not raise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with errpolicy.guard("t", policy=RECORD_ALL) as report:
            warnings.warn("would be an error", UserWarning)
            _warnings.warn("would be an error too", UserWarning)
    assert 2 == len(report.recorded)


def test_captured_warnings_are_not_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """Recorded and suppressed warnings do not reach stderr."""
    errpolicy.configure(sink=errpolicy.NullSink())
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with errpolicy.guard("t", policy=Policy(raise_on="NONE", record="WARNING")):
            warnings.warn("recorded", UserWarning)
            warnings.warn("suppressed", DeprecationWarning)
    assert "" == capsys.readouterr().err


def test_capture_warnings_logging_does_not_duplicate() -> None:
    """With logging.captureWarnings on, a warning is one event, not also a py.warnings record."""
    logging.captureWarnings(True)
    try:
        with errpolicy.guard("t", policy=RECORD_ALL) as report:
            warnings.warn("once", UserWarning)
    finally:
        logging.captureWarnings(False)
    assert [("warning", "once")] == [(e.source, e.message) for e in report.events]


def test_guard_does_not_clear_other_modules_registries() -> None:
    """Entering and leaving guards leaves every __warningregistry__ as it was."""
    module = types.ModuleType("tmod_untouched")
    exec("import warnings\ndef f():\n    warnings.warn('keep me', UserWarning)\n", module.__dict__)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        with warnings.catch_warnings(record=True):
            module.f()
        before = dict(module.__dict__["__warningregistry__"])
        for _ in range(5):
            with errpolicy.guard("t", policy=RECORD_ALL):
                warnings.warn("inside", UserWarning)
        after = dict(module.__dict__["__warningregistry__"])
    assert before == after
    assert len(before) > 1


def test_filters_are_unchanged_by_guards() -> None:
    """A guard's entry and exit leave warnings.filters as they were.

    (The first guard puts errpolicy's filter back in front if something, here
    pytest's per-test filters, displaced it; after that nothing changes.)
    """
    with errpolicy.guard("warm-up", policy=RECORD_ALL):
        pass
    before = list(warnings.filters)
    with errpolicy.guard("t", policy=RECORD_ALL):
        warnings.warn("x", UserWarning)
    assert before == list(warnings.filters)


def test_errpolicy_filter_is_first_and_invisible_outside() -> None:
    """The installed filter is first, and outside a guard it matches nothing."""
    with errpolicy.guard("warm-up", policy=RECORD_ALL):
        pass
    first = _hooks._effective_filters()[0]  # with context-aware warnings, the context's
    assert "always" == first[0]
    assert first[1].match("any text") is False


OUTSIDE_SCRIPT = textwrap.dedent(
    """
    import sys, warnings, logging
    logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")
    if sys.argv[1] == "with":
        import errpolicy
        # Recorded events go nowhere: the default sink (structlog's, or stdlib logging
        # without structlog) writes what guards record, and this is about the outside.
        errpolicy.configure(sink=errpolicy.NullSink())
        errpolicy.install()
        with errpolicy.guard("warm-up", policy=errpolicy.Policy(raise_on="NONE")):
            warnings.warn("inside", UserWarning)
            logging.getLogger("app").error("inside")
    def f(n):
        warnings.warn("repeat %d" % n, UserWarning)
        warnings.warn("deprecated", DeprecationWarning)
        warnings.warn("pending", PendingDeprecationWarning, stacklevel=2)
    for i in range(3):
        f(i % 2)
        f(0)
    warnings.warn("module", RuntimeWarning)
    warnings.warn("module", RuntimeWarning)
    logging.getLogger("app").warning("a record %s", 1)
    def g():
        warnings.warn("skip", UserWarning, stacklevel=2)
    g()
    """
)


@pytest.mark.parametrize(
    "flags", [[], ["-W", "always"], ["-W", "error::RuntimeWarning"], ["-X", "dev"]]
)
def test_outside_guards_output_is_exactly_as_without_errpolicy(flags: list[str]) -> None:
    """Same script, with and without errpolicy installed (and a guard used): same stderr."""

    def run(mode: str) -> tuple[int, str]:
        proc = subprocess.run(
            [sys.executable, *flags, "-c", OUTSIDE_SCRIPT, mode],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.returncode, proc.stderr.replace("<string>", "S")

    without = run("without")
    code, stderr = run("with")
    if _hooks.IMPLEMENTATION == "python":
        # The Python twin's documented limit: when a filter turns a warning into an
        # exception, its traceback also lists the hook's frames (each frame's line,
        # and the source and caret lines under it). The C hooks add none.
        kept: list[str] = []
        in_hook_frame = False
        for line in stderr.splitlines(keepends=True):
            if line.startswith("  File "):
                in_hook_frame = "errpolicy/_hooks.py" in line
            elif not line.startswith("    "):
                in_hook_frame = False
            if not in_hook_frame:
                kept.append(line)
        stderr = "".join(kept)
    assert without == (code, stderr)
    assert "repeat" in without[1] or "RuntimeWarning" in without[1]


def test_suppressed_warning_outside_scope_goes_through_filters() -> None:
    """A warning outside a scoped policy behaves as without the guard ('error' filter raises)."""
    scoped = Policy(raise_on="NONE", scope=errpolicy.match.logger("nothing.matches"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning), errpolicy.guard("t", policy=scoped):
            warnings.warn("not in scope", UserWarning)


def test_c_level_warning_outside_scope_uses_the_module_registry() -> None:
    """An out-of-scope C-level warning is deduplicated by the module registry as usual."""
    scoped = Policy(raise_on="NONE", scope=errpolicy.match.logger("nothing.matches"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        with errpolicy.guard("t", policy=scoped):
            for _ in range(3):
                _warnings.warn("c-level once", UserWarning)
    assert ["c-level once"] == [str(w.message) for w in seen]


def test_action_is_decided_per_severity() -> None:
    """DEPRECATED recorded, WARNING raised, DEBUG suppressed under one policy."""
    policy = Policy(raise_on="WARNING", record="DEPRECATED")
    with pytest.raises(errpolicy.PolicyViolation), errpolicy.guard("t", policy=policy) as report:
        warnings.warn("d", DeprecationWarning)
        warnings.warn("w", UserWarning)
    assert [Action.RECORD, Action.RAISE] == [e.action for e in report.events]


def test_a_warning_names_the_thread_it_was_raised_in() -> None:
    """thread and thread_id are the raising thread's, a named Thread's or a bare _thread one's."""
    import _thread

    seen: list[tuple[str, int, str, int]] = []
    done = threading.Event()

    def work() -> None:
        try:
            with errpolicy.guard("t", policy=RECORD_ALL) as report:
                warnings.warn("in a thread", UserWarning)
            (event,) = report.events
            current = threading.current_thread()
            seen.append((event.thread, event.thread_id, current.name, threading.get_ident()))
        finally:
            done.set()

    named = threading.Thread(target=work, name="worker-7")
    named.start()
    named.join()
    done.clear()
    _thread.start_new_thread(work, ())
    assert done.wait(30)
    (worker, bare) = seen
    assert ("worker-7", worker[3]) == worker[:2]
    assert worker[2] == worker[0]
    assert (bare[2], bare[3]) == bare[:2]
