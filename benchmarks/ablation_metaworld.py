"""The Fast-WAM paper's ablation, reproduced small on Meta-World.

Every Fast-WAM variant (`fastwam`: video co-training, no imagined future at test time; `joint`:
video and actions denoised together; `idm`: future video first, then actions from it; `no-video`:
trained without the video loss), Light-WAM and the no-world-model baseline are trained on the same
tasks, demonstrations, step budget and seed (the tiny CPU presets), evaluated closed-loop on the
same held-out seeds, and timed per action chunk in the same run (round-robin, medians).
Every stage is cached under --out, so an interrupted run resumes.

    python benchmarks/ablation_metaworld.py [--out bench_ablation] [--steps 3000] [--data DATASET]

Writes benchmarks/results/ablation_metaworld.{json,md,png} and prints a table.
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
    write_report,
)
from wam.pipeline import ensure_codec, ensure_dataset

RESULTS = Path(__file__).parent / "results"
TASKS = ("reach-v3", "drawer-close-v3", "button-press-topdown-v3")  # the quickstart's tasks
ENTRIES = (
    Entry("fastwam", "fastwam-tiny"),
    Entry("fastwam-joint", "fastwam-tiny-joint"),
    Entry("fastwam-idm", "fastwam-tiny-idm"),
    Entry("fastwam-no-video", "fastwam-tiny-novideo"),
    Entry("lightwam", "lightwam-tiny"),
    Entry("baseline", "baseline-tiny"),
)
WHAT = {
    "fastwam": "video co-training; test time: one video pass on the current frame, no future",
    "fastwam-joint": "video and actions denoised jointly at test time",
    "fastwam-idm": "future video generated first, then actions conditioned on it",
    "fastwam-no-video": "trained without the video loss",
    "lightwam": "LoRA backbone + state-fusion head, downsampled video loss, one pass",
    "baseline": "no world model (image encoder + action head)",
    "expert": "Meta-World scripted expert (privileged state)",
}


def paper_table(results: dict) -> str:
    """The ablation as the paper tabulates it: variant, what changes, success, latency and its ratio."""
    rows = results["rows"]
    ref = rows["fastwam"]["latency_ms_p50"]
    lines = [
        "| variant | what changes | mean success | ms / chunk (p50) | latency vs fastwam |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lat = row.get("latency_ms_p50")
        lat_s, ratio = (f"{lat:.1f}", f"{lat / ref:.2f}x") if lat else ("-", "-")
        lines.append(f"| {name} | {WHAT.get(name, '')} | {row['mean_success']:.1%} | {lat_s} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_benchmark_arguments(parser, out="bench_ablation", steps=3000)
    parser.add_argument("--data", default=None, help="Reuse this dataset (e.g. a quickstart's DIR/data).")
    parser.add_argument("--tasks", default=",".join(TASKS), help="Meta-World tasks (comma list).")
    args = parser.parse_args()

    start = time.perf_counter()
    out, tasks = Path(args.out), args.tasks.split(",")
    if args.data:
        data = Path(args.data)
    else:
        data = ensure_dataset(
            out / "data", tasks, args.episodes, args.image_size, [args.camera], args.workers
        )
    ensure_codec(data, args.codec_steps, args.image_size)
    results = compare(
        list(ENTRIES), data, out, tasks, args.eval_episodes, args.steps, jobs=args.jobs, workers=args.workers
    )
    results.update(benchmark="ablation_metaworld", total_wall_s=time.perf_counter() - start, args=vars(args))

    title = (
        f"Ablation on Meta-World ({', '.join(tasks)}), {args.steps} steps, {args.eval_episodes} episodes/task"
    )
    markdown = paper_table(results) + "\n## Per task\n\n" + markdown_table(results)
    write_report(results, RESULTS / "ablation_metaworld", title, markdown, "Fast-WAM ablation on Meta-World")
    print(f"total {results['total_wall_s'] / 60:.1f} min; wrote {RESULTS / 'ablation_metaworld.json'}")


if __name__ == "__main__":
    main()
