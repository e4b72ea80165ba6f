"""batch_gc: a larger first-generation GC threshold for the length of a block, then the old one."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from scanner import batch_gc
from scanner.gctuning import BATCH_GC_THRESHOLD


@pytest.fixture(autouse=True)
def _default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_the_threshold_is_raised_inside_and_restored_after() -> None:
    with batch_gc():
        assert gc.get_threshold() == (BATCH_GC_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_block_fails() -> None:
    inside: list[int] = []

    def fail_inside() -> None:
        with batch_gc(5_000):
            inside.append(gc.get_threshold()[0])
            raise KeyError("boom")

    with pytest.raises(KeyError):
        fail_inside()
    assert inside == [5_000]
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_already_set_is_kept() -> None:
    higher = BATCH_GC_THRESHOLD * 5
    gc.set_threshold(higher, 20, 30)
    with batch_gc():
        assert gc.get_threshold() == (higher, 20, 30)
    assert gc.get_threshold() == (higher, 20, 30)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10000"])
def test_a_threshold_that_is_not_a_positive_integer_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="positive integer"), batch_gc(bad):  # type: ignore[arg-type]
        pass
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_blocks_restore_the_first_thresholds_when_the_last_ends() -> None:
    outer, inner = batch_gc(5_000), batch_gc(50_000)
    outer.__enter__()
    inner.__enter__()
    assert gc.get_threshold() == (50_000, 10, 10)
    outer.__exit__(None, None, None)  # the first block ends first: the other still holds its own
    assert gc.get_threshold() == (50_000, 10, 10)
    inner.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_lower_block_inside_keeps_the_higher_threshold() -> None:
    with batch_gc(50_000):
        with batch_gc(5_000):
            assert gc.get_threshold() == (50_000, 10, 10)
        assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
