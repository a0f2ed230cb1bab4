"""The store's basic contract against real memcached: start, save, regenerate, destroy."""

from __future__ import annotations

from collections.abc import Callable

import errpolicy
import pytest
from pymemcache.client.base import Client

from errpolicy_memcache import (
    ConfigurationError,
    InvalidSessionId,
    MemcacheSessionStore,
    Outcome,
    OutcomeKind,
    Session,
    SessionDataError,
    SessionExists,
    is_valid_session_id,
)
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer

from .helpers import PREFIX, saved

pytestmark = pytest.mark.memcached  # every test here runs real memcached processes


def test_start_none_gives_a_new_session(store: MemcacheSessionStore) -> None:
    """start(None) returns an empty new session with a valid fresh id."""
    session = store.start(None)
    assert (True, 0, True) == (session.new, len(session), is_valid_session_id(session.id))


def test_saved_data_comes_back(store: MemcacheSessionStore) -> None:
    """What was saved under an id is what start(id) returns."""
    session = saved(store, user_id=42, cart=["a", "b"])
    loaded = store.start(session.id)
    assert ({"user_id": 42, "cart": ["a", "b"]}, False) == (dict(loaded), loaded.new)


def test_an_agreeing_read_reports_ok(store: MemcacheSessionStore, outcomes: list[Outcome]) -> None:
    """Both replicas answering the same version is an OK outcome, at no severity
    (with no fault seen, only the two home nodes are asked)."""
    session = saved(store, a=1)
    store.start(session.id)
    assert (OutcomeKind.OK, 0, 2) == (
        outcomes[-1].kind,
        outcomes[-1].level,
        len(outcomes[-1].nodes),
    )


def test_save_writes_replicas_copies(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    ranked: Callable[[MemcachedCluster, str], list[MemcachedServer]],
    raw: Callable[[MemcachedServer], Client],
) -> None:
    """A save puts one copy on each of the top two ranked nodes and none on the third."""
    session = saved(store, a=1)
    key = storage_key(PREFIX, session.id)
    holders = [raw(server).get(key) is not None for server in ranked(cluster, session.id)]
    assert [True, True, False] == holders


def test_an_unknown_id_gives_a_new_session_with_a_fresh_id(
    store: MemcacheSessionStore, outcomes: list[Outcome]
) -> None:
    """A well-formed but unknown id is never adopted (no session fixation)."""
    unknown = store.new_session().id
    session = store.start(unknown)
    assert (True, False, OutcomeKind.NOT_FOUND) == (
        session.new,
        session.id == unknown,
        outcomes[-1].kind,
    )


def test_save_clears_new_and_modified(store: MemcacheSessionStore) -> None:
    """After a save the session is neither new nor modified."""
    session = saved(store, a=1)
    assert (False, False) == (session.new, session.modified)


def test_item_assignment_marks_modified(store: MemcacheSessionStore) -> None:
    """Setting an item marks the session modified."""
    session = store.start(saved(store, a=1).id)
    session["a"] = 2
    assert session.modified


def test_a_later_save_wins(store: MemcacheSessionStore) -> None:
    """Saving again replaces the data, with a higher version."""
    session = saved(store, n=1)
    first = session.version
    session["n"] = 2
    store.save(session)
    loaded = store.start(session.id)
    assert (2, True) == (loaded["n"], loaded.version > first)


def test_must_create_refuses_an_existing_id(store: MemcacheSessionStore) -> None:
    """save(must_create=True) on a stored id raises SessionExists."""
    session = saved(store, a=1)
    with pytest.raises(SessionExists):
        store.save(session, must_create=True)


def test_must_create_conflict_keeps_the_stored_data(store: MemcacheSessionStore) -> None:
    """A refused must_create leaves the stored session as it was."""
    session = saved(store, a=1)
    other = store.new_session()
    other._id = session.id
    other["a"] = 99
    with pytest.raises(SessionExists):
        store.save(other, must_create=True)
    assert {"a": 1} == dict(store.start(session.id))


def test_must_create_stores_a_new_id(store: MemcacheSessionStore) -> None:
    """save(must_create=True) on a fresh id stores it."""
    session = store.new_session()
    session["a"] = 1
    store.save(session, must_create=True)
    assert {"a": 1} == dict(store.start(session.id))


def test_exists_is_true_for_a_stored_session(store: MemcacheSessionStore) -> None:
    """exists(id) is True once the session is saved."""
    assert store.exists(saved(store, a=1).id)


def test_exists_is_false_for_an_unknown_or_malformed_id(store: MemcacheSessionStore) -> None:
    """exists() is False for unknown and malformed ids."""
    assert [False, False] == [store.exists(store.new_session().id), store.exists("a\r\nb")]


def test_delete_makes_the_id_unknown(store: MemcacheSessionStore) -> None:
    """After delete(id), start(id) gives a new session."""
    session = saved(store, a=1)
    store.delete(session.id)
    assert store.start(session.id).new


def test_regenerate_changes_the_id_and_keeps_the_data(store: MemcacheSessionStore) -> None:
    """regenerate() gives a new id under which the data is stored."""
    session = saved(store, user_id=7)
    old = session.id
    store.regenerate(session)
    assert (False, {"user_id": 7}) == (session.id == old, dict(store.start(session.id)))


def test_regenerate_invalidates_the_old_id(store: MemcacheSessionStore) -> None:
    """After regenerate(), the old id no longer loads the data."""
    session = saved(store, user_id=7)
    old = session.id
    store.regenerate(session)
    assert (True, 0) == (store.start(old).new, len(store.start(old)))


def test_destroy_invalidates_the_id(store: MemcacheSessionStore) -> None:
    """After destroy(), the old id gives a new, empty session."""
    session = saved(store, user_id=7)
    old = session.id
    store.destroy(session)
    loaded = store.start(old)
    assert (True, 0) == (loaded.new, len(loaded))


def test_destroy_resets_the_session_object(store: MemcacheSessionStore) -> None:
    """The destroyed session object becomes new and empty, with a fresh id."""
    session = saved(store, user_id=7)
    old = session.id
    store.destroy(session)
    assert (True, 0, False) == (session.new, len(session), session.id == old)


def test_non_str_keys_are_refused_at_assignment(store: MemcacheSessionStore) -> None:
    """session[1] = ... raises SessionDataError at once."""
    with pytest.raises(SessionDataError):
        store.start(None)[1] = "x"  # type: ignore[index]


def test_non_json_values_are_refused_at_save_and_kept(store: MemcacheSessionStore) -> None:
    """A complex number in the session raises SessionDataError on save; the session keeps
    its data."""
    session = saved(store, a=1)
    session["c"] = 1j
    with pytest.raises(SessionDataError):
        store.save(session)
    assert (1j, {"a": 1}) == (session["c"], dict(store.start(session.id)))


def test_saving_a_session_with_a_foreign_id_is_a_typed_error(
    store: MemcacheSessionStore,
) -> None:
    """A Session built by hand with a malformed id raises InvalidSessionId before any I/O."""
    with pytest.raises(InvalidSessionId):
        store.save(Session("a\r\nflush_all", {"a": 1}))


def test_repr_hides_the_id(store: MemcacheSessionStore) -> None:
    """The repr shows six characters of the id, never all of it."""
    session = store.start(None)
    assert session.id not in repr(session)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("replicas", 4),
        ("replicas", 0),
        ("timeout", 0),
        ("idle_ttl", 31 * 24 * 3600),
        ("prefix", "has space"),
        ("renew_after", 2),
        ("secret_key", "short"),
        ("transport", "hashclient"),
    ],
)
def test_bad_options_are_configuration_errors(
    cluster: MemcachedCluster, option: str, value: object
) -> None:
    """Each invalid option raises ConfigurationError naming it."""
    options: dict[str, object] = {"secret_key": "s" * 32, option: value}
    with pytest.raises(ConfigurationError, match=option):
        MemcacheSessionStore(cluster.addresses, **options)  # type: ignore[arg-type]


def test_the_default_transport_is_pymemcache(cluster: MemcachedCluster) -> None:
    """Without the option, every node speaks through pymemcache clients."""
    with MemcacheSessionStore(cluster.addresses, "s" * 32) as store:
        kinds = {type(store._transports.of(node)).name for node in store.nodes}
        assert {"pymemcache"} == kinds


def test_one_record_per_operation(
    store: MemcacheSessionStore,
    cluster: MemcachedCluster,
    recorded: list[errpolicy.Event],
    ranked: Callable[[MemcachedCluster, str], list[MemcachedServer]],
) -> None:
    """A start that fails over records exactly one event, carrying the outcome."""
    session = saved(store, a=1)
    primary, _, third = ranked(cluster, session.id)
    primary.kill()
    third.kill()
    store.start(session.id)
    outcomes = [e.original.outcome for e in recorded if hasattr(e.original, "outcome")]
    assert (1, "session.start") == (len(outcomes), outcomes[0].operation)


def test_delete_wins_over_a_copy_from_a_clock_ahead(
    cluster: MemcachedCluster, make_store: Callable[..., MemcacheSessionStore]
) -> None:
    """A tombstone beats a live copy with a higher version (a web server whose clock is ahead)."""
    ahead = make_store(cluster)
    ahead._core._last_version = 2**62  # every version it writes is far in the future
    session = saved(ahead, user_id=1)
    make_store(cluster).delete(session.id)
    assert make_store(cluster).start(session.id).new


def test_exists_is_false_after_delete(store: MemcacheSessionStore) -> None:
    """A tombstoned id does not exist."""
    session = saved(store, a=1)
    store.delete(session.id)
    assert not store.exists(session.id)


def test_saving_an_unread_session_keeps_its_data(store: MemcacheSessionStore) -> None:
    """A loaded session saved without its data being touched stores the same data."""
    session = saved(store, user_id=5, cart=[1, 2])
    store.save(store.start(session.id))
    assert {"user_id": 5, "cart": [1, 2]} == dict(store.start(session.id))


def test_regenerating_a_new_session_stores_it(store: MemcacheSessionStore) -> None:
    """regenerate() on a never-saved session stores its data under the new id."""
    session = store.start(None)
    session["a"] = 1
    store.regenerate(session)
    assert {"a": 1} == dict(store.start(session.id))
