"""Train several presets on the same data and compare them closed-loop: the comparison benchmarks' engine.

Every entry gets the same tasks, demonstrations, step budget, training seed and held-out evaluation
seeds. The stages (see `wam.pipeline`) are cached under the output folder, so an interrupted
benchmark resumes where it stopped:

    train     `jobs` runs at a time in spawned processes, one torch thread each (on a small CPU two
              single-threaded runs finish sooner than one two-threaded run after the other); a
              worker ends when the benchmark process dies, and a run folder takes one training at
              a time (`wam.training.run_dir.training_lock`)
    evaluate  each trained policy closed-loop on held-out seeds (simulator workers in parallel)
    latency   every policy's `predict_action_chunk` on the same real observation, timed round-robin
              (one call of each policy per round) so that machine load hits all of them alike;
              medians are reported
    report    `results.json`, a markdown table and a success-against-latency plot

Used by `benchmarks/metaworld_mt10.py` and `benchmarks/ablation_metaworld.py`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wam.data.fsio import atomic_write, atomic_write_json, atomic_write_text
from wam.data.video import SPEC_HELP
from wam.pipeline import (
    check_settings,
    checkpoint_stamp,
    eval_cached,
    example_observation,
    parameter_count,
    round_robin_latency,
)


@dataclass(frozen=True)
class Entry:
    """One compared policy: a display name, its preset and `--set` style overrides."""

    name: str  # row name in the tables, and the run / evaluation folder name
    preset: str  # the policy preset, e.g. fastwam-tiny-idm
    overrides: tuple[str, ...] = ()  # extra overrides, e.g. ("policy.video_loss=false",)

    def experiment(self, steps: int, seed: int) -> Any:
        from wam.configs import apply_overrides, get_preset

        return apply_overrides(
            get_preset(self.preset), [f"train.steps={steps}", f"train.seed={seed}", *self.overrides]
        )


def add_benchmark_arguments(parser: Any, out: str, steps: int) -> None:
    """The work-folder, data, training and evaluation flags every comparison benchmark takes."""
    parser.add_argument("--out", default=out, help="Work folder (dataset, codec, runs, evaluations).")
    parser.add_argument("--episodes", type=int, default=30, help="Expert demonstrations per task.")
    parser.add_argument("--eval-episodes", type=int, default=20, help="Held-out episodes per task.")
    parser.add_argument("--steps", type=int, default=steps, help="Training steps of every policy.")
    parser.add_argument("--codec-steps", type=int, default=1500)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--cameras",
        "--camera",
        dest="cameras",
        default="corner2",
        help="Cameras recorded and read by every policy (comma list, tiled), e.g. corner2,corner.",
    )
    parser.add_argument("--video", default="av1", help=f"Video encoding of the dataset: {SPEC_HELP}.")
    parser.add_argument("--jobs", type=int, default=2, help="Trainings run at once (one CPU thread each).")
    parser.add_argument("--workers", type=int, default=2, help="Simulator worker processes.")


def with_cameras(entries: list[Entry], cameras: list[str]) -> list[Entry]:
    """`entries`, each reading `cameras` (a benchmark's data has these and no other)."""
    camera_set = f"policy.cameras={','.join(cameras)}"
    return [Entry(e.name, e.preset, (camera_set, *e.overrides)) for e in entries]


def exit_with_parent(poll_s: float = 1.0) -> None:
    """Pool initializer: end this worker once the process that spawned it is gone (killed, out of
    memory). An orphan otherwise trains on, unseen, into a run folder that a restarted benchmark uses."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)  # checkpoints are published by rename: nothing half-written stays behind

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _train_one(entry: Entry, steps: int, seed: int, data_dir: str, run_dir: str) -> tuple[str, str, float]:
    """Worker: train (or reuse) one entry; returns (name, checkpoint, seconds)."""
    from wam.pipeline import train_cached

    start = time.perf_counter()
    ckpt = train_cached(entry.experiment(steps, seed), Path(data_dir), Path(run_dir), progress=False)
    return entry.name, str(ckpt), time.perf_counter() - start


def train_entries(
    entries: list[Entry], data_dir: Path, runs_dir: Path, steps: int, seed: int = 0, jobs: int = 2
) -> dict[str, Path]:
    """Train every entry (`jobs` at a time); returns each entry's last checkpoint."""
    for entry in entries:
        entry.experiment(steps, seed)  # a bad preset or override fails before any training starts
    args = [(e, steps, seed, str(data_dir), str(runs_dir / e.name)) for e in entries]
    done: dict[str, Path] = {}
    if jobs <= 1:
        results = [_train_one(*a) for a in args]
    else:
        context = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=exit_with_parent) as pool:
            futures = [pool.submit(_train_one, *a) for a in args]
            results = []
            for future in futures:
                results.append(future.result())
                name, _, seconds = results[-1]
                print(f"trained {name} in {seconds:.0f} s")
    for name, ckpt, _ in results:
        done[name] = Path(ckpt)
    return done


def _training_seconds(ckpt: Path) -> float | None:
    """The seconds a run spent training (over its resumes), from its checkpoint; None for older runs."""
    state = json.loads((Path(ckpt) / "training_state" / "state.json").read_text())
    return state.get("train_s")


def compare(
    entries: list[Entry],
    data_dir: Path,
    out_dir: Path,
    tasks: list[str],
    eval_episodes: int,
    steps: int,
    *,
    seed: int = 0,
    jobs: int = 2,
    workers: int = 2,
    latency_rounds: int = 30,
    expert: bool = True,
) -> dict[str, Any]:
    """Train, evaluate and time every entry; returns (and writes `out_dir/results.json`) the comparison."""
    from wam.data import LeRobotDataset
    from wam.policies.scripted import ExpertPolicy
    from wam.training.checkpoint import load_policy

    # entries may be added or dropped between runs: each run folder checks its own config
    # (`train_cached` refuses another one) and each evaluation its checkpoint's stamp
    settings = {
        "dataset": str(Path(data_dir).resolve()),
        "dataset_episodes": LeRobotDataset(data_dir).meta.total_episodes,
        "tasks": list(tasks),
        "steps": steps,
        "seed": seed,
    }
    check_settings(out_dir / "compare.json", settings)  # cached runs and evaluations must match
    start = time.perf_counter()
    checkpoints = train_entries(entries, data_dir, out_dir / "runs", steps, seed, jobs)
    train_s = time.perf_counter() - start
    policies = {name: load_policy(ckpt, device="cpu") for name, ckpt in checkpoints.items()}
    rows: dict[str, dict[str, Any]] = {}
    for entry in entries:
        policy, ckpt = policies[entry.name], checkpoints[entry.name]
        stamp = checkpoint_stamp(ckpt)
        ev = eval_cached(
            entry.name, lambda p=policy: p, tasks, eval_episodes, out_dir / "eval", workers, stamp
        )
        rows[entry.name] = {
            "preset": entry.preset,
            "overrides": list(entry.overrides),
            "checkpoint": str(ckpt),
            "params": parameter_count(policy),
            "train_s": _training_seconds(ckpt),
            "mean_success": ev["mean_success"],
            "tasks": {t: ev["tasks"][t]["success_rate"] for t in tasks},
        }
    latency = round_robin_latency(policies, example_observation(data_dir), latency_rounds)
    for name, lat in latency.items():
        rows[name].update(lat)
    if expert:
        ev = eval_cached("expert", ExpertPolicy, tasks, eval_episodes, out_dir / "eval", workers)
        rows["expert"] = {
            "preset": "scripted expert",
            "mean_success": ev["mean_success"],
            "tasks": {t: ev["tasks"][t]["success_rate"] for t in tasks},
        }
    results = {
        "tasks": tasks,
        "eval_episodes": eval_episodes,
        "steps": steps,
        "seed": seed,
        "dataset": str(data_dir),
        "train_wall_s": train_s,  # this invocation's (near 0 when every run was cached); per row: train_s
        "wall_s": time.perf_counter() - start,
        "rows": rows,
    }
    atomic_write_json(out_dir / "results.json", results, indent=2)
    return results


def markdown_table(results: dict[str, Any], per_task: bool = True) -> str:
    """A markdown table: one row per policy, mean success, (per-task success,) latency, parameters."""
    tasks = results["tasks"] if per_task else []
    head = ["policy", "mean success", *tasks, "ms / chunk (p50)", "parameters"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results["rows"].items():
        cells = [name, f"{row['mean_success']:.1%}", *(f"{row['tasks'][t]:.0%}" for t in tasks)]
        cells.append(f"{row['latency_ms_p50']:.1f}" if "latency_ms_p50" in row else "-")
        cells.append(f"{row['params']:,}" if "params" in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def print_table(results: dict[str, Any], title: str) -> None:
    """The markdown table's content as a rich table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    lines = markdown_table(results).splitlines()
    for col in lines[0].strip("| ").split(" | "):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for line in lines[2:]:
        table.add_row(*line.strip("| ").split(" | "))
    Console().print(table)


def plot_success_latency(results: dict[str, Any], path: Path, title: str) -> None:
    """Scatter of mean success against latency per chunk (log scale), one labelled point per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in results["rows"].items():
        if "latency_ms_p50" not in row:
            continue
        ax.scatter(row["latency_ms_p50"], 100 * row["mean_success"], s=40)
        ax.annotate(
            name,
            (row["latency_ms_p50"], 100 * row["mean_success"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency per action chunk, ms (p50, batch 1, 1 CPU thread)")
    ax.set_ylabel("mean success, %")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def write_report(results: dict[str, Any], stem: Path, title: str, markdown: str, plot_title: str) -> None:
    """`results` as stem.json, `markdown` under `title` as stem.md, the plot as stem.png; prints the table."""
    atomic_write_json(stem.with_suffix(".json"), results, indent=2)
    atomic_write_text(stem.with_suffix(".md"), f"# {title}\n\n{markdown}")
    plot_success_latency(results, stem.with_suffix(".png"), plot_title)
    print_table(results, title)
