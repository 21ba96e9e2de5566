"""Does a trained policy go where the goal is? Closed-loop Meta-World episodes, hand against goal.

For each trained run this plays `--episodes` held-out seeds of one task (default reach-v3, where
the goal is only a small marker) for up to `--steps` steps and records the goal, the hand's final
position and its closest approach. A policy that reads the goal from its images ends near it
whatever the goal is, so the final hand position follows the goal: per-axis correlation near 1.
A policy that does not see the goal plays one average motion: correlation near 0.

    python benchmarks/goal_following.py RUN [RUN ...] [--task reach-v3] [--episodes 40]

Writes benchmarks/results/<--report>.{json,md} (default goal_following) and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from wam.data.fsio import atomic_write_json, atomic_write_text
from wam.envs.seeds import EVAL_SEED_START

RESULTS = Path(__file__).parent / "results"


def follow(run: Path, task: str, episodes: int, steps: int) -> dict[str, Any]:
    """Play the run's policy on `episodes` seeds of `task`; goal, final hand and closest distance."""
    import torch

    from wam.envs.evaluator import observations_to_batch
    from wam.envs.metaworld.env import MetaWorldEnv
    from wam.training.checkpoint import load_policy, resolve_checkpoint

    torch.set_num_threads(1)
    policy = load_policy(resolve_checkpoint(run), device="cpu")
    cameras = tuple(policy.cameras)  # what the evaluator renders for it, at its image size
    env = MetaWorldEnv(task, cameras=cameras, image_size=int(policy.image_size))
    keys = [f"observation.images.{cam}" for cam in cameras]
    goals, finals, closest, successes = [], [], [], []
    for k in range(episodes):
        policy.reset()
        obs = env.reset(EVAL_SEED_START + k)
        goal = obs["observation.environment_state"][-3:].astype(np.float64)  # (3,) the observable goal
        nearest, success = np.inf, False
        for _ in range(steps):
            action = np.asarray(policy.select_action(observations_to_batch([obs], keys)))[0]  # (A,)
            obs, _, success, done, _ = env.step(action.astype(np.float32))
            nearest = min(nearest, float(np.linalg.norm(obs["observation.state"][:3] - goal)))
            if success or done:
                break
        goals.append(goal.tolist())
        finals.append(obs["observation.state"][:3].astype(np.float64).tolist())
        closest.append(nearest)
        successes.append(bool(success))
    env.close()
    g, h = np.array(goals), np.array(finals)
    return {
        "run": str(run),
        "cameras": list(cameras),
        "correlation_xyz": [float(np.corrcoef(g[:, i], h[:, i])[0, 1]) for i in range(3)],
        "goal_std_xyz": g.std(axis=0).tolist(),
        "final_hand_std_xyz": h.std(axis=0).tolist(),
        "closest_cm_median": float(100 * np.median(closest)),
        "success": float(np.mean(successes)),
        "episodes": [
            {"seed": EVAL_SEED_START + k, "goal": goals[k], "final_hand": finals[k], "closest_m": closest[k]}
            for k in range(episodes)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="Trained run folders (or NAME=RUN).")
    parser.add_argument("--task", default="reach-v3")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=150, help="Steps per episode (the demos take 46-75).")
    parser.add_argument("--report", default="goal_following")
    args = parser.parse_args()

    rows = {}
    for spec in args.runs:
        name, _, path = spec.rpartition("=")
        rows[name or spec] = follow(Path(path), args.task, args.episodes, args.steps)
        print(f"{name or spec}: done")
    results = {"benchmark": "goal_following", "task": args.task, "episodes": args.episodes, "rows": rows}
    lines = [
        "| run | cameras | corr. x / y / z | goal sd, cm (x / y / z) | final hand sd, cm | closest, cm "
        f"| success in {args.steps} steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        corr = " / ".join(f"{c:.2f}" for c in row["correlation_xyz"])
        goal_sd = " / ".join(f"{100 * s:.1f}" for s in row["goal_std_xyz"])
        hand_sd = " / ".join(f"{100 * s:.1f}" for s in row["final_hand_std_xyz"])
        lines.append(
            f"| {name} | {' + '.join(row['cameras'])} | {corr} | {goal_sd} | {hand_sd} | "
            f"{row['closest_cm_median']:.1f} | {row['success']:.0%} |"
        )
    title = f"Final hand position against the goal, {args.task}, {args.episodes} held-out seeds"
    stem = RESULTS / args.report
    atomic_write_json(stem.with_suffix(".json"), results, indent=2)
    atomic_write_text(stem.with_suffix(".md"), f"# {title}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
