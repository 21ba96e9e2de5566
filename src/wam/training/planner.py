"""Memory planner: the per-GPU peak of a training preset, before anything is allocated (`wam plan`).

Per GPU, for `gpus` data-parallel GPUs at `micro_batch` samples per GPU:
    weights       float32 master weights (4 B/param); with fsdp divided by the GPU count, plus the
                  bf16 copies FSDP gathers: the root group (embedders, heads: held through the step)
                  and two transformer blocks in flight (the current one and the prefetched one);
                  `lora` (Fast-WAM's `policy.video_lora`, on in `fastwam-libero-lora`): the frozen video
                  stream kept in bf16 (2 B/param), LoRA + action expert + conditioning float32; the
                  trainable set is the built policy's own (the same LoRA the training loop trains)
    gradients     float32, trainable parameters only (sharded with fsdp); DDP on several GPUs adds its
                  reduction buckets (one more copy); bf16 autocast caches a bf16 copy of the trainable
                  weights
    optimizer     AdamW: two float32 moments per trainable parameter (sharded with fsdp)
    activations   the tensors a training step holds beyond its weights and states, traced forward
                  and backward at the preset's real token counts on fake tensors
                  (`torch._subclasses.FakeTensorMode`: shapes only, nothing allocated) by
                  `live_bytes.LiveBytes`: with activation checkpointing the saved block inputs,
                  the block recomputed in backward and the gradients in flight, as they happen;
                  with ddp and one micro-batch per step the gradients appearing as backward frees
                  activations are netted out against the full gradients counted above; under
                  gradient accumulation (earlier micro-batches' gradients are all there) and with
                  fsdp the peak without gradients is added
`offload` (fsdp + CPUOffloadPolicy) moves the sharded weights, gradients and AdamW states to CPU
memory. Every figure is reported in GiB ("GB" on the command line means GiB) beside the GPU's.
The trace runs the policy's own `forward(batch)` and the loss's backward on the synthetic batch
`wam bench` uses (`wam.bench.build.synthetic_batch`); data-dependent scalars (metrics) read as 1.0
during the trace.

Validated in tests/training/test_planner.py against the measured peak of one training step at tiny
scale (single process, float32: `peak_probe.measure_step_peak`, the kernel's resident high-water
mark), and in benchmarks/planner_presets.py.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

GIB = 2**30
_SCALARS = (torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.__bool__, torch.Tensor.__int__)


@dataclass(frozen=True)
class PlanRequest:
    """What `wam plan` is asked about."""

    preset: str  # a policy preset (e.g. fastwam-libero)
    gpus: int = 1  # data-parallel GPUs (processes)
    gpu_mem_gib: float = 80.0  # memory of one GPU in GiB
    micro_batch: int | None = None  # samples per GPU per forward (None = the recipe's, else global / gpus)
    strategy: str = "fsdp"  # "ddp" or "fsdp"
    checkpointing: bool = False  # activation checkpointing per transformer block
    offload: bool = False  # fsdp: sharded weights, gradients and AdamW states in CPU memory
    lora: bool = False  # Fast-WAM: policy.video_lora=true (frozen bf16 video stream + LoRA, trainable expert)
    precision: str = "bf16"  # "bf16" (GPU training) or "fp32" (CPU, as the tests measure)
    overrides: tuple[str, ...] = ()  # `--set key=value` changes to the preset, as `wam train` takes them

    def __post_init__(self) -> None:
        if self.gpus < 1 or self.gpu_mem_gib <= 0 or (self.micro_batch is not None and self.micro_batch < 1):
            raise ValueError("--gpus and --batch-size must be at least 1 and --gpu-mem positive.")
        if self.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"--strategy {self.strategy} is not valid: use ddp or fsdp.")
        if self.offload and self.strategy != "fsdp":
            raise ValueError("--offload needs --strategy fsdp (CPUOffloadPolicy shards what it offloads).")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision {self.precision} is not valid: use bf16 or fp32.")


class _ScalarsReadOne(TorchFunctionMode):
    """Tensor -> Python scalar conversions (loss checks, metrics) give 1.0 on fake tensors."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in _SCALARS:
            return {torch.Tensor.__bool__: True, torch.Tensor.__int__: 1}.get(func, 1.0)
        return func(*args, **(kwargs or {}))


def experiment(request: PlanRequest) -> Any:
    """The preset with its dataset-derived sizes assumed (as `wam bench` does) and the plan's changes."""
    from wam.bench.build import resolve_target

    cfg = resolve_target(request.preset, overrides=request.overrides).config
    policy = cfg.policy
    if hasattr(policy, "gradient_checkpointing"):
        policy = dataclasses.replace(policy, gradient_checkpointing=request.checkpointing)
    if request.lora and policy.type != "fastwam":
        raise ValueError(f"--lora applies to Fast-WAM presets; {request.preset} is a {policy.type}.")
    if request.lora:
        policy = dataclasses.replace(policy, video_lora=True)  # the preset's policy.lora settings
    return dataclasses.replace(cfg, policy=policy)


def uses_lora(cfg: Any) -> bool:
    """True when the plan's policy trains LoRA on a frozen video stream (`--lora` or a LoRA preset)."""
    return bool(getattr(cfg.policy, "video_lora", False))


def _prefill_instructions(policy: nn.Module, texts: list[str]) -> None:
    """Frozen text encoders (umT5) are not part of training memory: give them zero token states."""
    from wam.policies.instructions import FrozenInstructions

    for module in policy.modules():
        frozen = getattr(module, "_frozen", None)
        if isinstance(frozen, FrozenInstructions):
            for text in texts:
                frozen.memo[text] = torch.zeros(frozen.length, frozen.width)


def _fake_parameters(policy: nn.Module, dtype: torch.dtype) -> None:
    """Meta parameters -> fake CPU tensors of `dtype` (bf16 as FSDP's MixedPrecisionPolicy gathers them)."""
    for module in policy.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.is_floating_point():
                data = torch.empty(param.shape, dtype=dtype)
                module._parameters[name] = nn.Parameter(data, param.requires_grad)


_TRACES: dict[str, dict[str, Any]] = {}  # trace_step results by (config, micro-batch, precision)


def trace_step(cfg: Any, micro_batch: int, precision: str) -> dict[str, Any]:
    """`_trace_step`, remembered per process: plans that differ only in GPUs or strategy share it."""
    from wam.configs.serialize import to_dict

    key = json.dumps([to_dict(cfg), micro_batch, precision], sort_keys=True, default=str)
    if key not in _TRACES:
        _TRACES[key] = _trace_step(cfg, micro_batch, precision)
    return dict(_TRACES[key])


def _trace_step(cfg: Any, micro_batch: int, precision: str) -> dict[str, Any]:
    """Trace one training forward and backward on fake tensors; activation bytes and parameter layout.

    Over forward and backward (`LiveBytes`), activation checkpointing's recomputation of a block in
    backward included: `peak`, the peak of live tensor bytes without the parameter gradients;
    `peak_with_grads`, with them as they appear in backward; `grads`, the gradients' bytes at the end.
    """
    from accelerate import init_empty_weights
    from torch._subclasses.fake_tensor import FakeTensorMode

    from wam.bench.build import instructions, synthetic_batch
    from wam.configs.registry import policy_class
    from wam.training.fsdp import sharding_units
    from wam.training.live_bytes import LiveBytes

    with init_empty_weights(include_buffers=False):  # meta weights: released backbones need no files
        policy = policy_class(cfg.policy)(cfg.policy, stats=None)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        _fake_parameters(policy, torch.bfloat16 if precision == "bf16" else torch.float32)
        batch = synthetic_batch(policy, micro_batch, torch.device("cpu"))
    _prefill_instructions(policy, instructions(policy, micro_batch))
    params = list(policy.parameters())
    inputs = [*params, *policy.buffers(), *(v for v in batch.values() if torch.is_tensor(v))]
    policy.train()
    live = LiveBytes(ignore=inputs)  # weights, buffers and the batch are counted elsewhere
    with mode, _ScalarsReadOne(), live:
        loss, _ = policy(batch)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        grad_allocs = [live.allocation_of(g) for g in grads]
    units = sharding_units(policy)
    unit_params = [sum(p.numel() for p in u.parameters()) for u in units]
    return {
        "peak": live.peak(excluding=[a for a in grad_allocs if a is not None]),
        "peak_with_grads": live.peak(),
        "grads": sum(g.untyped_storage().nbytes() for g in grads),
        "units": len(units),
        "unit_params": max(unit_params, default=0),
        "in_units": sum(unit_params),
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def _activations(request: PlanRequest, cfg: Any, micro: int) -> tuple[float, dict[str, Any]]:
    """Activation bytes the plan adds to weights, gradients and AdamW states, and the trace.

    ddp, one micro-batch per optimiser step: the traced peak of activations and gradients together
    (gradients appear as backward frees activations) minus the full gradients, which the plan counts
    on their own line, so that the sum is the step's peak. With gradient accumulation the gradients
    of earlier micro-batches are all there during the next forward, and with fsdp they are
    reduce-scattered unit by unit (a unit's unsharded gradients are in `buffers`): then the traced
    peak without gradients. With checkpointing, the trace without it is kept for the report.
    """
    netted = request.strategy == "ddp" and accumulation_of(cfg, micro, request.gpus) == 1

    def added(trace: dict[str, Any]) -> float:
        return trace["peak_with_grads"] - trace["grads"] if netted else trace["peak"]

    full = trace_step(experiment_with(cfg, False), micro, request.precision)
    if not request.checkpointing:
        return added(full), full
    ckpt = trace_step(experiment_with(cfg, True), micro, request.precision)
    return added(ckpt), {**ckpt, "without_checkpointing": added(full)}


def experiment_with(cfg: Any, checkpointing: bool) -> Any:
    if not hasattr(cfg.policy, "gradient_checkpointing"):
        return cfg
    return dataclasses.replace(
        cfg, policy=dataclasses.replace(cfg.policy, gradient_checkpointing=checkpointing)
    )


def micro_batch_of(request: PlanRequest, cfg: Any) -> int:
    if request.micro_batch is not None:
        return request.micro_batch
    if cfg.train.micro_batch_size is not None:
        return int(cfg.train.micro_batch_size)
    return max(1, cfg.train.batch_size // request.gpus)


def accumulation_of(cfg: Any, micro: int, gpus: int = 1) -> int:
    """Micro-batches per optimiser step: the recipe's global batch over micro-batch x GPUs (at least 1)."""
    return max(cfg.train.grad_accum, -(-cfg.train.batch_size // (micro * gpus)), 1)


def plan(request: PlanRequest) -> dict[str, Any]:
    """The per-GPU memory plan of `request` (GiB), whether it fits, and what to change if not."""
    cfg = experiment(request)
    micro = micro_batch_of(request, cfg)
    activations, trace = _activations(request, cfg, micro)
    total, trainable = trace["total"], trace["trainable"]
    frozen = total - trainable
    n = request.gpus if request.strategy == "fsdp" else 1
    bf16 = request.precision == "bf16"
    frozen_bytes = (2 if uses_lora(cfg) and bf16 else 4) * frozen  # the loop's `cast_frozen` under bf16
    weights = (frozen_bytes + 4 * trainable) / n
    grads = 4 * trainable / n
    optimizer = 8 * trainable / n
    buffers = 0.0
    if request.strategy == "fsdp":
        gathered = 2 if bf16 else 4
        root = total - trace["in_units"]
        buffers = (
            gathered * (root + 2 * trace["unit_params"]) + gathered * 2 * trace["unit_params"]
        )  # + grads
    else:
        buffers = (4 * trainable if request.gpus > 1 else 0) + (2 * trainable if bf16 else 0)
    cpu = 0.0
    if request.offload:
        cpu = weights + grads + optimizer
        weights = grads = optimizer = 0.0
    parts = {
        "weights": weights,
        "gradients": grads,
        "optimizer": optimizer,
        "buffers": buffers,
        "activations": activations,
    }
    peak = sum(parts.values())
    result = {
        "preset": request.preset,
        "request": dataclasses.asdict(request),
        "micro_batch": micro,
        "accumulation": accumulation_of(cfg, micro, request.gpus),
        "params_total": total,
        "params_trainable": trainable,
        "lora": uses_lora(cfg),
        "per_gpu_gib": {k: round(v / GIB, 3) for k, v in parts.items()},
        "peak_gib": round(peak / GIB, 3),
        "peak_bytes": int(peak),
        "cpu_offloaded_gib": round(cpu / GIB, 3),
        "activations_without_checkpointing_gib": round(
            trace.get("without_checkpointing", activations) / GIB, 3
        ),
        "fits": peak <= request.gpu_mem_gib * GIB * 0.95,  # 5% for the CUDA context and fragmentation
    }
    result["advice"] = advice(request, result)
    return result


def advice(request: PlanRequest, result: dict[str, Any]) -> list[str]:
    """What to change when the plan does not fit (most effective first)."""
    if result["fits"]:
        return []
    parts = result["per_gpu_gib"]
    tips = []
    if request.strategy == "ddp":
        tips.append("--strategy fsdp: shards weights, gradients and AdamW states over the GPUs")
    if not request.checkpointing and parts["activations"] > 0.25 * result["peak_gib"]:
        tips.append("--checkpointing: recompute each block in backward (activations drop the most)")
    if result["micro_batch"] > 1:
        tips.append(
            f"a smaller --batch-size (micro-batch) with gradient accumulation: set train.micro_batch_size "
            f"below {result['micro_batch']}; the global batch stays"
        )
    if request.strategy == "fsdp":
        tips.append(f"more GPUs than {request.gpus}: sharded states shrink with the GPU count")
        if not request.offload:
            tips.append("--offload: keep sharded weights, gradients and AdamW states in CPU memory")
    if not request.lora and request.preset.startswith("fastwam") and not result.get("lora"):
        tips.append("--lora: freeze the video stream in bf16 and train LoRA on it plus the action expert")
    return tips
