"""Light-WAM training throughput: the future-video loss on x2-downsampled latents against full resolution.

Light-WAM supervises the future video in a latent space downsampled x2 (4x fewer video tokens);
this measures what that buys in training samples/s. For each image size, two `lightwam-tiny`
policies that differ only in `policy.video_downsample` (2 = the paper's, 1 = full latent
resolution) run full optimiser steps (forward, backward, AdamW) on the same synthetic batches of
cached-latent shape; the steps alternate between the two (ABAB) so machine load hits both alike,
and medians are reported with their ratio.

    python benchmarks/lightwam_video_downsample.py [--sizes 64,128] [--steps 30] [--batch-size 32]

Writes benchmarks/results/lightwam_video_downsample.json and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import numpy as np
import torch

from wam.configs import get_preset
from wam.configs.registry import policy_class
from wam.data.fsio import atomic_write_json
from wam.envs.metaworld_tasks import INSTRUCTIONS, MT10
from wam.training.latent_data import LATENTS_KEY

RESULTS = Path(__file__).parent / "results" / "lightwam_video_downsample.json"


def build(image_size: int, downsample: int) -> torch.nn.Module:
    """lightwam-tiny with Meta-World dims (4-d state and action, the MT10 instructions)."""
    cfg = dataclasses.replace(
        get_preset("lightwam-tiny").policy,
        image_size=image_size,
        action_dim=4,
        state_dim=4,
        tasks=tuple(INSTRUCTIONS[t] for t in MT10),
        video_downsample=downsample,
    )
    torch.manual_seed(0)
    return policy_class(cfg)(cfg, stats=None)


def batch(policy: torch.nn.Module, size: int) -> dict:
    """A synthetic training batch of the shapes `wam train` feeds Light-WAM (cached clip latents)."""
    cfg, wan = policy.config, policy.backbone.cfg
    lat = policy.config.image_size // 8  # compact codec stride 8
    return {
        LATENTS_KEY: torch.randn(size, wan.in_channels, cfg.latent_frames, lat, lat),
        "observation.state": torch.randn(size, 4),
        "action": torch.rand(size, cfg.chunk_size, 4) * 2 - 1,
        "task": [cfg.tasks[i % len(cfg.tasks)] for i in range(size)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128", help="Square image sizes (multiples of 32).")
    parser.add_argument("--steps", type=int, default=30, help="Timed optimiser steps per policy and size.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="Torch CPU threads (training default: 1).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        policies = {ds: build(size, ds) for ds in (2, 1)}
        optims = {
            ds: torch.optim.AdamW([p for p in pol.parameters() if p.requires_grad], lr=1e-4)
            for ds, pol in policies.items()
        }
        data = batch(policies[2], args.batch_size)
        times: dict[int, list[float]] = {2: [], 1: []}
        for step in range(args.steps + 3):  # 3 warm-up steps each
            for ds, policy in policies.items():
                start = time.perf_counter()
                loss, _ = policy(data)
                loss.backward()
                optims[ds].step()
                optims[ds].zero_grad(set_to_none=True)
                if step >= 3:
                    times[ds].append(time.perf_counter() - start)
        tokens = {ds: (size // 8 // ds // 2) ** 2 * policies[2].config.latent_frames for ds in (2, 1)}
        sps = {ds: args.batch_size / float(np.median(t)) for ds, t in times.items()}
        rows.append(
            {
                "image_size": size,
                "video_tokens_downsampled": tokens[2],
                "video_tokens_full": tokens[1],
                "samples_per_s_downsampled": sps[2],
                "samples_per_s_full": sps[1],
                "ratio": sps[2] / sps[1],
            }
        )
    report = {
        "benchmark": "lightwam_video_downsample",
        "preset": "lightwam-tiny",
        "batch_size": args.batch_size,
        "steps": args.steps,
        "threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "rows": rows,
    }
    atomic_write_json(RESULTS, report, indent=2)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lightwam-tiny training: video loss on x2-downsampled vs full-resolution latents")
    for col in ("image", "video tokens x2 / full", "samples/s x2", "samples/s full", "ratio"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['image_size']} px",
            f"{r['video_tokens_downsampled']} / {r['video_tokens_full']}",
            f"{r['samples_per_s_downsampled']:.0f}",
            f"{r['samples_per_s_full']:.0f}",
            f"{r['ratio']:.2f}x",
        )
    Console().print(table)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
