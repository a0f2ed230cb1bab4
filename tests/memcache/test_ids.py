"""Session ids: 256 bits from secrets, strict validation, hashed memcached keys."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from errpolicy_memcache import SESSION_ID_LENGTH, is_valid_session_id, new_session_id
from errpolicy_memcache._ids import storage_key

ALPHABET = string.ascii_letters + string.digits + "-_"


def test_new_ids_are_43_urlsafe_characters() -> None:
    """A new id is 43 url-safe characters (32 random bytes)."""
    sid = new_session_id()
    assert (43, True) == (len(sid), set(sid) <= set(ALPHABET))


def test_new_ids_are_valid() -> None:
    """Every id the store issues passes its own validation."""
    assert all(is_valid_session_id(new_session_id()) for _ in range(200))


def test_new_ids_do_not_repeat() -> None:
    """Ids are random: 1000 draws give 1000 distinct ids."""
    assert 1000 == len({new_session_id() for _ in range(1000)})


@given(st.text(alphabet=ALPHABET, min_size=SESSION_ID_LENGTH, max_size=SESSION_ID_LENGTH))
def test_any_well_formed_id_is_valid(sid: str) -> None:
    """Any 43 characters from the url-safe alphabet are accepted."""
    assert is_valid_session_id(sid)


@given(st.text().filter(lambda s: len(s) != SESSION_ID_LENGTH or not set(s) <= set(ALPHABET)))
def test_any_other_text_is_invalid(sid: str) -> None:
    """Text of another length or with any other character is refused."""
    assert not is_valid_session_id(sid)


@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_non_strings_are_invalid(sid: object) -> None:
    """None, numbers, bytes and lists are refused."""
    assert not is_valid_session_id(sid)


def test_hostile_ids_are_invalid() -> None:
    """Protocol injection, huge, non-ASCII and newline-suffixed ids are refused."""
    good = new_session_id()
    hostile = [
        "a\r\nflush_all",
        good[:-2] + "\r\n",
        good + "\n",
        "x" * 10_000,
        "é" * SESSION_ID_LENGTH,
        "٣" * SESSION_ID_LENGTH,  # a non-ASCII digit that \d would accept
        good[:-1] + " ",
        "",
    ]
    assert [False] * len(hostile) == [is_valid_session_id(h) for h in hostile]


@given(st.text(alphabet=ALPHABET, min_size=43, max_size=43))
def test_storage_key_is_prefix_and_sha256_hex(sid: str) -> None:
    """The memcached key is the prefix plus 64 hex digits; the id itself is not in it."""
    key = storage_key("p:", sid)
    assert (True, 66, False) == (
        key.startswith("p:") and set(key[2:]) <= set("0123456789abcdef"),
        len(key),
        sid in key,
    )
