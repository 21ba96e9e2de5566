"""Live tensor memory over a traced step: every storage an op creates, from birth to death.

`LiveBytes` is a TorchDispatchMode. Each tensor an op returns registers its storage; a storage is
freed when the last tensor that views it dies (`weakref.finalize` on each tensor: PyTorch keeps
a tensor's Python object alive while C++ still holds it, so autograd's saved tensors count until
backward releases them). The running sum of live storage bytes, in op order, gives the peak.
It runs on fake tensors (`FakeTensorMode`: shapes only, nothing allocated), so the planner traces
a 5B-parameter step forward and backward, activation checkpointing's recomputation included,
without memory.

Each allocation gets an id; `peak_excluding(ids)` replays the timeline without some of them
(the planner leaves out the parameter gradients, which it counts on their own).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """Tracks the bytes of storages created under it (storages in `ignore` are not counted)."""

    def __init__(self, ignore: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._ignore = {t.untyped_storage()._cdata for t in ignore}
        self._alloc_of: dict[int, int] = {}  # storage address -> allocation id (while live)
        self._views: dict[int, int] = {}  # allocation id -> tensors alive on it
        self._seen: set[int] = set()  # id() of tensors already registered
        self._next = 0
        self.timeline: list[tuple[int, int]] = []  # (allocation id, +bytes at birth | -bytes at death)
        self._size: dict[int, int] = {}

    # ------------------------------------------------------------------ registration
    def _register(self, tensor: torch.Tensor) -> None:
        if id(tensor) in self._seen:
            return
        storage = tensor.untyped_storage()
        address = storage._cdata
        if address in self._ignore:
            return
        alloc = self._alloc_of.get(address)
        if alloc is None:
            alloc = self._next
            self._next += 1
            self._alloc_of[address] = alloc
            self._views[alloc] = 0
            self._size[alloc] = storage.nbytes()
            self.timeline.append((alloc, storage.nbytes()))
        self._views[alloc] += 1
        self._seen.add(id(tensor))
        weakref.finalize(tensor, self._release, id(tensor), address, alloc)

    def _release(self, tensor_id: int, address: int, alloc: int) -> None:
        self._seen.discard(tensor_id)
        self._views[alloc] -= 1
        if self._views[alloc] == 0:
            del self._views[alloc]
            if self._alloc_of.get(address) == alloc:
                del self._alloc_of[address]
            self.timeline.append((alloc, -self._size.pop(alloc)))

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self._register(item)
        return out

    # ------------------------------------------------------------------ queries
    def allocation_of(self, tensor: torch.Tensor) -> int | None:
        """The allocation id of a live tensor's storage (None if it was not created under the mode)."""
        return self._alloc_of.get(tensor.untyped_storage()._cdata)

    def peak(self, excluding: Iterable[int] = ()) -> int:
        """Peak live bytes over the timeline, leaving out the allocations in `excluding`."""
        skip = set(excluding)
        live = peak = 0
        for alloc, delta in self.timeline:
            if alloc not in skip:
                live += delta
                peak = max(peak, live)
        return peak
