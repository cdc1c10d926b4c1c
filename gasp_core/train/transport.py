"""How a pre-training batch crosses from a loader worker to the training process: through a ring of shared-memory
slots that the worker allocates once, so that only a slot number and a layout go through the worker queue.

``default_collate`` in a worker allocates every tensor of every batch in new shared memory and hands each one over as
a file descriptor: per tensor, the training process opens a socket connection to the worker, answers an
authentication challenge (``multiprocessing.resource_sharer``) and maps the memory, whose pages then fault in. On 2
cores that cost 4-5 ms of a 110-130 ms step for the 8 tensors of a batch, taken from the training step itself
(``benchmarks/pretrain_throughput.py``). Here the worker's ring travels once, with its first batch; every batch after
that is written into the ring's next slot and copied out in one ``memcpy`` by the training process as it arrives.

Safety: the worker writes batch ``j`` into slot ``j % slots``; the DataLoader lets at most ``prefetch_factor *
num_workers`` batches be requested and not yet received, so with ``slots`` above that the slot of batch ``j`` was
copied out before the worker is asked for batch ``j + slots``. Each slot carries the sequence number of the batch
being written (before) and of the one written (after); the reader checks both after its copy, so an overrun (a
DataLoader whose accounting changed) is an error, never a silently mixed batch. (With ``pin_memory=True`` the
DataLoader's pinning thread unpickles, and such an error surfaces as that thread exiting.)
"""

from __future__ import annotations

import os
from collections import OrderedDict
from itertools import count

import numpy as np
import torch

ALIGN = 64
"""Byte alignment of each tensor in a slot (and the header's size)."""

_RINGS: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
"""The rings received in this process, by (worker pid, ring number), least recently read first (the oldest beyond
``_MAX_RINGS`` are dropped: rings of workers long gone; a ring in use is read every few batches)."""
_MAX_RINGS = 64
_ring_numbers = count()


def _layout(items: list[dict[str, torch.Tensor]]) -> tuple[tuple, int]:
    """((key, dtype, start, nbytes, shape) per tensor of the collated batch, bytes of the slot's payload)."""
    layout, size = [], 0
    for key, value in items[0].items():
        shape = (len(items), *value.shape)
        nbytes = int(np.prod(shape)) * value.element_size()
        layout.append((key, value.dtype, size, nbytes, shape))
        size += -(-nbytes // ALIGN) * ALIGN
    return tuple(layout), size


def _views(payload: torch.Tensor, layout: tuple) -> dict[str, torch.Tensor]:
    return {key: payload[start : start + nbytes].view(dtype).view(shape) for key, dtype, start, nbytes, shape in layout}


def _receive(
    key: tuple[int, int], ring: torch.Tensor | None, slot: int, seq: int, layout: tuple, size: int
) -> dict[str, torch.Tensor]:
    """Unpickles a :class:`_SlotBatch` in the training process: the batch dict, copied out of its slot."""
    if ring is not None:
        _RINGS[key] = ring
    if key not in _RINGS:
        raise RuntimeError(
            f"loader worker {key[0]}: batch {seq} refers to ring {key[1]}, which this process never received or "
            f"dropped after {_MAX_RINGS} newer rings"
        )
    _RINGS.move_to_end(key)
    while len(_RINGS) > _MAX_RINGS:
        _RINGS.popitem(last=False)
    ring = _RINGS[key]
    payload = ring[slot, ALIGN : ALIGN + size].clone()
    written = ring[slot, :16].view(torch.int64)
    if int(written[0]) != seq or int(written[1]) != seq:
        raise RuntimeError(
            f"loader worker {key[0]}: slot {slot} holds batch {int(written[0])}/{int(written[1])} where batch {seq} "
            f"was expected (the worker overran its ring of {ring.shape[0]} slots)"
        )
    return _views(payload, layout)


class _SlotBatch:
    """What a worker's collate returns: pickles as the slot's number (and, the first time, the ring itself)."""

    def __init__(self, key, ring, slot, seq, layout, size) -> None:
        self.args = (key, ring, slot, seq, layout, size)

    def __reduce__(self):
        return _receive, self.args


class RingCollate:
    """The loader's ``collate_fn``: ``default_collate`` in the training process (no workers); in a worker, the
    batch is written into the worker's ring of ``slots`` shared-memory slots and arrives as the same dict."""

    def __init__(self, slots: int) -> None:
        if slots < 2:
            raise ValueError(f"a ring needs at least 2 slots, got {slots}")
        self.slots = slots
        self._ring: torch.Tensor | None = None
        self._key: tuple[int, int] | None = None
        self._count = 0

    def __getstate__(self) -> dict:
        return {"slots": self.slots, "_ring": None, "_key": None, "_count": 0}

    def __call__(self, items: list[dict[str, torch.Tensor]]):
        if torch.utils.data.get_worker_info() is None:
            return torch.utils.data.default_collate(items)
        for key, value in items[0].items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"RingCollate takes items that are dicts of tensors; {key!r} is a {type(value).__name__}"
                )
        layout, size = _layout(items)
        fresh = self._ring is None or self._ring.shape[1] < ALIGN + size
        if fresh:  # the first batch, or one larger than the slots: a new ring, sent with this batch
            storage = torch.UntypedStorage._new_shared(self.slots * (ALIGN + size))
            self._ring = torch.empty(0, dtype=torch.uint8).new(storage).view(self.slots, ALIGN + size)
            self._key = (os.getpid(), next(_ring_numbers))
        seq, slot = self._count, self._count % self.slots
        self._count += 1
        written = self._ring[slot, :16].view(torch.int64)
        written[0] = seq  # being written
        for key, view in _views(self._ring[slot, ALIGN : ALIGN + size], layout).items():
            torch.stack([item[key] for item in items], out=view)
        written[1] = seq  # written
        return _SlotBatch(self._key, self._ring if fresh else None, slot, seq, layout, size)
