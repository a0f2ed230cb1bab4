"""How the guards around each operation use errpolicy policies."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import errpolicy
import pytest

from errpolicy_memcache import DEFAULT_POLICIES, OPERATIONS, MemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import Ranked, saved, saved_before_outage

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes


def test_every_operation_has_a_default_policy() -> None:
    """DEFAULT_POLICIES covers every guard name."""
    assert sorted(OPERATIONS) == sorted(DEFAULT_POLICIES)


def test_default_policy_raises_warnings_and_errors_only() -> None:
    """Notices are recorded; warnings, errors and criticals raise."""
    policy = DEFAULT_POLICIES["session.start"]
    expected = errpolicy.Severity.WARNING | errpolicy.Severity.ERROR | errpolicy.Severity.CRITICAL
    assert expected == policy.raise_on


def test_an_unrelated_warning_does_not_fail_the_request(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """A ResourceWarning raised during start() passes through; start() still succeeds."""

    def noisy(_: object) -> None:
        warnings.warn("unclosed file", ResourceWarning, stacklevel=1)

    store = make_store(cluster, on_outcome=noisy)
    sid = saved(store, a=1).id
    with pytest.warns(ResourceWarning):
        loaded = store.start(sid)
    assert {"a": 1} == dict(loaded)


def test_an_unrelated_error_record_does_not_fail_the_request(
    cluster: MemcachedCluster,
    make_store: Callable[..., MemcacheSessionStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An ERROR record of another logger during start() reaches its handlers, no raise."""

    def noisy(_: object) -> None:
        logging.getLogger("someone.else").error("unrelated")

    store = make_store(cluster, on_outcome=noisy)
    sid = saved(store, a=1).id
    with caplog.at_level(logging.ERROR, logger="someone.else"):
        loaded = store.start(sid)
    assert ({"a": 1}, True) == (dict(loaded), "unrelated" in caplog.text)


@pytest.mark.usefixtures("strict_start")
def test_an_app_policy_overrides_the_default(
    store: MemcacheSessionStore, cluster: MemcachedCluster, ranked: Ranked
) -> None:
    """With the app raising notices, a failover read raises PolicyViolation."""
    session = saved(store, a=1)
    ranked(cluster, session.id)[0].kill()
    with pytest.raises(errpolicy.PolicyViolation):
        store.start(session.id)


def test_the_violation_carries_the_outcome(
    store: MemcacheSessionStore, cluster: MemcachedCluster
) -> None:
    """The PolicyViolation's report holds the event whose record carries the outcome."""
    session = saved_before_outage(store, cluster)
    with pytest.raises(errpolicy.PolicyViolation) as info:
        store.start(session.id)
    (event,) = info.value.report.raised
    assert "unavailable" == event.original.outcome.kind.value
