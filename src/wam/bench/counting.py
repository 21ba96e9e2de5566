"""FLOPs and weight traffic of one call, counted at the aten level, on real or fake (memory-free) weights.

`count_call(fn, params)` runs `fn()` once under two dispatch modes:
    torch.utils.flop_counter.FlopCounterMode   FLOPs of matmuls, convolutions and attention
                                               (2 per multiply-add; elementwise ops count 0)
    ParameterTraffic                           which parameters each non-view op reads
and under SDPA's math kernel, so that attention is decomposed into the two batched matmuls the
counter knows on every device (the fused CPU kernel has no FLOP formula). The math is the same:
only the count is taken this way. Results:
    flops              total FLOPs of the call
    flops_by_op        per aten op
    weight_bytes_used  bytes of the distinct parameters the call reads (the memory floor's numerator:
                       each weight must cross the memory bus at least once)
    weight_bytes_read  parameter bytes summed over every op that reads them (what is moved when no
                       weight stays in cache between ops: e.g. Fast-WAM's expert read at every step)
Parameters are recognised by their storage, so views (transposes, slices) of a weight count as it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata  # the StorageImpl pointer: shared by a tensor and its views


class ParameterTraffic(TorchDispatchMode):
    """Records, per op, the bytes of the parameters it reads (identified by their storage)."""

    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        super().__init__()
        self.sizes: dict[int, int] = {}
        for p in params:
            self.sizes[_storage_key(p)] = p.numel() * p.element_size()
        self.used: set[int] = set()
        self.read = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if not getattr(func, "is_view", False):
            seen: set[int] = set()
            for leaf in tree_leaves((args, kwargs)):
                if isinstance(leaf, torch.Tensor):
                    key = _storage_key(leaf)
                    if key in self.sizes and key not in seen:
                        seen.add(key)
                        self.read += self.sizes[key]
            self.used |= seen
        return func(*args, **kwargs)

    @property
    def used_bytes(self) -> int:
        return sum(self.sizes[k] for k in self.used)


@dataclass
class CallCount:
    """What one call computes and reads (see the module docstring)."""

    flops: int
    flops_by_op: dict[str, int]
    weight_bytes_used: int
    weight_bytes_read: int


def count_call(fn: Callable[[], Any], module: torch.nn.Module) -> CallCount:
    """FLOPs and traffic of `module`'s parameters in `fn()` (its result is discarded).

    The parameters are made not to require grad meanwhile (restored after): the counter's module
    tracker hooks the autograd graph of any input that requires grad, which fails in inference mode.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    traffic = ParameterTraffic(params)
    counter = FlopCounterMode(display=False)
    try:
        module.requires_grad_(False)
        with sdpa_kernel([SDPBackend.MATH]), counter, traffic:
            fn()
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return CallCount(int(counter.get_total_flops()), by_op, traffic.used_bytes, traffic.read)


def parameter_bytes(modules: Iterable[torch.nn.Module]) -> int:
    """Bytes of every distinct parameter of the modules, in their current dtypes."""
    seen: dict[int, int] = {}
    for module in modules:
        for p in module.parameters():
            seen[id(p)] = p.numel() * p.element_size()
    return sum(seen.values())


def floor_seconds(flops: int, weight_bytes: int, peak_flops: float, bandwidth: float) -> dict[str, Any]:
    """The roofline floor of one call: max(FLOPs / peak FLOP/s, weight bytes / bandwidth)."""
    compute, memory = flops / peak_flops, weight_bytes / bandwidth
    return {
        "compute_s": compute,
        "memory_s": memory,
        "floor_s": max(compute, memory),
        "bound": "compute" if compute >= memory else "memory",
    }
