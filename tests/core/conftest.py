"""Fixtures for the core's tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import errpolicy
import pytest
from errpolicy import Event


class ListSink:
    """A sink that keeps what it receives."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event, /) -> None:
        self.events.append(event)


@pytest.fixture
def sink() -> ListSink:
    """Recorded events go to a list instead of the default logger."""
    s = ListSink()
    errpolicy.configure(sink=s)
    return s


class ListHandler(logging.Handler):
    """A handler that keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def handler() -> Iterator[ListHandler]:
    """A handler on a fresh logger ``t.<id>`` at DEBUG, not propagating."""
    h = ListHandler()
    logger = logging.getLogger(f"t.{id(h)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(h)
    h.logger = logger  # type: ignore[attr-defined]
    yield h
    logger.removeHandler(h)
