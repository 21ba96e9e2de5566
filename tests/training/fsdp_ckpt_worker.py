"""One FSDP2 training step with activation checkpointing and bf16 FSDP parameters, on a CPU.

python tests/training/fsdp_ckpt_worker.py PRESET

Replays the FSDP2 behaviour of torch 2.11 and older (no input cast while a unit recomputes in backward), which
made this step fail on CUDA, then runs the step twice on fresh policies: sharded with FSDP's default
input cast (the old wam setting), then with `wam.training.fsdp.mixed_precision_policy`. Prints one
line per run: "<setting> ok loss=..." or "<setting> <error type>: <first line>".
"""

from __future__ import annotations

import sys

import torch

from wam.bench.build import build_policy, resolve_target, synthetic_batch
from wam.configs.base import TrainConfig
from wam.training import fsdp


def replay_old_torch_cast() -> None:
    """FSDPState casts no forward input while in PRE_BACKWARD (an activation-checkpoint recompute)."""
    from torch.distributed.fsdp._fully_shard._fsdp_state import FSDPState, TrainingState

    cast = FSDPState._cast_forward_inputs

    def old(self, args, kwargs):
        if self._training_state == TrainingState.PRE_BACKWARD:
            return args, kwargs
        return cast(self, args, kwargs)

    FSDPState._cast_forward_inputs = old


def old_setting(bf16: bool) -> object:
    """The MixedPrecisionPolicy wam used before: FSDP casts every unit's floating-point inputs."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def step(preset: str) -> str:
    torch.manual_seed(0)
    target = resolve_target(preset, overrides=("policy.gradient_checkpointing=true",))
    policy = build_policy(target, torch.device("cpu")).train()
    batch = synthetic_batch(policy, 2, torch.device("cpu"))
    model = fsdp.shard_policy(policy, TrainConfig(strategy="fsdp"), bf16=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = model(batch)
        loss.backward()
    except Exception as exc:  # the test reads the error's type and first line
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    missing = [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    return f"no gradient for {missing[0]}" if missing else f"ok loss={loss.item():.4f}"


if __name__ == "__main__":
    replay_old_torch_cast()
    new_setting = fsdp.mixed_precision_policy
    fsdp.mixed_precision_policy = old_setting
    print("old", step(sys.argv[1]), flush=True)
    fsdp.mixed_precision_policy = new_setting
    print("new", step(sys.argv[1]), flush=True)
