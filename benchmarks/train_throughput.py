"""Training throughput of the tiny presets: samples/s and how much of a step waits for data.

Each configuration (preset x data-loading workers x torch threads) runs the real training loop
(`wam.training.loop.train`, log every step, no evaluation) on the same dataset; the first
`--warmup` steps of each run are dropped and the steps of all repeats are pooled:
    samples_per_s     median of batch_size / wall time of a step (data wait included), with quartiles
    step_ms           batch_size / that median
    data_wait_frac    median fraction of a step spent waiting for the next batch from the DataLoader
Configurations are interleaved across repeats so that load from other processes spreads evenly.
Without `--data` a synthetic dataset shaped like a Meta-World collection (one camera at the
preset's image size, or `--image-size` for presets that take the dataset's; 4-d state and
action; 80 fps) is written first.

    PYTHONPATH=src python benchmarks/train_throughput.py --steps 40 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wam.configs import apply_overrides, get_preset, preset_names
from wam.data.fsio import atomic_write_json
from wam.training.loop import train


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tiny = ",".join(n for n in preset_names("policy") if n.endswith("-tiny"))
    parser.add_argument("--presets", default=tiny, help="comma list of policy presets")
    parser.add_argument("--data", type=Path, default=None, help="a LeRobot dataset (default: synthetic)")
    parser.add_argument("--image-size", type=int, default=96, help="synthetic dataset image size")
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps dropped from the medians")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", default="0,1,2", help="comma list of DataLoader worker counts")
    parser.add_argument("--threads", default="1,2", help="comma list of torch intra-op thread counts")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def synthetic_dataset(root: Path, image_size: int, episodes: int = 8, frames: int = 80) -> Path:
    """Meta-World-shaped episodes: moving blobs in the image, smooth state and actions."""
    from wam.data import LeRobotDatasetWriter, vector_feature, video_feature

    features = {
        "observation.images.corner2": video_feature(image_size, image_size),
        "observation.state": vector_feature(4),
        "action": vector_feature(4),
    }
    writer = LeRobotDatasetWriter.create(root, fps=80, features=features, robot_type="sawyer")
    rng = np.random.default_rng(0)
    grid = np.arange(image_size)
    for ep in range(episodes):
        t = np.linspace(0, 1, frames)[:, None]  # (T, 1)
        state = np.concatenate([np.sin(t + ep), np.cos(t), t, 0 * t], 1).astype(np.float32)  # (T, 4)
        action = np.clip(np.diff(state, axis=0, append=state[-1:]) * 50, -1, 1).astype(np.float32)  # (T, 4)
        cx = (0.2 + 0.6 * t[:, 0]) * image_size  # (T,)
        blob = np.exp(
            -((grid[None, :, None] - cx[:, None, None]) ** 2 + (grid[None, None, :] - image_size / 2) ** 2)
            / 50
        )
        images = (200 * blob[..., None] + rng.integers(0, 30, (frames, image_size, image_size, 3))).astype(
            np.uint8
        )
        writer.add_episode(
            {"observation.images.corner2": images, "observation.state": state, "action": action},
            task="reach the goal position",
        )
    writer.finalize()
    return root


def run_once(preset: str, data: Path, args: argparse.Namespace, workers: int, threads: int) -> list[dict]:
    """The per-step log records of one short training run, warmup steps dropped."""
    overrides = [
        f"train.cpu_threads={threads}",
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"train.num_workers={workers}",
        "train.log_every=1",
        f"train.save_every={args.steps}",
        "train.plot=false",
        "train.eval_every=0",
    ]
    cfg = apply_overrides(get_preset(preset), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, data, Path(tmp) / "run", progress=False)
        records = [json.loads(line) for line in (Path(tmp) / "run/log.jsonl").read_text().splitlines()]
    return records[args.warmup :]


def summarize(steps: list[dict], batch_size: int) -> dict[str, float]:
    """Medians (and quartiles of the throughput) over the steps of all repeats of a configuration."""
    rates = sorted(r["samples_per_s"] for r in steps)
    q1, median, q3 = statistics.quantiles(rates, n=4) if len(rates) > 1 else (rates[0],) * 3
    return {
        "samples_per_s": median,
        "samples_per_s_q1": q1,
        "samples_per_s_q3": q3,
        "step_ms": 1000 * batch_size / median,
        "data_wait_frac": statistics.median(r["data_time_frac"] for r in steps),
        "steps_measured": len(steps),
    }


def _first_camera_size(root: Path) -> int:
    from wam.data import DatasetMeta

    meta = DatasetMeta(root)
    return int(meta.features[meta.camera_keys[0]]["shape"][0])


def dataset_for(preset: str, args: argparse.Namespace, tmp: Path, made: dict[int, Path]) -> Path:
    """--data, or a synthetic dataset at the preset's image size (the dataset's when it takes any)."""
    if args.data is not None:
        return args.data
    size = get_preset(preset).policy.image_size or args.image_size
    if size not in made:
        made[size] = synthetic_dataset(tmp / f"data{size}", size)
    return made[size]


def measure(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    configs = [
        (p, int(w), int(t))
        for p in args.presets.split(",")
        for w in args.workers.split(",")
        for t in args.threads.split(",")
    ]
    runs: dict[tuple[str, int, int], list[dict]] = {c: [] for c in configs}
    errors: dict[str, str] = {}
    made: dict[int, Path] = {}
    for _ in range(args.repeats):
        for preset, workers, threads in configs:
            if preset in errors:
                continue
            try:
                data = dataset_for(preset, args, tmp, made)
                runs[(preset, workers, threads)].extend(run_once(preset, data, args, workers, threads))
            except (ValueError, FileNotFoundError, NotImplementedError) as err:  # e.g. needs other data
                errors[preset] = str(err)
    rows = []
    for (preset, workers, threads), results in runs.items():
        if preset in errors:
            continue
        row: dict[str, Any] = {"preset": preset, "num_workers": workers, "threads": threads}
        row["image_size"] = get_preset(preset).policy.image_size or _first_camera_size(
            dataset_for(preset, args, tmp, made)
        )
        rows.append({**row, **summarize(results, args.batch_size)})
    rows.extend({"preset": p, "skipped": e} for p, e in errors.items())
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="training throughput (medians)")
    for column in ("preset", "workers", "threads", "samples/s", "(q1-q3)", "step ms", "data wait"):
        table.add_column(column, justify="left" if column == "preset" else "right")
    for row in rows:
        if "skipped" in row:
            continue
        table.add_row(
            row["preset"],
            str(row["num_workers"]),
            str(row["threads"]),
            f"{row['samples_per_s']:.0f}",
            f"{row['samples_per_s_q1']:.0f}-{row['samples_per_s_q3']:.0f}",
            f"{row['step_ms']:.0f}",
            f"{100 * row['data_wait_frac']:.0f}%",
        )
    console = Console()
    console.print(table)
    for row in rows:
        if "skipped" in row:
            console.print(f"{row['preset']} skipped: {row['skipped']}")


def main() -> None:
    args = parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        rows = measure(args, Path(tmp))
        wall = time.perf_counter() - start
    result = {
        "benchmark": "train_throughput",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "settings": {
            "data": str(args.data) if args.data else "synthetic: 8 episodes x 80 frames, one camera",
            "steps": args.steps,
            "warmup": args.warmup,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
        },
        "results": rows,
        "wall_s": wall,
    }
    path = args.out / "train_throughput.json"
    atomic_write_json(path, result, indent=2)
    print_table(rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
