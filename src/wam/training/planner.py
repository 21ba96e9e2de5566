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
    activations   what autograd saves for backward, traced at the preset's real token counts on fake
                  tensors (`torch._subclasses.FakeTensorMode`: shapes only, nothing allocated); with
                  activation checkpointing the saved block inputs plus 1.5 layers (the one recomputed
                  in backward and its gradients' working set)
`offload` (fsdp + CPUOffloadPolicy) moves the sharded weights, gradients and AdamW states to CPU
memory. Every figure is reported in GiB ("GB" on the command line means GiB) beside the GPU's.
The trace runs the policy's own `forward(batch)` with the synthetic batch `wam bench` uses
(`wam.bench.build.synthetic_batch`); data-dependent scalars (metrics) read as 1.0 during the trace.

Validated in tests/training/test_planner.py against the peak of torch's CPU allocator measured with
the profiler at tiny scale (single process, float32), and in benchmarks/planner_presets.py.
"""

from __future__ import annotations

import dataclasses
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


def saved_activation_bytes(cfg: Any, micro_batch: int, precision: str) -> dict[str, Any]:
    """Trace one training forward on fake tensors: bytes autograd saves, and the parameter layout."""
    from accelerate import init_empty_weights
    from torch._subclasses.fake_tensor import FakeTensorMode

    from wam.bench.build import instructions, synthetic_batch
    from wam.configs.registry import policy_class
    from wam.training.fsdp import sharding_units

    with init_empty_weights(include_buffers=False):  # meta weights: released backbones need no files
        policy = policy_class(cfg.policy)(cfg.policy, stats=None)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        _fake_parameters(policy, torch.bfloat16 if precision == "bf16" else torch.float32)
        batch = synthetic_batch(policy, micro_batch, torch.device("cpu"))
    _prefill_instructions(policy, instructions(policy, micro_batch))
    params = {p.untyped_storage()._cdata for p in policy.parameters()}
    seen: set[int] = set()
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in seen and storage._cdata not in params:
            seen.add(storage._cdata)
            total[0] += storage.nbytes()
        return t

    policy.train()
    with mode, _ScalarsReadOne(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        policy(batch)
    units = sharding_units(policy)
    unit_params = [sum(p.numel() for p in u.parameters()) for u in units]
    return {
        "saved": total[0],
        "units": len(units),
        "depth": max((len(m) for m in policy.modules() if isinstance(m, nn.ModuleList)), default=1),
        "unit_params": max(unit_params, default=0),
        "in_units": sum(unit_params),
        "total": sum(p.numel() for p in policy.parameters()),
        "trainable": sum(p.numel() for p in policy.parameters() if p.requires_grad),
    }


def _activations(request: PlanRequest, cfg: Any, micro: int) -> tuple[float, dict[str, Any]]:
    """Activation bytes at the peak, and the trace.

    Without checkpointing: everything autograd saves in the forward. With it: the saved block inputs
    plus 1.5 layers (the layer recomputed in backward and the working set of its gradients, measured
    at about half a layer on the tiny presets), a layer being (saved without - saved with
    checkpointing) / depth.
    """
    full = saved_activation_bytes(experiment_with(cfg, False), micro, request.precision)
    if not request.checkpointing:
        return full["saved"], full
    ckpt = saved_activation_bytes(experiment_with(cfg, True), micro, request.precision)
    layer = max(full["saved"] - ckpt["saved"], 0) / max(full["depth"], 1)
    return ckpt["saved"] + 1.5 * layer, {**full, "saved_checkpointed": ckpt["saved"]}


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
        "params_total": total,
        "params_trainable": trainable,
        "lora": uses_lora(cfg),
        "per_gpu_gib": {k: round(v / GIB, 3) for k, v in parts.items()},
        "peak_gib": round(peak / GIB, 3),
        "peak_bytes": int(peak),
        "cpu_offloaded_gib": round(cpu / GIB, 3),
        "activations_without_checkpointing_gib": round(trace["saved"] / GIB, 3),
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


def measure_step_peak(cfg: Any, micro_batch: int, seed: int = 0) -> dict[str, int]:
    """Measured peak bytes of one training step on the CPU (one process, float32), for validation.

    Method: a real policy and AdamW; one step first (AdamW allocates its moments), then the second
    step (forward, backward, AdamW, zero_grad) runs under `torch.profiler` with `profile_memory`:
    each op records the bytes torch's CPU allocator gave and took back inside it (its own, not its
    children's); their running sum in the order the ops end gives the step's peak above what was
    allocated before it (weights, AdamW moments, the batch), counted from the tensors' storages.
    """
    from torch.profiler import ProfilerActivity, profile

    from wam.bench.build import synthetic_batch
    from wam.configs.registry import policy_class
    from wam.training.optim import build_optimizer

    torch.manual_seed(seed)
    policy = policy_class(cfg.policy)(cfg.policy, stats=None).train()
    optimizer = build_optimizer(policy, cfg.train)
    batch = synthetic_batch(policy, micro_batch, torch.device("cpu"), seed)

    def step() -> None:
        loss, _ = policy(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    tensors = [*policy.parameters(), *policy.buffers(), *(v for v in batch.values() if torch.is_tensor(v))]
    tensors += [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    before = sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    running = peak = 0  # each op's own allocations minus frees, counted when it ends
    for event in sorted(prof.events(), key=lambda e: e.time_range.end):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return {"before": before, "step_peak": peak, "peak": before + peak}
