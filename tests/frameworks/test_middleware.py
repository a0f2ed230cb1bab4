"""What a request's end does to the store and the cookie (``_frameworks.ending``),
the decision the WSGI, ASGI, Flask and Django glue share."""

from __future__ import annotations

import pytest

from errpolicy_memcache import Session
from errpolicy_memcache._frameworks import CookieAction, Ending, ending

SID = "a" * 43


def _session(*, new: bool, modified: bool, data: dict[str, int]) -> Session:
    session = Session(SID, data, new=new)
    session.modified = modified
    return session


@pytest.mark.parametrize(
    ("new", "modified", "data", "incoming", "expected"),
    [
        (False, True, {}, SID, (Ending.DESTROY, CookieAction.DELETE)),  # logout
        (False, True, {}, None, (Ending.DESTROY, CookieAction.KEEP)),
        (False, True, {"n": 1}, SID, (Ending.SAVE, CookieAction.KEEP)),
        (True, True, {"n": 1}, None, (Ending.SAVE, CookieAction.SET)),  # first save
        (False, False, {"n": 1}, SID, (Ending.RELEASE, CookieAction.KEEP)),  # a read
        (False, False, {"n": 1}, "other", (Ending.RELEASE, CookieAction.SET)),
        (True, False, {}, None, (Ending.RELEASE, CookieAction.KEEP)),  # nothing to keep
        (True, False, {}, "unknown", (Ending.RELEASE, CookieAction.DELETE)),
        (True, True, {}, "unknown", (Ending.RELEASE, CookieAction.DELETE)),
    ],
)
def test_ending(
    new: bool,
    modified: bool,
    data: dict[str, int],
    incoming: str | None,
    expected: tuple[Ending, CookieAction],
) -> None:
    """The store's step and the cookie's action for each kind of request end."""
    assert expected == ending(_session(new=new, modified=modified, data=data), incoming)
