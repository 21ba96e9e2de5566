"""The memory planner on the paper presets (1, 8 and 64 GPUs), and its validation at tiny scale.

    python benchmarks/planner_presets.py [--out benchmarks/results/planner_presets.json]

Plans (per GPU, bf16 training, GiB):
  - fastwam-libero (Fast-WAM, Wan2.2-5B, the authors' LIBERO recipe: global batch 128 = 16 per GPU
    on 8 GPUs): ddp and fsdp, with and without activation checkpointing, on 1, 8 and 64 GPUs
    (micro-batch 16, the global batch reached by accumulation on fewer GPUs); on 1 GPU also the
    Fast-WAM fine-tuning setups (--lora, with offload) for 48 and 24 GB cards;
  - lightwam-wan2.1-1.3b (Light-WAM, Wan2.1-1.3B): micro-batch 8 on 1, 8 and 64 GPUs, ddp, with and
    without checkpointing, against a 24 GB card.
Validation: predicted vs measured peak of one CPU training step (float32, one process) of the tiny
presets (fastwam-tiny with and without LoRA, lightwam-tiny; with and without checkpointing; micro-batch
8 accumulated 4 times or not at all), measured
as the kernel's resident high-water mark in a child process (`peak_probe.measure_step_peak`).
Writes JSON; prints one line per plan.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from wam.training.peak_probe import measure_step_peak, validation_request
from wam.training.planner import PlanRequest, experiment, plan

RESULTS = Path(__file__).parent / "results"


def requests() -> list[PlanRequest]:
    out = []
    for gpus in (1, 8, 64):
        for strategy in ("ddp", "fsdp"):
            for ckpt in (False, True):
                out.append(PlanRequest("fastwam-libero", gpus, 80, 16, strategy, ckpt))
        out.append(PlanRequest("lightwam-wan2.1-1.3b", gpus, 24, 8, "ddp", False))
        out.append(PlanRequest("lightwam-wan2.1-1.3b", gpus, 24, 8, "ddp", True))
    out += [
        PlanRequest("fastwam-libero", 1, 48, 4, "ddp", True, lora=True),
        PlanRequest("fastwam-libero", 1, 24, 4, "ddp", True, lora=True),
        PlanRequest("fastwam-libero", 1, 24, 4, "fsdp", True, offload=True, lora=True),
        PlanRequest("fastwam-libero", 1, 24, 1, "fsdp", True, offload=True, lora=True),
    ]
    return out


def validation() -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    cases = [
        (preset, lora, ckpt, batch)
        for preset, lora in (("fastwam-tiny", False), ("fastwam-tiny", True), ("lightwam-tiny", False))
        for ckpt in (False, True)
        for batch in (32, 8)  # 4 accumulated micro-batches of 8, or one
    ]
    for preset, lora, ckpt, batch in cases:
        req = validation_request(preset, lora, ckpt, batch)
        planned = plan(req)["peak_bytes"]
        measured = measure_step_peak(experiment(req), 8)["peak"]
        rows.append(
            {
                "preset": preset,
                "lora": lora,
                "checkpointing": ckpt,
                "accumulation": batch // 8,
                "planned_mib": round(planned / 2**20, 3),
                "measured_mib": round(measured / 2**20, 3),
                "error": round(planned / measured - 1, 4),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "planner_presets.json")
    args = parser.parse_args()
    t0 = time.time()
    plans = []
    for req in requests():
        result = plan(req)
        plans.append(result)
        flags = "+".join(
            [req.strategy] + [k for k in ("checkpointing", "offload", "lora") if getattr(req, k)]
        )
        print(
            f"{req.preset:<22} {req.gpus:>2} GPU x {req.gpu_mem_gib:g} GB  micro {result['micro_batch']:>2}  "
            f"{flags:<28} peak {result['peak_gib']:7.2f} GB  {'fits' if result['fits'] else 'no'}"
        )
    rows = validation()
    for row in rows:
        print(f"validation {row}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"plans": plans, "validation": rows, "seconds": round(time.time() - t0, 1)}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
