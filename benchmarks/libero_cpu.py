"""World Action Models trained and evaluated on LIBERO on a CPU, from scripted-expert demonstrations.

On a few tasks of one suite: collect demonstrations with the scripted experts (`wam collect
libero`: sampled initial states, never the evaluation's fixed ones), train `lightwam-tiny` (and
its ablation with the tiny backbone frozen), `fastwam-tiny` and `baseline-tiny` on them (same
data, steps and seed), and evaluate each closed-loop with the authors' protocol (the tasks' fixed
init states in order, 30 wait steps, horizon 400) beside the expert itself; latency per chunk is
timed round-robin in the same run.
The dataset stores LIBERO's own gripper convention (-1 open, +1 close, as the LeRobot LIBERO
datasets), so the trained policies are evaluated with `--gripper binarize`; the expert emits
the authors' convention and runs under the default.

Every stage is cached under --out (the dataset resumes, finished runs and evaluations are
reused), so an interrupted run continues where it stopped:

    python benchmarks/libero_cpu.py [--suite libero_object] [--tasks 0,1,2] [--episodes 30]
        [--steps 4000] [--eval-episodes 10] [--out bench_libero_cpu]

Writes benchmarks/results/libero_cpu.{json,md,png}, rollout videos under --out/eval/<policy>/videos,
and prints a table (success per task, latency, parameters, training time).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from wam.compare import Entry, markdown_table, train_entries, write_report
from wam.data.fsio import read_json
from wam.pipeline import check_settings, checkpoint_stamp, ensure_codec, eval_cached, example_observation

RESULTS = Path(__file__).parent / "results"
CAMERAS = "image,wrist_image"


def entries() -> list[Entry]:
    cams = (f"policy.cameras={CAMERAS}",)
    return [
        Entry("lightwam-tiny", "lightwam-tiny", cams),
        # the tiny backbone frozen at its random init, as the preset was before train_backbone
        Entry("lightwam-tiny-frozen", "lightwam-tiny", (*cams, "policy.train_backbone=false")),
        Entry("fastwam-tiny", "fastwam-tiny", cams),
        Entry("baseline-tiny", "baseline-tiny", cams),
    ]


def ensure_libero_dataset(out: Path, args: argparse.Namespace) -> Path:
    """`args.episodes` expert demonstrations per task (resuming a partial collection)."""
    from wam.envs.libero.collect import collect_libero

    collect_libero(
        args.suite,
        out,
        tasks=args.tasks,
        episodes_per_task=args.episodes,
        image_size=args.image_size,
        gripper="native",
        resume=out.exists(),
        workers=args.workers,
    )
    return out


def eval_libero_cached(
    name: str, policy: Any, args: argparse.Namespace, out_dir: Path, gripper: str, stamp: str = ""
) -> dict[str, Any]:
    """Evaluate `policy` with the authors' protocol into `out_dir/name`, unless it is on disk; another
    --eval-episodes of the same checkpoint resumes (`pipeline.eval_cached`)."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    return eval_cached(
        name,
        lambda: policy,
        tasks,
        args.eval_episodes,
        out_dir,
        workers=args.workers,
        stamp=stamp,
        env="libero",
        suites=args.suite,
        protocol="authors",
        gripper=gripper,
        videos_per_task=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_libero_cpu", help="Work folder (dataset, runs, evaluations).")
    parser.add_argument("--suite", default="libero_object")
    parser.add_argument("--tasks", default="0,1,2", help="Task indices or names within --suite.")
    parser.add_argument("--episodes", type=int, default=30, help="Expert demonstrations per task.")
    parser.add_argument("--eval-episodes", type=int, default=10, help="Fixed init states per task (<= 50).")
    parser.add_argument("--steps", type=int, default=4000, help="Training steps of every policy.")
    parser.add_argument("--codec-steps", type=int, default=1500)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2, help="Trainings run at once (one CPU thread each).")
    parser.add_argument("--workers", type=int, default=2, help="Simulator worker processes.")
    parser.add_argument("--skip-train", action="store_true", help="Collect and evaluate the expert only.")
    args = parser.parse_args()

    from wam.envs.libero.benchmark import LiberoBenchmark
    from wam.envs.libero.protocol import get_protocol
    from wam.pipeline import parameter_count, round_robin_latency
    from wam.policies.scripted import ExpertPolicy
    from wam.training.checkpoint import load_policy

    start = time.perf_counter()
    out = Path(args.out)
    tasks = LiberoBenchmark(get_protocol("authors")).resolve_tasks(args.tasks, args.suite)
    chosen = [] if args.skip_train else entries()
    settings = {"suite": args.suite, "tasks": tasks, "episodes": args.episodes, "image_size": args.image_size}
    check_settings(out / "settings.json", settings)  # cached stages must come from the same settings
    data = ensure_libero_dataset(out / "data", args)
    rows: dict[str, dict[str, Any]] = {}
    if chosen:
        ensure_codec(data, args.codec_steps, args.image_size)
        checkpoints = train_entries(chosen, data, out / "runs", args.steps, 0, args.jobs)
        policies = {name: load_policy(ckpt, device="cpu") for name, ckpt in checkpoints.items()}
        for entry in chosen:
            policy, ckpt = policies[entry.name], checkpoints[entry.name]
            ev = eval_libero_cached(
                entry.name, policy, args, out / "eval", "binarize", checkpoint_stamp(ckpt)
            )
            state = read_json(Path(ckpt) / "training_state" / "state.json")
            rows[entry.name] = {
                "preset": entry.preset,
                "checkpoint": str(ckpt),
                "params": parameter_count(policy),
                "train_s": state.get("train_s"),
                "mean_success": ev["mean_success"],
                "tasks": {t: ev["tasks"][t]["success_rate"] for t in tasks},
            }
        for name, lat in round_robin_latency(policies, example_observation(data)).items():
            rows[name].update(lat)
    expert = ExpertPolicy()
    expert.action_dim = 7
    ev = eval_libero_cached("expert", expert, args, out / "eval", "authors")
    rows["expert"] = {
        "preset": "scripted expert",
        "mean_success": ev["mean_success"],
        "tasks": {t: ev["tasks"][t]["success_rate"] for t in tasks},
    }
    results = {
        "benchmark": "libero_cpu",
        "tasks": tasks,
        "eval_episodes": args.eval_episodes,
        "steps": args.steps,
        "dataset": str(data),
        "total_wall_s": time.perf_counter() - start,
        "args": vars(args),
        "rows": rows,
    }
    title = (
        f"LIBERO {args.suite} on a CPU: {len(tasks)} tasks, {args.episodes} expert demos/task, "
        f"{args.steps} steps, {args.eval_episodes} fixed init states/task (authors' protocol)"
    )
    table = markdown_table(results)
    times = "\n".join(
        f"- {name}: trained in {row['train_s'] / 60:.0f} min"
        for name, row in rows.items()
        if row.get("train_s")
    )
    write_report(results, RESULTS / "libero_cpu", title, f"{table}\n{times}\n", "LIBERO on a CPU")
    print(f"total {results['total_wall_s'] / 60:.1f} min; wrote {RESULTS / 'libero_cpu.json'}")


if __name__ == "__main__":
    main()
