"""Which Meta-World goals a set of cameras can tell apart: the goal's depth that one view cannot see.

A policy that reads images finds a task's goal only through its projections. For each task and
camera set this samples `--samples` seeded initial states, projects each goal position into every
camera (MuJoCo's pinhole model at --image-size px) and reports:

    ambiguous     the share of goals for which another sampled goal lands within --radius px of it
                  in every camera of the set, yet lies more than --tolerance m away in 3D (5 cm is
                  reach's success distance): a policy that sees the marker perfectly still cannot
                  tell these two goals apart
    spread        median over goals of the largest 3D distance to a goal that looks the same
                  (within --radius px in every camera)

No rendering: the goal positions and camera poses come from the simulator's state.

    python benchmarks/goal_views.py [--samples 1500] [--sets "corner2;corner2,corner;corner2,topview"]

Writes benchmarks/results/goal_views.{json,md,png} and prints a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from wam.data.fsio import atomic_write, atomic_write_json, atomic_write_text

RESULTS = Path(__file__).parent / "results"
TASKS = ["reach-v3", "push-v3", "pick-place-v3"]  # the MT10 tasks whose goal is only a small marker
SETS = "corner2;corner2,corner;corner2,topview"


def goals_and_pixels(task: str, cameras: list[str], samples: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Goal positions (N, 3) in metres and their pixel coordinates (C, N, 2) in each camera."""
    from wam.envs.metaworld.env import MetaWorldEnv

    env = MetaWorldEnv(task, cameras=cameras, image_size=size)
    model, data, mujoco = env._env.model, env._env.data, env._mujoco
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, cam) for cam in cameras]
    focals = [0.5 * size / np.tan(np.deg2rad(model.cam_fovy[cid]) / 2) for cid in ids]  # px
    goals, pixels = [], []
    for seed in range(samples):
        obs = env.reset(seed, render=False)
        goal = obs["observation.environment_state"][-3:].astype(np.float64)  # the observable goal
        goals.append(goal)
        row = []
        for cid, focal in zip(ids, focals, strict=True):
            p = data.cam_xmat[cid].reshape(3, 3).T @ (goal - data.cam_xpos[cid])  # camera frame, -z ahead
            row.append(focal * p[:2] / -p[2])
        pixels.append(row)
    env.close()
    return np.array(goals), np.array(pixels).transpose(1, 0, 2)


def ambiguity(goals: np.ndarray, pixels: np.ndarray, radius: float, tolerance: float) -> dict[str, float]:
    """See the module docstring; `pixels` (C, N, 2) for the cameras of one set."""
    apart = np.linalg.norm(goals[:, None] - goals[None], axis=-1)  # (N, N) metres
    image = np.max(np.linalg.norm(pixels[:, :, None] - pixels[:, None], axis=-1), axis=0)  # (N, N) px
    np.fill_diagonal(image, np.inf)
    alike = image < radius
    spread = np.where(alike, apart, 0.0).max(axis=1)
    return {
        "ambiguous": float((alike & (apart > tolerance)).any(axis=1).mean()),
        "spread_cm_median": float(100 * np.median(spread)),
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets, tasks = results["sets"], results["tasks"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(sets)
    for j, cams in enumerate(sets):
        ys = [results["rows"][t][cams]["spread_cm_median"] for t in tasks]
        ax.bar(np.arange(len(tasks)) + j * width, ys, width, label=cams.replace(",", " + "))
    ax.axhline(100 * results["tolerance_m"], color="k", linestyle="--", linewidth=1)
    ax.set_xticks(np.arange(len(tasks)) + width * (len(sets) - 1) / 2, tasks)
    ax.set_ylabel("cm between goals that look alike (median)")
    ax.legend(fontsize=8)
    ax.set_title(
        f"How far apart goals within {results['radius_px']:g} px of each other in every camera lie "
        f"({results['image_size']} px; dashed: {100 * results['tolerance_m']:g} cm)",
        fontsize=9,
    )
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="Meta-World tasks (comma list).")
    parser.add_argument("--sets", default=SETS, help="Camera sets, ';'-separated, each a comma list.")
    parser.add_argument("--samples", type=int, default=1500, help="Initial states (goals) per task.")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--radius", type=float, default=1.0, help="Pixels within which goals look alike.")
    parser.add_argument("--tolerance", type=float, default=0.05, help="3D distance (m) that matters.")
    parser.add_argument("--report", default="goal_views")
    args = parser.parse_args()

    from wam.envs.metaworld.tasks import resolve_cameras, resolve_tasks

    tasks = resolve_tasks(args.tasks.split(","))
    sets = [resolve_cameras(s) for s in args.sets.split(";")]
    every = sorted({cam for cams in sets for cam in cams})
    rows: dict[str, dict[str, Any]] = {}
    heights: dict[str, list[float]] = {}  # each task's goal height range, m
    for task in tasks:
        goals, pixels = goals_and_pixels(task, every, args.samples, args.image_size)
        heights[task] = [float(goals[:, 2].min()), float(goals[:, 2].max())]
        rows[task] = {}
        for cams in sets:
            seen = pixels[[every.index(cam) for cam in cams]]
            rows[task][",".join(cams)] = ambiguity(goals, seen, args.radius, args.tolerance)
        print(f"{task}: done")
    names = [",".join(cams) for cams in sets]
    results = {
        "benchmark": "goal_views",
        "tasks": tasks,
        "sets": names,
        "samples": args.samples,
        "image_size": args.image_size,
        "radius_px": args.radius,
        "tolerance_m": args.tolerance,
        "goal_height_range_m": heights,
        "rows": rows,
    }
    lines = ["| task | goal height, m | " + " | ".join(n.replace(",", " + ") for n in names) + " |"]
    lines.append("|---|---|" + "---|" * len(names))
    for task in tasks:
        low, high = heights[task]
        cells = [f"{r['ambiguous']:.0%} ({r['spread_cm_median']:.1f} cm)" for r in rows[task].values()]
        lines.append(f"| {task} | {low:.2f}-{high:.2f} | " + " | ".join(cells) + " |")
    title = (
        f"Goals another goal more than {args.tolerance * 100:.0f} cm away looks like (within "
        f"{args.radius} px in every camera, {args.image_size} px images, {args.samples} initial states "
        "per task); in brackets the median largest such distance"
    )
    stem = RESULTS / args.report
    atomic_write_json(stem.with_suffix(".json"), results, indent=2)
    atomic_write_text(stem.with_suffix(".md"), f"# {title}\n\n" + "\n".join(lines) + "\n")
    plot(results, stem.with_suffix(".png"))
    print("\n".join(lines))
    print(f"wrote {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
