"""The collector paused while a config compiles, and what a process keeps set aside."""

from __future__ import annotations

import gc
import weakref

from paperwatch import collector


def test_paused_restores_the_collector_as_it_was() -> None:
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause found it paused, and leaves it so
    assert gc.isenabled()


def test_paused_restores_it_after_an_error_too() -> None:
    try:
        with collector.paused():
            raise ValueError("a broken config")
    except ValueError:
        pass
    assert gc.isenabled()


def test_kept_objects_are_set_aside_at_once_and_released_for_collection() -> None:
    class Node:
        other: object = None

    with collector.kept():
        cycle = Node()
        cycle.other = cycle
        made = [[n] for n in range(10_000)]
    try:
        assert gc.isenabled()
        # Nothing made inside is left for the next young collection to walk.
        assert len(gc.get_objects(generation=0)) < len(made) // 10
        alive = weakref.ref(cycle)
        del cycle, made
        gc.collect()
        assert alive() is not None  # set aside: the cycle is not collected
    finally:
        collector.release()
    gc.collect()
    assert alive() is None  # handed back: now it is
