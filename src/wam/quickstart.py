"""`wam quickstart`: the library's main job on its built-in default, end to end on a CPU.

Stages, each cached under the output folder so a second run skips what is done:
  1. collect scripted-expert demonstrations for a few Meta-World MT10 tasks (LeRobot v3.0);
  2. evaluate the scripted expert (upper bound) and the random policy (lower bound) closed-loop
     on held-out seeds;
  3. print one table and write `results.json` (the `wam eval` schema, with `mean_success`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wam.envs.metaworld_tasks import resolve_tasks


@dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart runs; every field has a CLI flag."""

    out: str = "wam_quickstart"  # output folder (dataset, runs, evaluations, results.json)
    tasks: tuple[str, ...] = ("reach-v3", "drawer-close-v3", "button-press-topdown-v3")  # MT10 tasks
    episodes: int = 30  # demonstrations per task
    eval_episodes: int = 20  # held-out evaluation episodes per task
    image_size: int = 64  # square camera image size
    camera: str = "corner2"  # the camera the policies see
    workers: int = 2  # simulator worker processes

    def __post_init__(self) -> None:
        resolve_tasks(list(self.tasks))
        if self.episodes < 1 or self.eval_episodes < 1:
            raise ValueError("episodes and eval_episodes must be at least 1.")


def _cached_eval(name: str, policy_factory: Any, cfg: QuickstartConfig, out: Path) -> dict[str, Any]:
    """Evaluate a policy unless an evaluation with the same settings is already on disk."""
    from wam.envs.evaluator import evaluate

    eval_dir = out / "eval" / name
    result_file = eval_dir / "results.json"
    if result_file.exists():
        cached = json.loads(result_file.read_text())
        same = sorted(cached.get("tasks", {})) == sorted(cfg.tasks) and all(
            t["episodes"] == cfg.eval_episodes for t in cached["tasks"].values()
        )
        if same:
            return cached
    return evaluate(
        policy_factory(),
        env="metaworld",
        tasks=list(cfg.tasks),
        episodes=cfg.eval_episodes,
        workers=cfg.workers,
        out=str(eval_dir),
    )


def run_quickstart(cfg: QuickstartConfig) -> dict[str, Any]:
    """Run every stage (skipping cached ones) and return the combined results."""
    from wam.envs.collect import collect_metaworld
    from wam.policies.scripted import ExpertPolicy, RandomPolicy

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    collect_metaworld(
        tasks=list(cfg.tasks),
        episodes_per_task=cfg.episodes,
        image_size=cfg.image_size,
        cameras=[cfg.camera],
        out=str(data_dir),
        resume=data_dir.exists(),
        workers=cfg.workers,
    )
    evals = {
        "expert": _cached_eval("expert", ExpertPolicy, cfg, out),
        "random": _cached_eval("random", RandomPolicy, cfg, out),
    }
    results = {
        "config": asdict(cfg),
        "dataset": str(data_dir),
        "policies": evals,
        "tasks": evals["expert"]["tasks"],
        "mean_success": evals["expert"]["mean_success"],
    }
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out / "results.json")
    return results


def print_summary(results: dict[str, Any]) -> None:
    """One table: per task, each policy's success rate."""
    from rich.console import Console
    from rich.table import Table

    evals = results["policies"]
    table = Table(title="wam quickstart: closed-loop success on held-out seeds")
    table.add_column("task")
    for name in evals:
        table.add_column(name, justify="right")
    for task in results["tasks"]:
        table.add_row(task, *(f"{evals[n]['tasks'][task]['success_rate']:.0%}" for n in evals))
    table.add_row("mean", *(f"{evals[n]['mean_success']:.0%}" for n in evals), style="bold")
    Console().print(table)
    Console().print(f"results: {Path(results['config']['out']) / 'results.json'}")
