"""The suite's store timeouts (tests/conftest.py): long unless a test hangs a node, and a
test that hangs one without saying so fails."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

CONFTEST = Path(__file__).parents[1] / "conftest.py"


def test_a_test_that_hangs_no_node_gets_long_timeouts(store_timeouts: dict[str, float]) -> None:
    """Unmarked: 3 s to connect and to read, so a slow healthy node never times out."""
    assert {"connect_timeout": 3.0, "timeout": 3.0} == store_timeouts


@pytest.mark.hangs
def test_a_test_that_hangs_a_node_gets_a_short_read_timeout(
    store_timeouts: dict[str, float],
) -> None:
    """Marked ``hangs``: a 0.3 s read timeout (the wait on the hung node), 3 s to connect."""
    assert {"connect_timeout": 3.0, "timeout": 0.3} == store_timeouts


def _run(pytester: pytest.Pytester, marked: bool) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST.read_text())
    mark = "@pytest.mark.hangs\n" if marked else ""
    source = "def test_pauses(cluster):\n    cluster[0].pause()\n    cluster[0].resume()\n"
    pytester.makepyfile(f"import pytest\n\n\n{mark}{source}")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:run-parallel")


# Marked: the inner run's pauses are its own; this test's guard would be seen in it too.
@pytest.mark.hangs
@pytest.mark.memcached
def test_a_pause_in_an_unmarked_test_fails_it(
    pytester: pytest.Pytester, memcached_binary: str
) -> None:
    """A test that pauses a node without the ``hangs`` mark fails, naming the mark."""
    result = _run(pytester, marked=False)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pauses 127.0.0.1:*: mark it @pytest.mark.hangs*"])


@pytest.mark.hangs
@pytest.mark.memcached
def test_a_pause_in_a_marked_test_is_allowed(
    pytester: pytest.Pytester, memcached_binary: str
) -> None:
    """The same test marked ``hangs`` passes (the guard is not blind to the mark)."""
    _run(pytester, marked=True).assert_outcomes(passed=1)
