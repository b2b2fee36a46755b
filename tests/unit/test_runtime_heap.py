"""freeze_startup_heap: start-up's objects leave the collector's reach, later cycles do not."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.runtime import freeze_startup_heap


class _Node:
    me: _Node | None = None


def _cycle() -> tuple[_Node, weakref.ref[_Node]]:
    node = _Node()
    node.me = node  # only the collector can free it
    return node, weakref.ref(node)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process goes on collecting as before


@pytest.mark.usefixtures("unfrozen")
def test_live_objects_are_frozen_and_start_up_garbage_is_collected_first() -> None:
    alive, _ = _cycle()
    garbage, garbage_ref = _cycle()
    del garbage

    moved = freeze_startup_heap()

    assert moved == gc.get_freeze_count() > 0
    assert garbage_ref() is None  # collected, not frozen for the process's life
    assert not any(o is alive for o in gc.get_objects())  # a full collection skips it
    assert alive.me is alive


@pytest.mark.usefixtures("unfrozen")
def test_cycles_made_after_the_freeze_are_still_collected() -> None:
    freeze_startup_heap()
    later, later_ref = _cycle()
    del later

    gc.collect()

    assert later_ref() is None
