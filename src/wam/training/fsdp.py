"""Sharded data parallel on FSDP2: `torch.distributed.fsdp.fully_shard`, one unit per transformer block.

`shard_policy(policy, cfg)` shards a built policy in place, in torchtitan's order:
    1. activation checkpointing   the policy's own per-block recompute (set at build time from
                                  `train.activation_checkpointing`, see `wam.training.strategy`)
    2. compile                    not applied here (training runs eagerly)
    3. fully_shard                each unit of `policy.sharding_units()` (Wan blocks, Fast-WAM's video
                                  and action blocks, Light-WAM's backbone blocks and action expert),
                                  the last one with `reshard_after_forward=False` (backward starts with
                                  it), then the root: the policy, whose group holds the rest (embedders,
                                  heads, conditioning, adapters)
    4. the optimizer              built by the caller over the sharded (DTensor) parameters
Precision: on CUDA with `train.mixed_precision=bf16`, `MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=float32, cast_forward_inputs=False)`: bf16 all-gathered parameters, float32 gradient
reduction, and float32 sharded master weights that AdamW updates; the loop's bf16 autocast does the
compute casts. FSDP does not cast the units' inputs, for two reasons:
- the Wan conventions keep the timestep modulation, RoPE tables and norms in float32 (the authors
  compute them so); casting a block's `t_mod` and `rope` to bf16 on entry would lose that;
- activation checkpointing recomputes a block outside FSDP's forward hook: torch 2.11 and older skip the
  input cast during that recompute (FSDPState._pre_forward returns early in PRE_BACKWARD), so the
  recomputed tensors came back float32 where the forward had saved bf16 ones, and backward failed
  with "CheckpointError: Recomputed values ... have different metadata" (seen on an H200, torch
  2.11; tests/training/test_fsdp_checkpointing.py replays that torch behaviour on a CPU).
On a CPU (gloo) everything stays float32. `train.cpu_offload`
keeps the shards, their gradients and the AdamW states in CPU memory (`CPUOffloadPolicy`); the
optimizer step then runs on the CPU.

Why `fully_shard` directly rather than accelerate's FSDP2 plugin:
- Fast-WAM's Mixture-of-Transformers calls a block's step methods (`modulation_params`,
  `self_attn_qkv`, ...) rather than its `forward`; FSDP only gathers parameters around `forward` and
  registered methods, so those methods are registered per block (`register_fsdp_forward_method`),
  which the plugin's auto-wrap policy cannot express;
- the units come from the policy (`sharding_units`), not from class names, and the device mesh is
  built on "cpu" explicitly for gloo (the plugin builds it on the accelerator's device);
- checkpoints use `torch.distributed.checkpoint` and its state-dict helpers directly (`dcp.py`).
accelerate still starts the processes and the process group, and provides the autocast context.

A single process also works: a one-rank process group is created (FSDP needs one), which gives CPU
offload on one GPU.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from wam.configs.base import TrainConfig

# WanBlock.forward is composed of these methods; the Fast-WAM MoT calls them one by one (see mot.py).
STEP_METHODS = ("modulation_params", "self_attn_qkv", "self_attn_out", "cross_attn_ffn")


def sharding_units(policy: nn.Module) -> list[nn.Module]:
    """The policy's `sharding_units()`, else every element of its nn.ModuleLists (repeated blocks)."""
    hook = getattr(policy, "sharding_units", None)
    if callable(hook):
        return list(hook())
    units: list[nn.Module] = []
    for module in policy.modules():
        if isinstance(module, nn.ModuleList):
            units += [m for m in module if any(True for _ in m.parameters())]
    return units


def ensure_process_group() -> None:
    """FSDP needs a process group: a one-rank group when no launcher (torchrun, accelerate) made one."""
    if dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    os.environ.setdefault("LOCAL_RANK", "0")


def _route_step_methods(block: nn.Module) -> None:
    """Make FSDP gather `block`'s parameters around each MoT step method called on its own.

    `register_fsdp_forward_method` alone would reshard inside `block.forward` (which calls the same
    methods), so a method called from within the block's forward runs unwrapped.
    """
    from torch.distributed.fsdp import register_fsdp_forward_method

    depth = [0]  # > 0 while block.forward runs (FSDP's own forward hooks gather the parameters)

    def enter(_module: nn.Module, _args: Any) -> None:
        depth[0] += 1

    def leave(_module: nn.Module, _args: Any, _out: Any) -> None:
        depth[0] -= 1

    block.register_forward_pre_hook(enter)
    block.register_forward_hook(leave, always_call=True)
    for name in STEP_METHODS:
        plain = getattr(block, name)
        register_fsdp_forward_method(block, name)
        gathered = getattr(block, name)

        def route(*args: Any, _plain: Callable = plain, _gathered: Callable = gathered, **kwargs: Any) -> Any:
            return (_plain if depth[0] else _gathered)(*args, **kwargs)

        setattr(block, name, route)


def mixed_precision_policy(bf16: bool) -> Any:
    """FSDP2's precision policy: bf16 parameters, float32 reductions, inputs left to autocast; or None."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if not bf16:
        return None
    return MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False
    )


def shard_policy(policy: nn.Module, cfg: TrainConfig, *, bf16: bool | None = None) -> nn.Module:
    """Shard `policy` in place with FSDP2 (see the module docstring); returns it (now an FSDPModule).

    `bf16` defaults to CUDA with `cfg.mixed_precision == "bf16"`; the forward must then run under
    bf16 autocast (the loop's `accelerator.autocast()`). True on a CPU is for tests.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    ensure_process_group()
    # FSDP2 warns when a unit returns a view (an in-place op on it would skip the pre-backward
    # all-gather); the Wan blocks' outputs are only ever used out of place (residual sums, chunks of
    # the modulation), which the 2-process equality tests check to the last bit of the loss.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDP\w+\) returned a view tensor")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    mesh = init_device_mesh("cuda" if cuda else "cpu", (dist.get_world_size(),))
    if bf16 is None:
        bf16 = cuda and cfg.mixed_precision == "bf16"
    mp = mixed_precision_policy(bf16)
    offload = CPUOffloadPolicy(pin_memory=cuda) if cfg.cpu_offload else OffloadPolicy()
    common: dict[str, Any] = {"mesh": mesh, "offload_policy": offload}
    if mp is not None:
        common["mp_policy"] = mp
    units = sharding_units(policy)
    for i, unit in enumerate(units):
        fully_shard(unit, reshard_after_forward=i < len(units) - 1, **common)
        if all(hasattr(unit, name) for name in STEP_METHODS):
            _route_step_methods(unit)
    fully_shard(policy, **common)
    return policy


@contextmanager
def no_gradient_sync(model: nn.Module) -> Iterator[None]:
    """Accumulate gradients locally (no reduce-scatter) for the micro-batches before the last."""
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """Global gradient norm over every shard (clipped to `max_norm` when > 0); every rank calls it."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()  # the partial norms of the shards, reduced over the ranks
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return float(norm)
