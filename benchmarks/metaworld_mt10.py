"""Light-WAM on all ten Meta-World MT10 tasks, beside the no-world-model baseline and the scripted expert.

One multi-task policy per preset, trained on the same expert demonstrations (every MT10 task),
evaluated closed-loop on held-out seeds of every task; latency per chunk measured in the same run.
Every stage is cached under --out, so an interrupted run resumes.

    python benchmarks/metaworld_mt10.py [--out bench_mt10] [--episodes 30] [--steps 6000] [--presets ...]
        [--cameras corner2,corner]

Writes benchmarks/results/<--report>.{json,md,png} (default metaworld_mt10) and prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wam.compare import (
    Entry,
    add_benchmark_arguments,
    compare,
    markdown_table,
    with_cameras,
    write_report,
)
from wam.envs.metaworld.tasks import resolve_cameras
from wam.envs.metaworld_tasks import MT10
from wam.pipeline import ensure_codec, ensure_dataset

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_benchmark_arguments(parser, out="bench_mt10", steps=6000)
    parser.add_argument("--presets", default="lightwam-tiny,baseline-tiny", help="Presets (comma list).")
    parser.add_argument("--seed", type=int, default=0, help="Training seed of every policy.")
    parser.add_argument("--report", default="metaworld_mt10", help="Report name in benchmarks/results.")
    args = parser.parse_args()

    start = time.perf_counter()
    out, tasks = Path(args.out), list(MT10)
    cameras = resolve_cameras(args.cameras)
    data = ensure_dataset(
        out / "data", tasks, args.episodes, args.image_size, cameras, args.workers, args.video
    )
    ensure_codec(data, args.codec_steps, args.image_size)
    entries = with_cameras([Entry(name, name) for name in args.presets.split(",")], cameras)
    results = compare(
        entries,
        data,
        out,
        tasks,
        args.eval_episodes,
        args.steps,
        seed=args.seed,
        jobs=args.jobs,
        workers=args.workers,
    )
    results.update(benchmark="metaworld_mt10", total_wall_s=time.perf_counter() - start, args=vars(args))

    title = (
        f"MT10, {args.episodes} demos/task, {args.steps} steps, {args.eval_episodes} held-out episodes/task"
    )
    if (args.image_size, args.video) != (64, "av1"):
        title += f", {args.image_size} px, videos {args.video}"
    if args.seed:
        title += f", training seed {args.seed}"
    if cameras != ["corner2"]:
        title += f", cameras {' + '.join(cameras)}"
    stem = RESULTS / args.report
    write_report(results, stem, title, markdown_table(results), "Meta-World MT10")
    print(f"total {results['total_wall_s'] / 60:.1f} min; wrote {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
