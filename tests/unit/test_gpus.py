from __future__ import annotations

import pytest

from hubforge.gpus import GpuAllocator, NotEnoughGpus


def test_exclusive_allocation_and_release(tmp_path):
    alloc = GpuAllocator(["0", "1", "2"], tmp_path / "gpus.json")
    assert alloc.allocate("alice/", 2) == ["0", "1"]
    assert alloc.allocate("bob/", 1) == ["2"]
    with pytest.raises(NotEnoughGpus) as info:
        alloc.allocate("carol/", 1)
    assert "only 0 of 3 are free" in str(info.value)
    assert alloc.release("alice/") == ["0", "1"]
    assert alloc.allocate("carol/", 1) == ["0"]


def test_reallocating_an_owner_replaces_its_devices(tmp_path):
    alloc = GpuAllocator(["0", "1"], tmp_path / "gpus.json")
    alloc.allocate("alice/", 2)
    assert alloc.allocate("alice/", 1) == ["0"]
    assert alloc.free() == ["1"]


def test_failed_request_keeps_what_the_owner_had(tmp_path):
    alloc = GpuAllocator(["0", "1"], tmp_path / "gpus.json")
    alloc.allocate("alice/", 1)
    alloc.allocate("bob/", 1)
    with pytest.raises(NotEnoughGpus):
        alloc.allocate("alice/", 2)
    assert alloc.allocations() == {"alice/": ["0"], "bob/": ["1"]}


def test_state_survives_a_restart(tmp_path):
    GpuAllocator(["0", "1"], tmp_path / "gpus.json").allocate("alice/", 1)
    again = GpuAllocator(["0", "1"], tmp_path / "gpus.json")
    assert again.allocations() == {"alice/": ["0"]}
    assert (tmp_path / "gpus.json").stat().st_mode & 0o777 == 0o600
    # a device that left the inventory is forgotten
    assert GpuAllocator(["1"], tmp_path / "gpus.json").allocations() == {}


def test_negative_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match=">= 0"):
        GpuAllocator(["0"], tmp_path / "g.json").allocate("a/", -1)
