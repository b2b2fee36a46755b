"""freeze_startup_heap called again in one process (the bench starts a gateway per push):
what the earlier call froze and has died since is collected, not kept for the process's life."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.runtime import freeze_startup_heap


class _Node:
    me: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_a_cycle_frozen_by_an_earlier_call_is_collected_by_the_next() -> None:
    first_gateway = _Node()
    first_gateway.me = first_gateway  # only the collector can free it
    gone = weakref.ref(first_gateway)
    freeze_startup_heap()
    del first_gateway  # that gateway stopped

    freeze_startup_heap()  # the next one started

    assert gone() is None
