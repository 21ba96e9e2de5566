"""The Fast-WAM paper's ablation, reproduced small on Meta-World.

Every Fast-WAM variant (`fastwam`: video co-training, no imagined future at test time; `joint`:
video and actions denoised together; `idm`: future video first, then actions from it; `no-video`:
trained without the video loss), Light-WAM and the no-world-model baseline are trained on the same
tasks, demonstrations, step budget and seed (the tiny CPU presets), evaluated closed-loop on the
same held-out seeds, and timed per action chunk in the same run (round-robin, medians).
The whole comparison is repeated for every training seed of --seeds (the demonstrations, the codec
and the held-out evaluation seeds stay the same), so that a variant's spread over training seeds
tells a real difference from noise. Every stage is cached under --out (one folder per seed), so
an interrupted run resumes.

    python benchmarks/ablation_metaworld.py [--out bench_ablation] [--steps 3000] [--seeds 0,1,2]

Writes benchmarks/results/ablation_metaworld.{json,md,png} and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from wam.compare import (
    Entry,
    add_benchmark_arguments,
    compare,
    markdown_table,
    print_table,
    with_cameras,
)
from wam.data.fsio import atomic_write, atomic_write_json, atomic_write_text
from wam.envs.metaworld.tasks import resolve_cameras
from wam.pipeline import ensure_codec, ensure_dataset

RESULTS = Path(__file__).parent / "results"
TASKS = ("reach-v3", "drawer-close-v3", "button-press-topdown-v3")  # the quickstart's tasks
ENTRIES = (
    Entry("fastwam", "fastwam-tiny"),
    Entry("fastwam-joint", "fastwam-tiny-joint"),
    Entry("fastwam-idm", "fastwam-tiny-idm"),
    Entry("fastwam-no-video", "fastwam-tiny-novideo"),
    Entry("lightwam", "lightwam-tiny"),
    Entry("lightwam-frozen", "lightwam-tiny", ("policy.train_backbone=false",)),
    Entry("baseline", "baseline-tiny"),
)
WHAT = {
    "fastwam": "video co-training; test time: one video pass on the current frame, no future",
    "fastwam-joint": "video and actions denoised jointly at test time",
    "fastwam-idm": "future video generated first, then actions conditioned on it",
    "fastwam-no-video": "trained without the video loss",
    "lightwam": "LoRA backbone + state-fusion head, downsampled video loss, one pass",
    "lightwam-frozen": "lightwam with the tiny backbone frozen at its random init (LoRA only)",
    "baseline": "no world model (image encoder + action head)",
    "expert": "Meta-World scripted expert (privileged state)",
}


def seed_summary(per_seed: dict[int, dict]) -> dict[str, dict]:
    """Per variant: success of every training seed, their mean, standard deviation and range.

    The expert is evaluated once (it is not trained), so its row has one entry.
    """
    names = list(next(iter(per_seed.values()))["rows"])
    summary: dict[str, dict] = {}
    for name in names:
        rows = {seed: res["rows"][name] for seed, res in per_seed.items() if name in res["rows"]}
        success = [row["mean_success"] for row in rows.values()]
        latency = [row["latency_ms_p50"] for row in rows.values() if "latency_ms_p50" in row]
        tasks = next(iter(rows.values()))["tasks"]
        summary[name] = {
            "success_per_seed": {str(seed): row["mean_success"] for seed, row in rows.items()},
            "mean_success": statistics.fmean(success),
            "std_success": statistics.stdev(success) if len(success) > 1 else 0.0,
            "min_success": min(success),
            "max_success": max(success),
            "tasks": {t: statistics.fmean(row["tasks"][t] for row in rows.values()) for t in tasks},
            **({"latency_ms_p50": statistics.median(latency)} if latency else {}),
        }
    return summary


def paper_table(summary: dict[str, dict]) -> str:
    """The ablation as the paper tabulates it, with the success of every training seed and its spread."""
    ref = summary["fastwam"]["latency_ms_p50"]
    lines = [
        "| variant | what changes | success per seed | mean ± sd | ms / chunk (p50) | latency vs fastwam |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        lat = row.get("latency_ms_p50")
        lat_s, ratio = (f"{lat:.1f}", f"{lat / ref:.2f}x") if lat else ("-", "-")
        per_seed = " / ".join(f"{v:.1%}" for v in row["success_per_seed"].values())
        spread = f"{row['mean_success']:.1%} ± {row['std_success']:.1%}"
        lines.append(f"| {name} | {WHAT.get(name, '')} | {per_seed} | {spread} | {lat_s} | {ratio} |")
    return "\n".join(lines) + "\n"


def plot_seeds(summary: dict[str, dict], path: Path, title: str) -> None:
    """Success per variant: one dot per training seed and the mean as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(names):
        row = summary[name]
        ax.bar(i, 100 * row["mean_success"], color="#cfd8e3", edgecolor="#4a5a6a")
        ys = [100 * v for v in row["success_per_seed"].values()]
        ax.scatter([i] * len(ys), ys, color="#1f4e79", zorder=3, s=18)
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("mean success, % (dots: training seeds)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_benchmark_arguments(parser, out="bench_ablation", steps=3000)
    parser.add_argument("--data", default=None, help="Reuse this dataset (e.g. a quickstart's DIR/data).")
    parser.add_argument("--tasks", default=",".join(TASKS), help="Meta-World tasks (comma list).")
    parser.add_argument("--seeds", default="0,1,2", help="Training seeds (comma list); one comparison each.")
    args = parser.parse_args()

    start = time.perf_counter()
    out, tasks = Path(args.out), args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    cameras = resolve_cameras(args.cameras)
    if args.data:
        data = Path(args.data)
    else:
        data = ensure_dataset(
            out / "data", tasks, args.episodes, args.image_size, cameras, args.workers, args.video
        )
    ensure_codec(data, args.codec_steps, args.image_size)
    per_seed = {}
    for seed in seeds:
        per_seed[seed] = compare(
            with_cameras(list(ENTRIES), cameras),
            data,
            out / f"seed_{seed}",
            tasks,
            args.eval_episodes,
            args.steps,
            seed=seed,
            jobs=args.jobs,
            workers=args.workers,
            expert=seed == seeds[0],  # the expert is not trained: one evaluation is enough
        )
        print(f"seed {seed} done ({(time.perf_counter() - start) / 60:.1f} min)")
    summary = seed_summary(per_seed)
    results = {
        "benchmark": "ablation_metaworld",
        "tasks": tasks,
        "eval_episodes": args.eval_episodes,
        "steps": args.steps,
        "seeds": seeds,
        "rows": summary,
        "per_seed": {str(seed): res for seed, res in per_seed.items()},
        "total_wall_s": time.perf_counter() - start,
        "args": vars(args),
    }
    title = (
        f"Ablation on Meta-World ({', '.join(tasks)}), {args.steps} steps, {len(seeds)} training seeds, "
        f"{args.eval_episodes} episodes/task"
    )
    markdown = paper_table(summary) + "\n## Per task (mean over seeds)\n\n" + markdown_table(results)
    stem = RESULTS / "ablation_metaworld"
    atomic_write_json(stem.with_suffix(".json"), results, indent=2)
    atomic_write_text(stem.with_suffix(".md"), f"# {title}\n\n{markdown}")
    plot_seeds(summary, stem.with_suffix(".png"), f"Meta-World ablation, {len(seeds)} training seeds")
    print_table(results, title)
    print(f"total {results['total_wall_s'] / 60:.1f} min; wrote {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
