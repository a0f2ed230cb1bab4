"""Fixtures for the ```python fences of the docs (run by pytest-markdown-docs)."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def fence_module() -> Iterator[None]:
    """Register the module a fence runs in (pytest-markdown-docs names it ``fence`` but
    leaves it out of ``sys.modules``): Litestar looks a handler's module up there to
    read its type hints, as it would for an application's own module."""
    saved = sys.modules.get("fence")
    sys.modules["fence"] = types.ModuleType("fence")
    yield
    if saved is None:
        sys.modules.pop("fence", None)
    else:
        sys.modules["fence"] = saved
