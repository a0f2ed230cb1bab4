"""Helpers for testing code that uses errpolicy.

>>> import errpolicy, logging
>>> from errpolicy.testing import configured
>>> with configured(sink=errpolicy.NullSink()) as config:
...     config.sink
NullSink()
>>> errpolicy.get_config().sink is None
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ._config import Config, configure, get_config, restore
from ._errguard import ErrGuard, NotInTest

__all__ = ["ErrGuard", "NotInTest", "configured"]


@contextlib.contextmanager
def configured(**changes: Any) -> Iterator[Config]:
    """Configure errpolicy for the block (same keywords as ``configure``), then put
    back exactly the configuration that was there before."""
    before = get_config()
    try:
        yield configure(**changes)
    finally:
        restore(before)
