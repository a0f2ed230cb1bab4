"""Installed hooks leave no trace: the same arguments, the same frames, the same answers.

Frame tests need the C hooks (``errpolicy._chooks``): the Python twin adds its own
frames, which is the documented limit tested at the end of this file.
"""

from __future__ import annotations

import _warnings
import io
import logging
import os
import subprocess
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import errpolicy
import pytest
from errpolicy import Policy, _hooks, match

ERRPOLICY_DIR = str(Path(errpolicy.__file__).resolve().parent)
needs_c = pytest.mark.skipif(_hooks.IMPLEMENTATION != "c", reason="the C hooks are not loaded")
RECORD_ALL = Policy(raise_on="NONE", record="ALL")
OTHER_SCOPE = Policy(raise_on="NONE", record="ALL", scope=match.logger("nothing.matches"))


def ours(filenames: list[str]) -> list[str]:
    """The filenames among ``filenames`` that are errpolicy's."""
    return [f for f in filenames if f.startswith(ERRPOLICY_DIR)]


@pytest.fixture
def installed() -> None:
    """errpolicy's hooks are in place (and a guard has put its filter first)."""
    errpolicy.install()
    with errpolicy.guard("warm-up"):
        pass


def twice(observe: Callable[[], Any]) -> tuple[Any, Any]:
    """``observe()`` without errpolicy's hooks, then with them (from the same line)."""
    seen = []
    errpolicy.uninstall()
    try:
        for step in ("without", "with"):
            if step == "with":
                errpolicy.install()
                with errpolicy.guard("warm-up"):
                    pass
            seen.append(observe())
    finally:
        errpolicy.install()
    return seen[0], seen[1]


# -- 1. warn_explicit forwards exactly what it was given -----------------------------


def test_warn_explicit_without_module_is_not_dropped(installed: None) -> None:
    """warn_explicit without ``module`` reaches catch_warnings as it does without errpolicy."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.warn_explicit("x", UserWarning, "f.py", 1)
    assert [("x", "f.py", 1)] == [(str(w.message), w.filename, w.lineno) for w in seen]


def test_warn_explicit_module_is_derived_from_the_filename(installed: None) -> None:
    """Without ``module``, a module filter matches the filename minus ``.py``, as in CPython."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("ignore")
        warnings.filterwarnings("always", module="pkg/mod")
        warnings.warn_explicit("y", UserWarning, "pkg/mod.py", 3)
    assert ["y"] == [str(w.message) for w in seen]


# -- 2. no errpolicy frame -----------------------------------------------------------


def _raise_by_filter(call: Callable[[], None]) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            call()
        except UserWarning as error:
            return [f.filename for f in traceback.extract_tb(error.__traceback__)]
    raise AssertionError("the 'error' filter did not raise")


@needs_c
def test_error_filter_traceback_has_no_errpolicy_frame(installed: None) -> None:
    """Under an 'error' filter, the warning's traceback lists the caller's frames only."""
    tb = _raise_by_filter(lambda: warnings.warn("boom", UserWarning))
    assert [] == ours(tb)
    assert __file__ == tb[-1]


@needs_c
def test_error_filter_traceback_of_warn_explicit_has_no_errpolicy_frame(installed: None) -> None:
    """The same for warn_explicit."""
    tb = _raise_by_filter(lambda: warnings.warn_explicit("boom", UserWarning, "f.py", 1))
    assert [] == ours(tb)


@needs_c
def test_out_of_scope_warning_inside_a_guard_raises_without_errpolicy_frames(
    installed: None,
) -> None:
    """A warning no guard takes is forwarded from C: its traceback has no errpolicy frame."""

    def call() -> None:
        with errpolicy.guard("t", policy=OTHER_SCOPE):
            warnings.warn("boom", UserWarning)

    tb = _raise_by_filter(call)
    assert [] == ours(tb)
    assert __file__ == tb[-1]


def _stack_seen_by_showwarning() -> list[str]:
    stacks: list[list[str]] = []

    def show(*args: object, **kwargs: object) -> None:
        stacks.append([f.filename for f in traceback.extract_stack()])

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        warnings.warn("shown", UserWarning)
    return stacks[0]


@needs_c
def test_custom_showwarning_sees_the_same_stack() -> None:
    """A custom showwarning sees exactly the stack it sees without errpolicy."""
    without, with_errpolicy = twice(_stack_seen_by_showwarning)
    assert without == with_errpolicy


def _handler_view() -> tuple[list[str], tuple[str, int, str]]:
    seen: list[Any] = []

    class Walk(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append([f.filename for f in traceback.extract_stack()])
            seen.append((record.pathname, record.lineno, record.funcName))

    logger = logging.getLogger("t.fidelity.walk")
    logger.propagate = False
    walk = Walk()
    logger.addHandler(walk)
    try:
        logger.warning("walk")
    finally:
        logger.removeHandler(walk)
    return seen[0], seen[1]


@needs_c
def test_handler_stack_walk_and_find_caller_are_unchanged() -> None:
    """A handler walking the stack, and logging's findCaller, see what they see without us."""
    without, with_errpolicy = twice(_handler_view)
    assert without == with_errpolicy
    assert [] == ours(with_errpolicy[0])


@needs_c
def test_handler_inside_a_guard_sees_no_errpolicy_frame(installed: None) -> None:
    """A record no guard takes reaches its handlers from C: no errpolicy frame on their stack."""
    with errpolicy.guard("t", policy=OTHER_SCOPE):
        stack, _ = _handler_view()
    assert [] == ours(stack)


def _handle_error_output() -> str:
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                raise RuntimeError("handler failed")
            except RuntimeError:
                self.handleError(record)

    logger = logging.getLogger("t.fidelity.broken")
    logger.propagate = False
    broken = Broken()
    logger.addHandler(broken)
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        logger.error("x")
        return sys.stderr.getvalue()
    finally:
        sys.stderr = stderr
        logger.removeHandler(broken)


@needs_c
def test_handle_error_output_is_unchanged() -> None:
    """Handler.handleError prints the same traceback and call stack as without errpolicy."""
    without, with_errpolicy = twice(_handle_error_output)
    assert without == with_errpolicy
    assert "Call stack:" in with_errpolicy


@needs_c
def test_structlog_callsite_in_a_processor_formatter_is_the_users() -> None:
    """structlog's CallsiteParameterAdder, run in a ProcessorFormatter, reports this file."""
    structlog = pytest.importorskip("structlog")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.processors.CallsiteParameterAdder(
                    [
                        structlog.processors.CallsiteParameter.PATHNAME,
                        structlog.processors.CallsiteParameter.FUNC_NAME,
                    ]
                ),
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.KeyValueRenderer(key_order=["pathname", "func_name"]),
            ]
        )
    )
    stdlib_logger = logging.getLogger("t.fidelity.structlog")
    stdlib_logger.propagate = False
    stdlib_logger.addHandler(handler)
    structlog.configure(
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    errpolicy.install()
    try:
        structlog.get_logger("t.fidelity.structlog").warning("hello")
    finally:
        structlog.reset_defaults()
        stdlib_logger.removeHandler(handler)
    function = "test_structlog_callsite_in_a_processor_formatter_is_the_users"
    expected = f"pathname='{__file__}' func_name='{function}' event='hello'"
    assert expected == out.getvalue().splitlines()[0]


def _locations() -> list[tuple[str, int]]:
    namespace: dict[str, Any] = {"warnings": warnings}
    source = textwrap.dedent(
        """
        def level(n):
            warnings.warn("at %d" % n, UserWarning, stacklevel=n)
        def outer(n):
            level(n)
        """
    )
    exec(compile(source, "/somewhere/helper.py", "exec"), namespace)
    skipping: dict[str, Any] = {"warnings": warnings}
    if sys.version_info >= (3, 12):
        exec(
            compile(
                "def lib():\n    warnings.warn('skip', UserWarning,"
                " skip_file_prefixes=('/skipme',))\n",
                "/skipme/lib.py",
                "exec",
            ),
            skipping,
        )
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for n in (0, 1, 2, 3, 4):
            namespace["outer"](n)
        if sys.version_info >= (3, 12):
            skipping["lib"]()
    return [(w.filename, w.lineno) for w in seen]


def test_stacklevel_and_skip_file_prefixes_point_where_they_did() -> None:
    """stacklevel (and skip_file_prefixes on 3.12+) give the same filename and line."""
    without, with_errpolicy = twice(_locations)
    assert without == with_errpolicy
    assert ("/somewhere/helper.py", 3) == with_errpolicy[1]


def test_captured_warning_location_honours_stacklevel_like_the_warnings_module() -> None:
    """Inside a guard the event's location is where catch_warnings would put it."""
    errpolicy.configure(sink=errpolicy.NullSink())
    seen = []
    for inside in (False, True):
        with errpolicy.guard("t", policy=RECORD_ALL if inside else OTHER_SCOPE) as report:
            seen.append(_locations())
    expected, no_warnings_left = seen
    assert [] == no_warnings_left  # the guard took them all
    assert expected == [(e.filename, e.lineno) for e in report.events]


PYTEST_FILE = """
import warnings

def test_warns():
    warnings.warn("located", UserWarning)
"""


@needs_c
def test_pytest_reports_the_users_line_under_error_filter(tmp_path: Path) -> None:
    """pytest -W error, errpolicy installed in a conftest: the failure points at the test."""
    (tmp_path / "conftest.py").write_text("import errpolicy\nerrpolicy.install()\n")
    (tmp_path / "test_located.py").write_text(PYTEST_FILE)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("-p", "no:asyncio", "-p", "no:randomly", "-W", "error::UserWarning"),
            "test_located.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
    )
    assert 1 == result.returncode, result.stdout[-2000:]
    assert "test_located.py:5: UserWarning" in result.stdout
    assert "_hooks.py" not in result.stdout


# -- 5. a scoped guard does not swallow what it does not take --------------------------


def test_warn_explicit_outside_the_scope_goes_on(installed: None) -> None:
    """warn_explicit no guard takes reaches the filters and catch_warnings unchanged."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with errpolicy.guard("t", policy=OTHER_SCOPE) as report:
            warnings.warn_explicit("explicit", UserWarning, "f.py", 1)
    assert ["explicit"] == [str(w.message) for w in seen]
    assert () == report.events


def test_c_level_warn_explicit_outside_the_scope_goes_on(installed: None) -> None:
    """A C-level warning pointing at no frame on the stack is not dropped by a scoped guard."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with errpolicy.guard("t", policy=OTHER_SCOPE):
            _warnings.warn_explicit("from C", UserWarning, "nowhere.py", 1)
            _warnings.warn("far away", UserWarning, stacklevel=200)
    assert ["from C", "far away"] == [str(w.message) for w in seen]


def test_c_level_warning_outside_the_scope_keeps_once_dedup(installed: None) -> None:
    """'once' applies to out-of-scope C-level warnings as without errpolicy."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("once")
        with errpolicy.guard("t", policy=OTHER_SCOPE):
            _warnings.warn("once only", UserWarning)
            _warnings.warn("once only", UserWarning)
    assert ["once only"] == [str(w.message) for w in seen]


def test_c_level_warning_outside_the_scope_follows_an_error_filter(installed: None) -> None:
    """An 'error' filter turns an out-of-scope C-level warning into an exception, as usual."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="raised"), errpolicy.guard("t", policy=OTHER_SCOPE):
            _warnings.warn("raised", UserWarning)


# -- 8. what installing leaves alone -------------------------------------------------


def test_installing_leaves_the_filters_and_level_names_alone() -> None:
    """install() and configure() add no filter and rename no level (a guard adds the filter)."""
    code = textwrap.dedent(
        """
        import logging, warnings
        before = list(warnings.filters)
        import errpolicy
        errpolicy.install()
        errpolicy.configure(capture_log_level="DEBUG")
        assert before == warnings.filters, warnings.filters
        assert "Level 25" == logging.getLevelName(25)
        with errpolicy.guard("first"):
            pass
        assert warnings.filters[1:] == before
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ok\n" == result.stdout, result.stderr[-2000:]


@pytest.mark.skipif(_hooks.CONTEXT_AWARE, reason="each catch_warnings has its own filters")
def test_a_guard_in_another_thread_puts_the_filter_back_after_resetwarnings() -> None:
    """Kept on purpose (docs/capture.md): a guard needs its filter first, in any thread."""
    import threading

    with warnings.catch_warnings():
        warnings.resetwarnings()
        assert [] == warnings.filters
        thread_guard = errpolicy.guard("other.thread")

        def enter_and_leave() -> None:
            with thread_guard:
                pass

        t = threading.Thread(target=enter_and_leave)
        t.start()
        t.join()
        assert [_hooks.ENTRY] == warnings.filters


def test_hooks_look_like_what_they_replace(installed: None) -> None:
    """Names and docs come from the function each hook wraps."""
    assert "warn" == warnings.warn.__name__
    assert _warnings.warn.__doc__ == warnings.warn.__doc__
    assert _warnings.warn is _hooks.below("warn")
    assert "callHandlers" == logging.Logger.callHandlers.__name__
    logger = logging.getLogger("t.fidelity.bound")
    assert logger is logger.callHandlers.__self__


@pytest.mark.parametrize("name", ["warn", "warn_explicit"])
def test_the_hooks_in_place_of_builtins_introspect_as_before(installed: None, name: str) -> None:
    """warnings.warn and warn_explicit keep their name, qualname, doc and signature."""
    import inspect

    def described(function: Any) -> tuple[Any, ...]:
        try:
            signature: Any = inspect.signature(function)
        except ValueError:  # warn_explicit has none on some versions, before and after
            signature = None
        return function.__name__, function.__qualname__, function.__doc__, signature

    original = getattr(_warnings, name)
    ours = getattr(warnings, name)
    assert original is not ours
    assert described(original) == described(ours)


@pytest.mark.skipif(_hooks.IMPLEMENTATION != "c", reason="the C hooks only")
@pytest.mark.parametrize("name", ["warn", "warn_explicit"])
def test_the_c_hooks_in_place_of_builtins_keep_module_and_text_signature(
    installed: None, name: str
) -> None:
    """In C also __module__ and __text_signature__ (the Python twin's are its own)."""
    original = getattr(_warnings, name)
    ours = getattr(warnings, name)
    expected = (original.__module__, original.__text_signature__)
    assert expected == (ours.__module__, ours.__text_signature__)


@pytest.mark.skipif(_hooks.IMPLEMENTATION != "c", reason="the C hooks only")
@pytest.mark.parametrize("name", ["warn", "warn_explicit"])
def test_a_builtin_is_put_in_place_of_a_builtin(installed: None, name: str) -> None:
    """CPython calls warnings.warn by its fastest path (an exact builtin) with errpolicy in."""
    assert type(getattr(_warnings, name)) is type(getattr(warnings, name))


# -- the Python twin's limit ---------------------------------------------------------


def test_python_twin_adds_its_frames_but_keeps_locations() -> None:
    """Pure Python (no compiler, ERRPOLICY_PURE_PYTHON=1): a traceback through a hook shows
    errpolicy's frames (the documented limit), but stacklevel still points at the caller."""
    code = textwrap.dedent(
        """
        import traceback, warnings
        import errpolicy
        from errpolicy import _hooks
        assert _hooks.IMPLEMENTATION == "python"
        errpolicy.install()
        def f():
            warnings.warn("x", UserWarning, stacklevel=2)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            f()
        assert seen[0].lineno == 11, seen[0].lineno
        warnings.simplefilter("error")
        try:
            f()
        except UserWarning as e:
            names = [x.filename for x in traceback.extract_tb(e.__traceback__)]
        print(sum("errpolicy" in n for n in names))
        """
    )
    env = {**os.environ, "ERRPOLICY_PURE_PYTHON": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert "2\n" == result.stdout, result.stderr[-2000:]
