"""Closed-loop evaluation during training (every `train.eval_every` steps, main process only).

The tasks are `train.eval_tasks`, or else the Meta-World tasks the dataset was collected on:
the episodes' `task_name` column when the dataset has one, else each instruction mapped back to its
task (`wam.envs.metaworld_tasks.task_from_instruction`). A dataset that is not from Meta-World
gives no task and evaluation is skipped with a warning. The policy is evaluated with its EMA
weights when EMA is on, through `wam.envs.evaluator.evaluate` (which only uses the `Policy`
contract); results go to `RUN/eval/step_XXXXXX/results.json` and a summary into the log.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from wam.configs.base import ExperimentConfig
from wam.envs.metaworld_tasks import INSTRUCTIONS, task_from_instruction
from wam.training.data import dataset_instructions


def metaworld_tasks(meta: Any) -> list[str]:
    """The Meta-World task names of a dataset (empty when it is not a Meta-World dataset)."""
    episodes = getattr(meta, "episodes", None)
    names: list[str] = []
    if episodes is not None:
        column = None
        if hasattr(episodes, "column_names") and "task_name" in episodes.column_names:  # a pyarrow table
            column = episodes.column("task_name").to_pylist()
        elif hasattr(episodes, "columns") and "task_name" in episodes.columns:  # a pandas frame
            column = list(episodes["task_name"])
        elif isinstance(episodes, list) and episodes and isinstance(episodes[0], dict):
            column = [ep.get("task_name") for ep in episodes]
        for name in column or []:
            if name in INSTRUCTIONS and name not in names:
                names.append(name)
    if names:
        return names
    for text in dataset_instructions(meta):
        task = task_from_instruction(text)
        if task is not None and task not in names:
            names.append(task)
    return names


class PeriodicEval:
    """Evaluates the policy in closed loop and returns log-ready numbers."""

    def __init__(self, cfg: ExperimentConfig, meta: Any, run_dir: Path) -> None:
        self.cfg = cfg.train
        self.run_dir = Path(run_dir)
        self.tasks = list(cfg.train.eval_tasks) or metaworld_tasks(meta)
        if not self.tasks:
            warnings.warn(
                "train.eval_every is set but the dataset is not from Meta-World: set train.eval_tasks or "
                "evaluate after training with `wam eval`.",
                stacklevel=2,
            )

    def run(self, policy: Any, ema: Any, step: int) -> dict[str, Any]:
        """Evaluate now; returns {"eval/success": mean, "eval/<task>": rate, ...} (empty without tasks)."""
        if not self.tasks:
            return {}
        from wam.envs.evaluator import evaluate
        from wam.training.checkpoint import step_name

        was_training = policy.training
        policy.eval()
        try:
            with ema.applied(policy) if ema is not None else nullcontext():
                results = evaluate(
                    policy,
                    env="metaworld",
                    tasks=self.tasks,
                    episodes=self.cfg.eval_episodes,
                    workers=self.cfg.eval_workers,
                    max_steps=self.cfg.eval_max_steps,
                    out=self.run_dir / "eval" / step_name(step),
                    progress=False,
                    videos_per_task=1,
                )
        finally:
            policy.train(was_training)
        summary: dict[str, Any] = {"eval/success": results["mean_success"]}
        for task, row in results["tasks"].items():
            summary[f"eval/{task}"] = row["success_rate"]
        return summary
