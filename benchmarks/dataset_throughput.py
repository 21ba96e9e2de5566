"""Random-access throughput of `wam.data.LeRobotDataset`: seeking vs decoded cache vs DataLoader.

Each sample uses a typical Fast-WAM / Light-WAM training window: the camera at t and at four
future steps (t + 8k/fps, k = 0..4), the state at t and an action chunk of 32 steps. Modes:
  seek        video_cache_bytes=0: every query seeks to a key frame and decodes forward (cold)
  cache       whole video files decoded once per process and kept in memory (timed after a warm pass)
  cache-cold  the first pass of the cache mode, which includes decoding every file once
  dataloader  the cache mode through torch DataLoader(num_workers=--workers, persistent workers),
              batches of --batch-size, timed on its second pass (dataloader-cold: the first pass,
              with worker start-up and each worker decoding the files it touches)
Indices are uniform random (fixed seed); medians over --repeats; the load average is recorded
because the machine may be shared. Without --data a synthetic 96x96 dataset is written first
(its writing speed is reported as well).

    PYTHONPATH=src python benchmarks/dataset_throughput.py --episodes 20 --length 200 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wam.data import LeRobotDataset, LeRobotDatasetWriter, vector_feature, video_feature
from wam.data.fsio import atomic_write_json


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="an existing dataset (else one is written)")
    parser.add_argument("--episodes", type=int, default=20, help="synthetic episodes")
    parser.add_argument("--length", type=int, default=200, help="frames per synthetic episode")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--codec", default="av1")
    parser.add_argument("--fps", type=int, default=80)
    parser.add_argument("--samples", type=int, default=300, help="random samples per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dataset_throughput.json"))
    return parser.parse_args()


def synthetic_episode(
    rng: np.random.Generator, length: int, size: int, cameras: int
) -> dict[str, np.ndarray]:
    """A textured scene with a moving square per camera, smooth state and actions."""
    yy, xx = np.mgrid[0:size, 0:size]
    background = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1).astype(np.float32) % 256  # (H, W, 3)
    t = np.linspace(0, 1, length, dtype=np.float32)
    frames: dict[str, np.ndarray] = {}
    for c in range(cameras):
        video = np.repeat(background[None], length, axis=0)  # (T, H, W, 3)
        cx = ((0.2 + 0.6 * t) * size).astype(int)
        cy = ((0.5 + 0.3 * np.sin(6 * t + c)) * size).astype(int) % (size - 12)
        for i in range(length):
            video[i, cy[i] : cy[i] + 12, cx[i] % (size - 12) : cx[i] % (size - 12) + 12] = (
                230,
                40 + 80 * c,
                40,
            )
        noise = rng.normal(0, 4, size=video.shape)
        frames[f"observation.images.cam{c}"] = np.clip(video + noise, 0, 255).astype(np.uint8)
    frames["observation.state"] = np.stack([np.sin(3 * t), np.cos(2 * t), t, 1 - t], axis=1)
    frames["action"] = np.stack([np.cos(3 * t), -np.sin(2 * t), np.ones_like(t), t], axis=1)
    return frames


def write_synthetic(root: Path, args: argparse.Namespace) -> dict[str, float]:
    features = {
        f"observation.images.cam{c}": video_feature(args.image_size, args.image_size)
        for c in range(args.cameras)
    }
    features |= {"observation.state": vector_feature(4), "action": vector_feature(4)}
    writer = LeRobotDatasetWriter.create(
        root, fps=args.fps, features=features, video_codec=args.codec, overwrite=True
    )
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for e in range(args.episodes):
        writer.add_episode(
            synthetic_episode(rng, args.length, args.image_size, args.cameras), task=f"task {e % 4}"
        )
    staged = time.perf_counter()
    writer.finalize()
    done = time.perf_counter()
    frames = args.episodes * args.length
    return {
        "write_frames_per_s": frames / (staged - start),
        "finalize_s": done - staged,
        "size_mb": sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20,
    }


def training_deltas(dataset_root: Path) -> dict[str, list[float]]:
    probe = LeRobotDataset(dataset_root)
    fps = probe.fps
    deltas = {key: [8 * k / fps for k in range(5)] for key in probe.meta.video_keys}
    deltas["action"] = [k / fps for k in range(32)]
    if "observation.state" in probe.features:
        deltas["observation.state"] = [0.0]
    return deltas


def time_pass(dataset: LeRobotDataset, indices: np.ndarray) -> float:
    start = time.perf_counter()
    for i in indices:
        dataset[int(i)]
    return len(indices) / (time.perf_counter() - start)


def time_loader(dataset: LeRobotDataset, args: argparse.Namespace, seed: int) -> tuple[float, float]:
    """Samples/s of a first (cold) and a second (warm) pass of a DataLoader with persistent workers."""
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=args.samples, generator=generator)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        persistent_workers=True,
    )
    rates = []
    for _ in range(2):
        start, seen = time.perf_counter(), 0
        for batch in loader:
            seen += len(batch["index"])
        rates.append(seen / (time.perf_counter() - start))
    del loader  # stops the workers
    return rates[0], rates[1]


def run(args: argparse.Namespace, root: Path) -> dict[str, object]:
    deltas = training_deltas(root)
    rng = np.random.default_rng(0)
    results: dict[str, list[float]] = {
        "seek": [],
        "cache-cold": [],
        "cache": [],
        "dataloader-cold": [],
        "dataloader": [],
    }
    for repeat in range(args.repeats):
        size = len(LeRobotDataset(root))
        indices = rng.integers(0, size, args.samples)
        seek = LeRobotDataset(root, delta_timestamps=deltas, video_cache_bytes=0)
        results["seek"].append(time_pass(seek, indices[: max(args.samples // 3, 20)]))
        cached = LeRobotDataset(root, delta_timestamps=deltas)
        results["cache-cold"].append(time_pass(cached, indices))
        results["cache"].append(time_pass(cached, rng.integers(0, size, args.samples)))
        cold, warm = time_loader(LeRobotDataset(root, delta_timestamps=deltas), args, seed=repeat)
        results["dataloader-cold"].append(cold)
        results["dataloader"].append(warm)
    return {
        "samples_per_s_median": {k: statistics.median(v) for k, v in results.items()},
        "samples_per_s_runs": results,
    }


def print_table(report: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="LeRobotDataset random access (samples/s, median)")
    table.add_column("mode")
    table.add_column("samples/s", justify="right")
    for mode, value in report["samples_per_s_median"].items():
        table.add_row(mode, f"{value:.1f}")
    Console().print(table)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data if args.data else Path(tmp) / "synthetic"
        writing = None if args.data else write_synthetic(root, args)
        probe = LeRobotDataset(root)
        report = {
            "benchmark": "dataset_throughput",
            "dataset": {
                "root": str(args.data) if args.data else "synthetic",
                "episodes": probe.num_episodes,
                "frames": probe.num_frames,
                "cameras": probe.meta.camera_keys,
                "image_shape": [list(probe.features[k]["shape"]) for k in probe.meta.camera_keys],
                "fps": probe.fps,
                "codec": args.codec if args.data is None else "as stored",
            },
            "window": {"video_deltas_frames": [0, 8, 16, 24, 32], "action_chunk": 32},
            "writing": writing,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "samples_per_pass": args.samples,
            "repeats": args.repeats,
            **run(args, root),
            "machine": {
                "cpus": os.cpu_count(),
                "load_avg_1m": os.getloadavg()[0],
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print_table(report)
    if writing:
        print(
            f"writing: {writing['write_frames_per_s']:.0f} frames/s, finalize {writing['finalize_s']:.2f} s, "
            f"{writing['size_mb']:.1f} MiB"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
