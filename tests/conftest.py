"""Fixtures shared by every test: errpolicy's configuration is restored after each test."""

from __future__ import annotations

from collections.abc import Iterator

import errpolicy
import pytest


@pytest.fixture(autouse=True)
def _restore_errpolicy_config() -> Iterator[None]:
    """Each test starts from the default configuration and leaves it so."""
    errpolicy.reset_defaults()
    yield
    errpolicy.reset_defaults()
