"""Latent-codec throughput on this machine: the compact codec against the full-size Wan VAEs.

For each codec it measures the encode time of one clip of `--frames` frames at `--size`x`--size`
(batch 1 and batch `--batch`), and for the compact codec also one training step (batch `--batch`,
5 frames). The Wan VAEs are built at their released size with random weights: the time does not
depend on the weight values, so no checkpoint is needed. Medians of `--repeats` runs after one
warm-up; the load average is recorded because the machine may be shared.

    PYTHONPATH=src python benchmarks/codec_throughput.py --size 96 --frames 9 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from wam.data.fsio import atomic_write_json
from wam.models.codecs import CompactCodec, WanVAECodec
from wam.models.codecs.wan import preset_diffusers_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="square frame size (multiple of 16)")
    parser.add_argument("--frames", type=int, default=9, help="frames per clip (1 + 4k)")
    parser.add_argument("--batch", type=int, default=8, help="clips per batched call / training step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--codecs", default="compact,wan2.1-vae,wan2.2-vae")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def median_seconds(fn: Callable[[], object], repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(name: str, device: str) -> torch.nn.Module:
    if name == "compact":
        return CompactCodec().to(device).eval()
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return WanVAECodec(AutoencoderKLWan(**preset_diffusers_config(name)).to(device))


def train_step_seconds(args: argparse.Namespace) -> float:
    codec = CompactCodec().to(args.device).train()
    opt = torch.optim.AdamW(codec.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 3, 5, args.size, args.size, device=args.device) * 2 - 1  # (B, 3, T, H, W)

    def step() -> None:
        recon, _ = codec(x)
        loss = (recon - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return median_seconds(step, args.repeats, args.device)


def measure(name: str, args: argparse.Namespace) -> dict[str, float]:
    codec = build(name, args.device)
    clip = torch.rand(1, args.frames, 3, args.size, args.size)
    batch = torch.rand(args.batch, args.frames, 3, args.size, args.size)
    one = median_seconds(lambda: codec.encode(clip), args.repeats, args.device)
    many = median_seconds(lambda: codec.encode(batch), args.repeats, args.device)
    row = {
        "parameters_m": sum(p.numel() for p in codec.parameters()) / 1e6,
        "latent_shape": list(codec.latent_shape(args.frames, args.size, args.size)),
        "encode_clip_ms": one * 1e3,
        "encode_batch_clips_per_s": args.batch / many,
    }
    if name == "compact":
        row["train_step_s"] = train_step_seconds(args)
    return row


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()
    results = {}
    for name in args.codecs.split(","):
        results[name] = measure(name, args)
        print(name, json.dumps(results[name]))
    report = {
        "benchmark": "codec_throughput",
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "size": args.size,
        "frames": args.frames,
        "batch": args.batch,
        "repeats": args.repeats,
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "results": results,
    }
    path = args.out / f"codec_throughput_{args.device}.json"
    atomic_write_json(path, report, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
