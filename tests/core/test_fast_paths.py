"""The shortcuts of the capture and entry paths answer exactly as the long way would:
guards kept per policy, events made in one call, identity hashes of actions."""

from __future__ import annotations

import dataclasses
import logging
import warnings

import errpolicy
import pytest
from errpolicy import Action, Event, Policy, Severity, _event, _guard

RECORD_ALL = Policy(raise_on="NONE", record="ALL")


def _fields(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "source": "warning",
        "severity": Severity.WARNING,
        "action": None,
        "message": "m",
        "category": UserWarning,
        "logger": None,
        "level": None,
        "filename": "f.py",
        "lineno": 3,
        "time": 1.5,
        "thread": "MainThread",
        "thread_id": 7,
        "task": None,
        "original": None,
    }
    return {**base, **changes}


def test_guard_with_a_policy_is_kept_per_name_and_policy() -> None:
    """guard(name, policy=p) hands out one Guard per (name, p), as guard(name) does per name."""
    policy = Policy(raise_on="NONE", record="ALL")
    first = errpolicy.guard("fast.kept", policy=policy)
    assert first is errpolicy.guard("fast.kept", policy=policy)
    assert first is not errpolicy.guard("fast.other", policy=policy)
    assert first is not errpolicy.guard("fast.kept", policy=Policy(raise_on="NONE"))
    assert first is not errpolicy.guard("fast.kept")
    assert (policy, None, "fast.kept") == (first._policy, first._default, first.name)


def test_guard_with_a_default_is_kept_apart_from_policy_guards() -> None:
    """default=p and policy=p give different guards (the configuration wins over a default)."""
    policy = Policy(raise_on="NONE", record="ALL")
    as_default = errpolicy.guard("fast.default", default=policy)
    assert as_default is errpolicy.guard("fast.default", default=policy)
    assert as_default is not errpolicy.guard("fast.default", policy=policy)
    assert (None, policy) == (as_default._policy, as_default._default)


def test_a_policy_keeps_a_bounded_number_of_guards() -> None:
    """Names made up at run time do not grow a policy's guard cache without end."""
    policy = Policy(raise_on="NONE", record="ALL")
    made = [errpolicy.guard(f"fast.many.{i}", policy=policy) for i in range(300)]
    assert _guard._PER_POLICY_MAX == len(policy._guards)
    assert "fast.many.299" == made[-1].name
    assert made[-1] is not errpolicy.guard("fast.many.299", policy=policy)


def test_kept_guards_still_refuse_bad_arguments() -> None:
    """A name that is no string or empty, or a policy and a default together, go the long way."""
    with pytest.raises(errpolicy.ConfigurationError, match="non-empty name"):
        errpolicy.guard("", policy=RECORD_ALL)
    with pytest.raises(errpolicy.ConfigurationError, match="non-empty name"):
        errpolicy.guard(5, policy=RECORD_ALL)  # type: ignore[arg-type]
    both = errpolicy.guard("fast.both", policy=RECORD_ALL, default=RECORD_ALL)
    assert both is not errpolicy.guard("fast.both", policy=RECORD_ALL, default=RECORD_ALL)


def test_policies_compare_and_hash_without_their_guard_caches() -> None:
    """Two equal policies stay equal and hash alike whatever guards each keeps."""
    a, b = Policy(raise_on="ERROR"), Policy(raise_on="ERROR")
    errpolicy.guard("fast.eq", policy=a)
    assert (a, hash(a)) == (b, hash(b))
    assert "_guards" not in repr(a)


def test_new_event_equals_the_event_built_by_keywords() -> None:
    """new_event(*fields) is Event(**fields), the two defaulted fields included."""
    fields = _fields()
    expected = Event(**fields)  # type: ignore[arg-type]
    made = _event.new_event(*fields.values())
    assert expected == made
    assert (None, "default") == (made.guard, made.classified_by)
    assert repr(expected) == repr(made)
    full = _event.new_event(*fields.values(), "g", "mine")
    assert ("g", "mine") == (full.guard, full.classified_by)


def test_new_event_refuses_a_wrong_number_of_fields() -> None:
    """Too few or too many fields is a TypeError, as for Event(...)."""
    values = list(_fields().values())
    with pytest.raises(TypeError, match="fields"):
        _event.new_event(*values[:-1])
    with pytest.raises(TypeError, match="fields"):
        _event.new_event(*values, "g", "c", "extra")


def test_events_stay_frozen_dataclasses() -> None:
    """Setting a field fails as before, and dataclasses.replace and fields() work."""
    event = Event(**_fields())  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.message = "changed"  # type: ignore[misc]
    changed = dataclasses.replace(event, message="other")
    assert ("other", "m") == (changed.message, event.message)
    assert 16 == len(dataclasses.fields(Event))
    with pytest.raises(TypeError):
        Event(**_fields(bogus=1))  # type: ignore[arg-type]


def test_actions_hash_consistently_with_equality() -> None:
    """Actions are dict keys in Report.counts: equal keys find each other."""
    counts = {(Action.RECORD, Severity.WARNING): 2}
    assert 2 == counts[(Action("record"), Severity.WARNING)]
    assert len(set(Action)) == len({hash(a) for a in Action})


def test_immediate_raise_after_kept_events_still_counts_them() -> None:
    """An immediate violation raised after other captures reports every kept event."""
    policy = Policy(raise_on="ERROR", immediate=True)
    with (
        pytest.raises(errpolicy.PolicyViolation),
        errpolicy.guard("fast.immediate", policy=policy) as report,
    ):
        warnings.warn("first", UserWarning, stacklevel=1)
        _log_error()
    assert {Action.RECORD: 1, Action.RAISE: 1} == {
        a: report.count(a) for a in Action if report.count(a)
    }


def _log_error() -> None:
    logging.getLogger("fast.immediate").error("boom")


def test_event_by_keywords_checks_its_arguments_as_the_signature_does() -> None:
    """Unknown, repeated and missing fields are TypeErrors; defaults fill the last two."""
    fields = _fields()
    with pytest.raises(TypeError, match="bogus"):
        Event(**fields, bogus=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="source"):
        Event("warning", **fields)  # type: ignore[misc]
    without_task = {k: v for k, v in fields.items() if k != "task"}
    with pytest.raises(TypeError, match="task"):
        Event(**without_task)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Event(*fields.values(), None, "default", "one too many")  # type: ignore[call-arg]
    positional = Event(*fields.values())  # type: ignore[arg-type]
    assert Event(**fields) == positional  # type: ignore[arg-type]


def test_a_subclass_of_event_keeps_its_own_init() -> None:
    """Event's fast constructor is its own: a subclass's __init__ still runs."""

    class Tagged(Event):
        __slots__ = ()

        def __init__(self, **fields: object) -> None:
            super().__init__(**{**fields, "message": "tagged"})  # type: ignore[arg-type]

    made = Tagged(**_fields())
    assert ("tagged", Tagged) == (made.message, type(made))
