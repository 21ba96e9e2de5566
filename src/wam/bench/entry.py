"""One benchmark entry (a target, a variant, an inference path), measured in the current process.

Order of the phases, each with its own memory peak:
    build         resolve the target, build the policy (random or trained weights), install the
                  stand-ins (codec, text embeddings), make the synthetic observation
    count         FLOPs and weight traffic of one call (`counting.py`) with the entry's options but
                  compile and CUDA graphs off (they change how, not what, is computed)
    inference     configure the options, `warmup` + `calls` timed `predict_action_chunk` calls
    train         (with `train`) the default options back, `train_steps` steps of the training loop
With `run` off only build (fake weights, no memory) and count happen: the paper presets report FLOPs,
weight bytes and the floor on a machine that cannot hold them.

`python -m wam.bench.entry SPEC.json OUT.json` runs one entry in a fresh process (what `wam bench`
does for each entry, so that memory peaks do not mix) and writes its result object.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INPUTS = ("images", "latents")


@dataclass
class EntrySpec:
    """What to measure for one result row (JSON-serialisable: it crosses a process boundary)."""

    target: str  # preset name or run/checkpoint folder
    variant: str | None = None  # Fast-WAM variant (None: the target's own)
    inference: str = "default"  # inference options preset: default, plain or fast
    options: tuple[str, ...] = ()  # name=value overrides of the inference options
    overrides: tuple[str, ...] = ()  # --set key=value on a preset's experiment config
    device: str = "cpu"  # cpu or cuda
    batch_size: int = 1  # observations per call (B)
    calls: int = 50  # timed calls
    warmup: int = 5  # untimed calls first
    input: str = "images"  # "images" (through the codec) or "latents" (the model alone)
    run: bool = True  # False: fake weights, FLOPs / bytes / floor only
    train: bool = False  # also measure training samples/s
    train_steps: int = 5  # timed training steps
    train_batch_size: int | None = None  # None: the preset's train.batch_size
    seed: int = 0  # weights and inputs
    roofline: dict[str, Any] | None = field(default=None)  # the parent's measured roofline

    def __post_init__(self) -> None:
        self.options, self.overrides = tuple(self.options), tuple(self.overrides)
        if self.input not in INPUTS:
            raise ValueError(f"input={self.input!r} is not valid: use one of {', '.join(INPUTS)}.")
        if min(self.batch_size, self.calls) < 1 or self.warmup < 0 or self.train_steps < 1:
            raise ValueError("batch_size, calls and train_steps must be >= 1 and warmup >= 0.")
        if self.train_batch_size is not None and self.train_batch_size < 1:
            raise ValueError("train_batch_size must be >= 1, or none for the preset's batch size.")

    @property
    def name(self) -> str:
        base = Path(self.target).name if os.sep in self.target else self.target
        return base + (f"[{self.variant}]" if self.variant else "") + f"/{self.inference}"


def empty_result(spec: EntrySpec) -> dict[str, Any]:
    """A result object with every schema field present (filled in as the phases complete)."""
    return {
        "name": spec.name,
        "target": spec.target,
        "source": "checkpoint" if Path(spec.target).exists() else "preset",
        "variant": spec.variant,
        "inference": spec.inference,
        "options": {},
        "assumed": {},
        "policy": None,
        "flops": None,
        "flops_by_op": {},
        "weight_bytes_used": None,
        "weight_bytes_read": None,
        "codec_in_flops": False,
        "floor": None,
        "latency": None,
        "floor_ratio": None,
        "relative_p50": None,
        "memory": None,
        "train": None,
        "seconds": 0.0,
        "error": None,
    }


def run_entry(spec: EntrySpec) -> dict[str, Any]:
    """Measure one entry; an exception becomes the result's one-line `error` (set WAM_DEBUG=1 to raise)."""
    result = empty_result(spec)
    start = time.perf_counter()
    try:
        _measure(spec, result)
    except Exception as err:  # one failing entry must not lose the others' results
        if os.environ.get("WAM_DEBUG"):
            raise
        text = str(err).strip().splitlines()
        result["error"] = f"{type(err).__name__}: {text[0] if text else ''}"
    result["seconds"] = time.perf_counter() - start
    return result


def _policy_info(policy: Any, target: Any) -> dict[str, Any]:
    from wam.bench.counting import parameter_bytes

    params = list(policy.parameters())
    return {
        "type": target.config.policy.type,
        "params": sum(p.numel() for p in params),
        "weight_bytes": parameter_bytes([policy]),
        "dtype": str(params[0].dtype).removeprefix("torch.") if params else "none",
        "chunk_size": policy.chunk_size,
        "action_dim": policy.action_dim,
        "state_dim": policy.state_dim,
        "cameras": list(policy.cameras),
        "image_size": policy.image_size,
    }


def _forward(policy: Any, obs: dict[str, Any]) -> Any:
    """What `predict_action_chunk` computes, without the copy to numpy (which a fake tensor cannot do)."""
    from wam.policies.fast_path import inference_context

    with inference_context(policy.inference_options, policy.device):
        return policy.infer_normalized(policy.normalize_inputs(policy._to_torch(obs)))


def _measure(spec: EntrySpec, result: dict[str, Any]) -> None:
    """The phases of the module docstring, filling `result`."""
    import torch

    from wam.bench import build
    from wam.bench.measure import MemoryProbe, train_throughput
    from wam.policies.fast_path import parse_inference_options

    device = torch.device(spec.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked but torch sees no CUDA device: use --device cpu.")
    torch.manual_seed(spec.seed)
    probe = MemoryProbe(device)
    baseline = probe.current()
    options = parse_inference_options(spec.inference, spec.options, device.type)
    result["options"] = options.to_dict()
    target = build.resolve_target(spec.target, spec.variant, spec.overrides)
    result["source"], result["assumed"] = target.source, dict(target.assumed)
    policy = build.build_policy(target, device, run=spec.run, seed=spec.seed)
    result["assumed"].update(build.prepare_inputs(policy, target, device, spec.input))
    obs = build.synthetic_observation(policy, spec.batch_size, spec.input, spec.seed)
    result["policy"] = _policy_info(policy, target)
    result["codec_in_flops"] = spec.input == "images" and build.latent_channels(policy) is not None
    _count(spec, policy, obs, options, result)
    if not spec.run:
        return
    policy.configure_inference(options, restorable=False)  # no float32 copies in the memory peak
    _time(spec, policy, obs, probe, baseline, result)
    if spec.train:
        policy.configure_inference(None)
        size = spec.train_batch_size or target.config.train.batch_size
        batch = build.synthetic_batch(policy, size, device, spec.seed)
        probe.reset()
        result["train"] = train_throughput(policy, target.config.train, batch, spec.train_steps)
        result["memory"]["train_peak_bytes"] = probe.peak()


def _count(spec: EntrySpec, policy: Any, obs: dict[str, Any], options: Any, result: dict[str, Any]) -> None:
    """FLOPs, weight traffic and the floor, with the entry's options minus compile and CUDA graphs."""
    from wam.bench.counting import count_call, floor_seconds

    counting = dataclasses.replace(options, compile=False, cuda_graphs=False)
    if not spec.run:  # fake weights: the math of the float32 path
        counting = dataclasses.replace(counting, bf16=False)
    policy.configure_inference(counting, restorable=False)
    counted = count_call(lambda: _forward(policy, obs), policy)
    result.update(
        flops=counted.flops,
        flops_by_op=counted.flops_by_op,
        weight_bytes_used=counted.weight_bytes_used,
        weight_bytes_read=counted.weight_bytes_read,
    )
    roof = spec.roofline
    if roof:
        peak = roof["matmul_flops_per_s"]
        if options.bf16 and roof.get("bf16_matmul_flops_per_s"):
            peak = roof["bf16_matmul_flops_per_s"]
        bandwidth = roof["bandwidth_bytes_per_s"]
        result["floor"] = floor_seconds(counted.flops, counted.weight_bytes_used, peak, bandwidth)


def _time(
    spec: EntrySpec,
    policy: Any,
    obs: dict[str, Any],
    probe: Any,
    baseline: int | None,
    result: dict[str, Any],
) -> None:
    """Latency percentiles of `predict_action_chunk` and the inference memory peak."""
    from wam.bench.measure import percentiles, time_calls

    probe.reset()
    times = time_calls(lambda: policy.predict_action_chunk(obs), spec.calls, spec.warmup)
    peak_bytes = probe.peak()
    result["latency"] = percentiles(times)
    if result["floor"]:
        result["floor_ratio"] = result["latency"]["p50_ms"] / 1e3 / result["floor"]["floor_s"]
    result["memory"] = {
        "kind": probe.kind,
        "baseline_bytes": baseline,
        "inference_peak_bytes": peak_bytes,
        "inference_delta_bytes": None if baseline is None else peak_bytes - baseline,
        "train_peak_bytes": None,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m wam.bench.entry SPEC.json OUT.json`: one entry in this process."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m wam.bench.entry SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = EntrySpec(**json.loads(Path(args[0]).read_text()))
    result = run_entry(spec)
    from wam.data.fsio import atomic_write_json

    atomic_write_json(Path(args[1]), result, indent=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
