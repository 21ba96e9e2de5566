"""The measured peak memory of one CPU training step, to validate the planner against.

`measure_step_peak(cfg, micro_batch)` runs the step in a fresh Python process in which glibc's
malloc serves every allocation of a page or more with its own mmap and returns freed memory at
once (MALLOC_MMAP_THRESHOLD_=4096, MALLOC_TRIM_THRESHOLD_=0). The kernel's resident-set
high-water mark (VmHWM, reset by writing 5 to /proc/self/clear_refs) then follows the live tensor
bytes to within page rounding. This is independent of PyTorch's own accounting; the profiler's
per-op memory, used before, over-counted steps with activation checkpointing by up to 2x.

Method: a real policy and AdamW, one thread, float32. Two steps first (AdamW allocates its moments,
lazy caches fill), then the step that is measured: forward and backward of each micro-batch (the
recipe's global batch over `micro_batch` of them, one process, as the loop accumulates), AdamW,
zero_grad. `before`
is what is allocated when the step starts (weights, buffers, AdamW moments, the batch), counted
from the tensors' storages; `step_peak` is VmHWM during the step minus the resident set before it.
Linux only (it reads /proc); elsewhere it raises RuntimeError.

    python -m wam.training.peak_probe < request.json   (the child side: {"config", "micro_batch", "seed"})
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

PROC_STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0", "OMP_NUM_THREADS": "1"}


def validation_request(
    preset: str, lora: bool, checkpointing: bool, global_batch: int, micro_batch: int = 8
) -> Any:
    """The plan the CPU validation measures: one process, ddp, float32, `micro_batch` samples per
    forward accumulated to `global_batch`."""
    from wam.training.planner import PlanRequest

    return PlanRequest(
        preset,
        micro_batch=micro_batch,
        strategy="ddp",
        precision="fp32",
        checkpointing=checkpointing,
        lora=lora,
        overrides=(f"train.batch_size={global_batch}",),
    )


def measure_step_peak(cfg: Any, micro_batch: int, seed: int = 0, timeout_s: float = 600.0) -> dict[str, int]:
    """Measured bytes of one float32 CPU training step of `cfg`: {"before", "step_peak", "peak"}."""
    from wam.configs.serialize import to_dict

    if not (os.path.exists(PROC_STATUS) and os.access(CLEAR_REFS, os.W_OK)):
        raise RuntimeError("Measuring a step's peak needs Linux's /proc/self/clear_refs (writable).")
    request = json.dumps({"config": to_dict(cfg), "micro_batch": micro_batch, "seed": seed})
    proc = subprocess.run(
        [sys.executable, "-m", "wam.training.peak_probe"],
        input=request,
        capture_output=True,
        text=True,
        env={**os.environ, **MALLOC_ENV},
        timeout=timeout_s,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"The memory probe failed (exit {proc.returncode}): {tail}")
    return {k: int(v) for k, v in json.loads(lines[-1]).items()}


def _status_bytes(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open(PROC_STATUS) as handle:
        match = re.search(rf"^{field}:\s+(\d+) kB", handle.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{PROC_STATUS} has no {field} line.")
    return int(match.group(1)) * 1024


def _probe(config: dict[str, Any], micro_batch: int, seed: int) -> dict[str, int]:
    import gc

    import torch

    from wam.bench.build import synthetic_batch
    from wam.configs.registry import policy_class
    from wam.configs.serialize import experiment_from_dict
    from wam.training.optim import build_optimizer
    from wam.training.planner import accumulation_of

    torch.set_num_threads(1)
    cfg = experiment_from_dict(config)
    torch.manual_seed(seed)
    policy = policy_class(cfg.policy)(cfg.policy, stats=None).train()
    optimizer = build_optimizer(policy, cfg.train)
    batch = synthetic_batch(policy, micro_batch, torch.device("cpu"), seed)

    accumulation = accumulation_of(cfg, micro_batch)  # one process

    def step() -> None:
        for _ in range(accumulation):  # the loop's accumulation: gradients of earlier micro-batches stay
            loss, _ = policy(batch)
            (loss / accumulation).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    step()
    tensors = [*policy.parameters(), *policy.buffers(), *(v for v in batch.values() if torch.is_tensor(v))]
    tensors += [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    before = sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())
    gc.collect()
    resident = _status_bytes("VmRSS")
    with open(CLEAR_REFS, "w") as handle:
        handle.write("5")  # VmHWM := VmRSS
    step()
    step_peak = max(_status_bytes("VmHWM") - resident, 0)
    return {"before": before, "step_peak": step_peak, "peak": before + step_peak}


if __name__ == "__main__":
    req = json.loads(sys.stdin.read())
    print(json.dumps(_probe(req["config"], int(req["micro_batch"]), int(req["seed"]))))
