"""errpolicy's pytest plugin: fail tests on the warnings and log records they raise.

Registered through the ``pytest11`` entry point as ``errpolicy``, and off until the
project turns it on: ``errpolicy = true`` in the ini file (or ``--errpolicy``) checks
every test; the ``errpolicy`` marker or the ``errguard`` fixture checks one test.
Until then it only adds its options, its marker and its fixture; ``-p no:errpolicy``
removes even those. See the docs page "errpolicy in tests".

Each checked call of a test function runs inside a guard that only observes
(:mod:`errpolicy._testrun`): every event goes on as without errpolicy, and the
test fails when it returns if an event in ``fail_on`` and in scope was neither
asserted nor expected. The test's setup and teardown (its fixtures) are observed
the same way, each apart, and an unexpected event there is an error in that
phase, as a fixture's exception is.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
import unittest
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._errguard import CURRENT, ErrGuard
from ._testrun import DEFAULT_FAIL_ON, Invocation, TestPolicy, showing

__all__ = ["errguard"]

_POLICY = pytest.StashKey[TestPolicy]()
_SHOWER = pytest.StashKey[Any]()
#: Checked around ``runtest()`` (doctests, Markdown fences, other items pytest does
#: not call as a function), rather than inside each call of the function.
_AROUND_CALL = pytest.StashKey[bool]()
#: The guard that observes the test's setup and teardown, and what it saw.
_FIXTURES = pytest.StashKey[tuple[contextlib.ExitStack, Invocation]]()

_MARKER = (
    "errpolicy(fail_on=None, scope=None): check this test with errpolicy, with this "
    "severity mask and these logger/module prefixes ('{project}': the project's code)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("errpolicy", "errpolicy: fail tests on their warnings and log records")
    group.addoption(
        "--errpolicy",
        action="store_true",
        default=None,
        help="check every test (as the ini option errpolicy = true)",
    )
    group.addoption(
        "--errpolicy-fail-on",
        metavar="MASK",
        default=None,
        help="severities that fail a test, e.g. 'ERROR | WARNING' (overrides errpolicy_fail_on)",
    )
    group.addoption(
        "--errpolicy-scope",
        metavar="PREFIXES",
        action="append",
        default=None,
        help="logger names or modules whose events count, '{project}' for the project's "
        "code (overrides errpolicy_scope; repeatable)",
    )
    parser.addini("errpolicy", "check every test with errpolicy", type="bool", default=False)
    parser.addini(
        "errpolicy_fail_on",
        f"severities that fail a test (default: {DEFAULT_FAIL_ON.describe()})",
        default="",
    )
    parser.addini(
        "errpolicy_scope",
        "logger names or modules whose events count, '{project}' for the project's code "
        "(default: every event)",
        type="linelist",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)


def _base_policy(config: pytest.Config) -> tuple[Any, Any]:
    fail_on = config.getoption("errpolicy_fail_on") or config.getini("errpolicy_fail_on")
    scope = config.getoption("errpolicy_scope")
    if scope is None:
        scope = config.getini("errpolicy_scope")
    return fail_on or DEFAULT_FAIL_ON, scope


def _enabled(config: pytest.Config) -> bool:
    flag = config.getoption("errpolicy")
    return bool(flag) if flag is not None else bool(config.getini("errpolicy"))


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    everywhere = _enabled(config)
    base: tuple[Any, Any] | None = None
    for item in items:
        marker = item.get_closest_marker("errpolicy")
        wanted = everywhere or marker is not None or "errguard" in getattr(item, "fixturenames", ())
        if not wanted or _unittest(item):
            continue
        if base is None:
            base = _base_policy(config)
        fail_on, scope = base
        if marker is not None:
            unknown = sorted(set(marker.kwargs) - {"fail_on", "scope"})
            if marker.args or unknown:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.errpolicy takes keywords only "
                    f"(fail_on=..., scope=...), not {', '.join(map(repr, marker.args))}"
                    f"{', '.join(f'{k}=' for k in unknown)}"
                )
            fail_on = marker.kwargs.get("fail_on", fail_on)
            scope = marker.kwargs.get("scope", scope)
        try:
            policy = TestPolicy.build(fail_on, scope, str(config.rootpath))
        except ValueError as e:
            raise pytest.UsageError(f"{item.nodeid}: errpolicy: {e}") from None
        item.stash[_POLICY] = policy
        if isinstance(item, pytest.Function):
            item.obj = _wrap(item.obj, functools.partial(_observing, item, policy))
        else:
            item.stash[_AROUND_CALL] = True


def _unittest(item: pytest.Item) -> bool:
    """A unittest method: unittest runs it, and reports its own way."""
    cls = getattr(item, "cls", None)
    return isinstance(cls, type) and issubclass(cls, unittest.TestCase)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    policy = item.stash.get(_POLICY, None)
    if policy is None:
        return (yield)
    # Before any fixture (recwarn) replaces it: pytest's own recorder, if any.
    item.stash[_SHOWER] = showing()
    # Fixtures set up here count toward this test, as their exceptions do (a
    # wider-scoped fixture's toward the test whose setup first runs it). One guard
    # observes setup and teardown: pytest-asyncio tears an async fixture down in the
    # context it copied at setup, where only this guard is open.
    invocation = _invocation(item, policy, "setup")
    stack = contextlib.ExitStack()
    stack.enter_context(_guarded(item, invocation, "fixtures"))
    item.stash[_FIXTURES] = (stack, invocation)
    try:
        with _checked(invocation):
            return (yield)
    finally:
        invocation.enter(None)  # the call is the call guard's


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    fixtures = item.stash.get(_FIXTURES, None)
    if fixtures is None:
        return (yield)
    del item.stash[_FIXTURES]
    stack, invocation = fixtures
    invocation.enter("teardown")
    with _checked(invocation):
        try:
            return (yield)
        finally:
            stack.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if not item.stash.get(_AROUND_CALL, False):
        return (yield)
    with _observing(item, item.stash[_POLICY]):
        return (yield)


@contextlib.contextmanager
def _observing(item: pytest.Item, policy: TestPolicy) -> Iterator[None]:
    """One call of the test function, observed; fails the test on what it raised."""
    invocation = _invocation(item, policy, "call")
    with _checked(invocation), _guarded(item, invocation, "call"):
        yield


def _invocation(item: pytest.Item, policy: TestPolicy, phase: str) -> Invocation:
    return Invocation(
        policy,
        item.stash.get(_SHOWER, None),
        "caplog" in getattr(item, "fixturenames", ()),
        phase=phase,
    )


@contextlib.contextmanager
def _guarded(item: pytest.Item, invocation: Invocation, what: str) -> Iterator[None]:
    """A guard that only observes, for ``invocation``, which errguard answers from."""
    from ._guard import Guard  # the guard machinery only when a test is checked
    from ._policy import Policy

    observer = Policy(raise_on="NONE", record="NONE", scope=invocation.observe)
    name = f"pytest {item.nodeid}" if what == "call" else f"pytest {item.nodeid} {what}"
    token = CURRENT.set(invocation)
    try:
        with Guard(name, policy=observer):
            yield
    finally:
        CURRENT.reset(token)


@contextlib.contextmanager
def _checked(invocation: Invocation) -> Iterator[None]:
    """Fail the phase on the unexpected events ``invocation`` saw; when it fails
    anyway, add them to its exception as notes."""
    try:
        yield
    except BaseException as exc:
        for seen in invocation.unexpected():
            exc.add_note(f"errpolicy: {invocation.line(seen)}")
        raise
    failure = invocation.failure()
    if failure is not None:
        pytest.fail(failure, pytrace=False)


def _wrap(function: Any, observing: Callable[[], Any]) -> Any:
    """``function`` run under ``observing()``, in each thread that calls it (so under
    pytest-run-parallel each thread is observed apart), keeping its signature,
    coroutine-ness and globals (which pytest-run-parallel reads)."""
    if inspect.iscoroutinefunction(function):

        async def call(*args: Any, **kwargs: Any) -> Any:
            with observing():
                return await function(*args, **kwargs)

    else:

        def call(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            with observing():
                return function(*args, **kwargs)

    scope = getattr(function, "__globals__", None)
    if isinstance(scope, dict):
        # The code reads only its closure and builtins: any globals will do.
        call = types.FunctionType(call.__code__, scope, call.__name__, None, call.__closure__)
    return functools.update_wrapper(call, function)


@pytest.fixture
def errguard(request: pytest.FixtureRequest) -> ErrGuard:
    """What the test's own thread and tasks raise: ``assert_logged``, ``assert_warned``
    and ``expect`` mark events as wanted; others in ``fail_on`` fail the test."""
    policy = request.node.stash.get(_POLICY, None)
    if policy is None:
        pytest.fail(
            "errguard must be a test's argument (not requested with getfixturevalue), "
            "and only works in test functions",
            pytrace=False,
        )
    return ErrGuard(policy)
