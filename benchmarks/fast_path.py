"""The fast inference path against the plain path, switch by switch, for the tiny presets; writes JSON.

For each preset one policy is built (random weights, identity statistics, a random codec: see
`wam.bench.build`) and copied once per configuration, so every configuration runs the same weights
on the same synthetic observation (B = 1):
    plain            every switch off (`InferenceOptions.plain()`): no_grad, SDPA's math kernel, Fast-WAM
                     re-running the video at every Euler step, eager, torch's default threads
    +threads=1       plain on one thread (CPU only)
    1 thread +<sw>   plain on one thread with one more switch on: inference_mode, sdpa, kv_cache (Fast-WAM),
                     text_cache, compile, bf16. On a CPU shared with other jobs the thread count dominates
                     everything else (two threads contending with other processes are many times slower),
                     so the other switches are measured at one thread to be visible (on CUDA: on plain,
                     with cuda_graphs as one more switch). For Fast-WAM, text_cache, compile and
                     cuda_graphs act on the cached action loop: they are measured with kv_cache on
    default          the library default (`InferenceOptions()`)
    fast             `InferenceOptions.fast(device)`: every switch that helps on this device
    fast-keep-threads  fast with the thread count left alone: what the other switches give together
Each configuration is warmed up (compilation happens there; its seconds are reported), checked
against plain (max |difference| of the actions, same noise seed), then timed in interleaved rounds:
every round times `--calls` calls of each configuration in turn, the order rotated per round, so
that load from other processes falls on all of them alike. Reported: the median (and p10/p90) of
all timed calls, the speedup = median(plain) / median(configuration) and, on a CPU, the speedup
over plain on one thread.

    PYTHONPATH=src python benchmarks/fast_path.py --rounds 6 --calls 10
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wam.bench import build
from wam.bench.roofline import machine_info
from wam.data.fsio import atomic_write_json
from wam.policies.fast_path import InferenceOptions

TARGET_SPEEDUP = 1.5  # issue 6: the fast path at least 1.5x faster than the plain path on a CPU
LOOP_SWITCHES = ("text_cache", "compile", "cuda_graphs")  # Fast-WAM: switches of the cached action loop


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="lightwam-tiny,fastwam-tiny,baseline-tiny")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per configuration per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per configuration first")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def configurations(policy: Any, device: str) -> dict[str, InferenceOptions]:
    """plain, each switch alone, default and fast (see the module docstring)."""
    plain = InferenceOptions.plain()
    fast = InferenceOptions.fast(device)
    switches: dict[str, dict[str, Any]] = {
        "inference_mode": {"inference_mode": True},
        "sdpa": {"attention": "sdpa"},
        "kv_cache": {"kv_cache": True},
        "text_cache": {"text_cache": True},
        "compile": {"compile": True},
        "bf16": {"bf16": True},
    }
    if policy.name != "fastwam":
        del switches["kv_cache"]
    configs = {"plain": plain}
    base, prefix = plain, "+"
    if device == "cpu":  # the thread count swamps everything else on a loaded CPU: hold it at 1
        base, prefix = dataclasses.replace(plain, threads=1), "1 thread +"
        configs["+threads=1"] = base
    else:
        switches["cuda_graphs"] = {"cuda_graphs": True}
    for name, change in switches.items():
        if policy.name == "fastwam" and name in LOOP_SWITCHES:  # they act on the cached action loop
            configs[f"{prefix}kv_cache +{name}"] = dataclasses.replace(base, kv_cache=True, **change)
        else:
            configs[prefix + name] = dataclasses.replace(base, **change)
    configs["default"] = InferenceOptions()
    configs["fast"] = fast
    if fast.threads is not None:
        configs["fast-keep-threads"] = dataclasses.replace(fast, threads=None)
    return configs


def actions(policy: Any, obs: dict[str, Any]) -> np.ndarray:
    torch.manual_seed(0)  # the same Fast-WAM noise for every configuration
    return policy.predict_action_chunk(obs)


def measure_preset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    target = build.resolve_target(name)
    base = build.build_policy(target, device)
    assumed = {**target.assumed, **build.prepare_inputs(base, target, device, "images")}
    obs = build.synthetic_observation(base, 1, "images")
    configs = configurations(base, args.device)
    policies, rows = {}, {}
    reference = actions(base.configure_inference(configs["plain"]), obs)
    for label, options in configs.items():
        policy = copy.deepcopy(base).configure_inference(options)
        start = time.perf_counter()
        for _ in range(args.warmup):
            policy.predict_action_chunk(obs)
        diff = float(np.abs(actions(policy, obs) - reference).max())
        policies[label] = policy
        rows[label] = {
            "options": options.to_dict(),
            "warmup_s": time.perf_counter() - start,
            "max_abs_diff": diff,
        }
        print(f"  {name} {label}: warm-up {rows[label]['warmup_s']:.1f} s, max |diff| vs plain {diff:.2e}")
    times: dict[str, list[float]] = {label: [] for label in configs}
    labels = list(configs)
    for r in range(args.rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            policy = policies[label]
            for _ in range(args.calls):
                start = time.perf_counter()
                policy.predict_action_chunk(obs)
                times[label].append(time.perf_counter() - start)
    plain_ms = float(np.median(times["plain"])) * 1e3
    one_ms = float(np.median(times["+threads=1"])) * 1e3 if "+threads=1" in times else None
    for label, seconds in times.items():
        ms = np.asarray(seconds) * 1e3
        rows[label].update(
            median_ms=float(np.median(ms)),
            p10_ms=float(np.percentile(ms, 10)),
            p90_ms=float(np.percentile(ms, 90)),
            speedup=plain_ms / float(np.median(ms)),
            speedup_vs_plain_1_thread=None if one_ms is None else one_ms / float(np.median(ms)),
        )
    return {
        "params": sum(p.numel() for p in base.parameters()),
        "image_size": base.image_size,
        "assumed": assumed,
        "configs": rows,
        "fast_speedup": rows["fast"]["speedup"],
        "fast_speedup_vs_plain_1_thread": rows["fast"]["speedup_vs_plain_1_thread"],
        "meets_target": rows["fast"]["speedup"] >= TARGET_SPEEDUP,
    }


def print_table(results: dict[str, Any]) -> None:
    labels = list(dict.fromkeys(label for res in results.values() for label in res["configs"]))
    width = 40
    print(f"\n{'config':<32}" + "".join(f"{name:>{width}}" for name in results))
    print(f"{'':<32}" + "".join(f"{'median ms (p10-p90)  x plain  x 1-thr':>{width}}" for _ in results))
    for label in labels:
        cells = []
        for res in results.values():
            row = res["configs"].get(label)
            if row is None:
                cells.append("-")
                continue
            one = row["speedup_vs_plain_1_thread"]
            cells.append(
                f"{row['median_ms']:7.2f} ({row['p10_ms']:.1f}-{row['p90_ms']:.1f}) {row['speedup']:6.2f}x"
                + (f" {one:5.2f}x" if one is not None else "")
            )
        print(f"{label:<32}" + "".join(f"{c:>{width}}" for c in cells))


def main() -> None:
    args = parse_args()
    results = {}
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    for name in args.presets.split(","):
        print(f"{name}:")
        results[name] = measure_preset(name, args)
    print_table(results)
    for name, res in results.items():
        verdict = "meets" if res["meets_target"] else "MISSES"
        same = res["fast_speedup_vs_plain_1_thread"]
        extra = f"; at equal threads (1): {same:.2f}x" if same is not None else ""
        speedup = res["fast_speedup"]
        print(f"{name}: fast / plain = {speedup:.2f}x ({verdict} the {TARGET_SPEEDUP}x target){extra}")
    report = {
        "benchmark": "fast_path",
        "created": started,
        "machine": machine_info(torch.device(args.device)),
        "load_average": os.getloadavg(),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "target_speedup": TARGET_SPEEDUP,
        "results": results,
    }
    out = args.out / f"fast_path_{args.device}.json"
    atomic_write_json(out, report, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
