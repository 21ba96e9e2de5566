"""Meta-World collection throughput: frames/s end to end, 1 vs 2 workers, fast vs slow rendering.

Each configuration collects the same episodes (scripted expert, seeds from 0) into a fresh
temporary dataset; the time covers everything a user waits for: worker start-up, simulation,
rendering, video encoding and the final consolidation. Configurations are interleaved across
repeats so that load from other processes spreads evenly, and medians are reported.

    PYTHONPATH=src python benchmarks/collect_throughput.py --episodes 6 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from wam.data.fsio import atomic_write_json
from wam.envs.collect import collect_metaworld


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="reach-v3,drawer-close-v3")
    parser.add_argument("--episodes", type=int, default=6, help="episodes per task")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--cameras", default="corner2")
    parser.add_argument("--codec", default="av1")
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def run_once(args: argparse.Namespace, workers: int, fast_render: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = collect_metaworld(
            args.tasks,
            args.episodes,
            args.image_size,
            args.cameras,
            Path(tmp) / "ds",
            workers=workers,
            video_codec=args.codec,
            fast_render=fast_render,
            progress=False,
        )
        wall = time.perf_counter() - start
    return {"wall_s": wall, "frames": summary["new_frames"], "frames_per_s": summary["new_frames"] / wall}


def main() -> None:
    args = parse_args()
    configs = [(int(w), fast) for fast in (True, False) for w in args.workers.split(",")]
    runs: dict[tuple[int, bool], list[dict[str, float]]] = {c: [] for c in configs}
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        for workers, fast in configs:
            runs[(workers, fast)].append(run_once(args, workers, fast))
    rows = []
    for (workers, fast), samples in runs.items():
        rows.append(
            {
                "workers": workers,
                "render": "fast" if fast else "slow",
                "frames": samples[0]["frames"],
                "median_wall_s": statistics.median(s["wall_s"] for s in samples),
                "median_frames_per_s": statistics.median(s["frames_per_s"] for s in samples),
                "frames_per_s": [s["frames_per_s"] for s in samples],
            }
        )
    record = {
        "benchmark": "collect_throughput",
        "tasks": args.tasks,
        "episodes_per_task": args.episodes,
        "image_size": args.image_size,
        "cameras": args.cameras,
        "codec": args.codec,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "platform": platform.platform(),
        "results": rows,
    }
    path = args.out / "collect_throughput.json"
    atomic_write_json(path, record, indent=2)
    print(f"{'workers':>7} {'render':>6} {'frames':>7} {'median s':>9} {'median frames/s':>16}")
    for row in rows:
        print(
            f"{row['workers']:>7} {row['render']:>6} {row['frames']:>7} {row['median_wall_s']:>9.1f} "
            f"{row['median_frames_per_s']:>16.1f}"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
