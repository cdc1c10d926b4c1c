"""Batches from loader workers: through the worker's ring of shared-memory slots they arrive as the batch that
``default_collate`` gives in-process, in order, past the ring's wrap-around; an overrun is an error."""

from __future__ import annotations

import os

import pytest
import torch

import gasp_core.train.transport as transport
from gasp_core.models import variant
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from gasp_core.train.pretrain import PREFETCH_BATCHES, TrainConfig, _StepSampler, batch_items, make_loader
from tests.train.conftest import TINY_MODEL, TINY_SCENE


def _tiny_dataset(inputs: dict) -> PretrainDataset:
    return PretrainDataset(
        inputs["store"],
        inputs["occupancy"],
        inputs["dino"],
        TINY_SCENE,
        TINY_MODEL.voxelizer,
        QueryCounts(occupancy=64, ego=16, dino=16),
        variant("gasp"),
    )


@pytest.fixture(autouse=True)
def _no_rings_left():
    yield
    transport._RINGS.clear()


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_batches_equal_in_process_batches_past_the_ring_wrap(pretrain_inputs, workers):
    data = _tiny_dataset(pretrain_inputs)
    tc = TrainConfig(batch_size=2)
    slots = PREFETCH_BATCHES * workers + 2
    steps = workers * (2 * slots + 1)  # every slot of every worker written at least twice
    loader = make_loader(data, _StepSampler(0, steps, 0, 1, len(data), tc, 7), num_workers=workers)
    got = list(loader)
    assert len(got) == steps
    for step, batch in enumerate(got):
        expected = torch.utils.data.default_collate([data[i] for i in batch_items(step, 0, 1, len(data), tc, 7)])
        assert batch.keys() == expected.keys()
        for key in expected:
            assert batch[key].dtype == expected[key].dtype and batch[key].shape == expected[key].shape, key
            torch.testing.assert_close(batch[key], expected[key], rtol=0, atol=0, msg=f"step {step} {key}")
    # copied out of the ring: a batch still held is not rewritten by later ones
    first = torch.utils.data.default_collate([data[i] for i in batch_items(0, 0, 1, len(data), tc, 7)])
    torch.testing.assert_close(got[0]["voxels"], first["voxels"], rtol=0, atol=0)


def _items(k: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(k)
    return [
        {"a": torch.rand(3, 5, generator=g), "b": torch.randint(0, 255, (7,), generator=g, dtype=torch.uint8)}
        for _ in range(2)
    ]


def test_ring_slots_round_trip_and_an_overrun_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())  # collate as a worker would
    collate = transport.RingCollate(slots=2)
    sent = []
    for k in range(3):  # batch 2 is written into batch 0's slot
        sent.append(collate(_items(k)))
        assert (sent[k].args[1] is not None) == (k == 0)  # the ring travels with the first batch only
        batch = transport._receive(*sent[k].args)
        expected = torch.utils.data.default_collate(_items(k))
        for key in expected:
            torch.testing.assert_close(batch[key], expected[key], rtol=0, atol=0)
    collate(_items(3))  # batch 3 goes into slot 1 while batch 1 was still to be read
    with pytest.raises(RuntimeError, match="overran its ring"):
        transport._receive(*sent[1].args)
    transport._RINGS.clear()  # a ring this process never received (or dropped): a clear error, not a KeyError
    with pytest.raises(RuntimeError, match="never received"):
        transport._receive(*sent[2].args)
    with pytest.raises(TypeError, match="dicts of tensors"):
        collate([{"a": torch.zeros(2), "b": 1.0}])


def test_without_workers_collate_is_default_collate():
    collate = transport.RingCollate(slots=2)
    batch = collate(_items(0))
    assert isinstance(batch, dict)
    torch.testing.assert_close(batch["a"], torch.utils.data.default_collate(_items(0))["a"])
    with pytest.raises(ValueError, match="at least 2 slots"):
        transport.RingCollate(slots=1)


@pytest.mark.parametrize("torn", ["start", "end"])
def test_a_torn_slot_is_an_error_whichever_counter_moved(torn):
    """A worker that has begun rewriting a slot moved its start counter but not its end counter (or the other way
    round, for a slot whose last write never finished): either counter alone disagreeing with the expected batch must
    refuse the slot, never hand out a mixed batch."""
    from gasp_core.train.transport import ALIGN, _layout, _receive

    items = [{"x": torch.arange(6, dtype=torch.float32)}, {"x": torch.arange(6, 12, dtype=torch.float32)}]
    layout, size = _layout(items)
    ring = torch.zeros(2, ALIGN + size, dtype=torch.uint8)
    counters = ring[1, :16].view(torch.int64)
    ring[1, ALIGN : ALIGN + size].view(torch.float32)[:12] = torch.arange(12, dtype=torch.float32)
    key = (os.getpid(), 10_000 + (torn == "end"))
    counters[0], counters[1] = 5, 5
    assert torch.equal(_receive(key, ring, 1, 5, layout, size)["x"], torch.arange(12.0).view(2, 6))
    counters[0 if torn == "start" else 1] = 7  # batch 7 = 5 + 2 slots: the worker is at it again
    with pytest.raises(RuntimeError, match="overran"):
        _receive(key, None, 1, 5, layout, size)
