"""`wam quickstart`: the library's main job on its built-in default, end to end on a CPU.

Stages, each cached under the output folder so a second run skips what is done:
  1. collect scripted-expert demonstrations for a few Meta-World MT10 tasks (LeRobot v3.0);
  2. train a policy preset on them (default: `baseline-tiny`, the no-world-model baseline;
     resumed from its last checkpoint if interrupted);
  3. evaluate the trained policy, the scripted expert (upper bound) and the random policy (lower
     bound) closed-loop on held-out seeds;
  4. print one table (success per task, latency per action chunk, parameters) and write
     `results.json` (the `wam eval` schema for the trained policy, with `mean_success`, plus
     every policy's results).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wam.envs.metaworld_tasks import resolve_tasks


@dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart runs; every field has a CLI flag."""

    out: str = "wam_quickstart"  # output folder (dataset, runs, evaluations, results.json)
    tasks: tuple[str, ...] = ("reach-v3", "drawer-close-v3", "button-press-topdown-v3")  # MT10 tasks
    episodes: int = 30  # demonstrations per task
    eval_episodes: int = 20  # held-out evaluation episodes per task
    preset: str = "baseline-tiny"  # the policy preset trained on the demonstrations
    steps: int = 3000  # training steps
    image_size: int = 64  # square camera image size
    camera: str = "corner2"  # the camera the policies see
    workers: int = 2  # simulator worker processes

    def __post_init__(self) -> None:
        from wam.configs import get_preset  # torch-free

        resolve_tasks(list(self.tasks))
        if self.episodes < 1 or self.eval_episodes < 1 or self.steps < 1:
            raise ValueError("episodes, eval_episodes and steps must each be at least 1.")
        get_preset(self.preset)  # an unknown preset fails now, not after collecting

    def data_settings(self) -> dict[str, Any]:
        """The settings that the cached dataset and trained run depend on."""
        keys = ("tasks", "episodes", "preset", "steps", "image_size", "camera")
        return {key: list(v) if isinstance(v := getattr(self, key), tuple) else v for key in keys}


def _check_settings(cfg: QuickstartConfig, out: Path) -> None:
    """Refuse to reuse a folder made with other data or training settings (its caches would lie)."""
    path = out / "quickstart.json"
    wanted = cfg.data_settings()
    if path.exists():
        before = json.loads(path.read_text())
        changed = sorted(k for k in wanted if before.get(k) != wanted[k])
        if changed:
            raise ValueError(
                f"{out} was made with other {', '.join(changed)}: pass a new --out folder "
                "(or delete this one) to run with these settings."
            )
    else:
        _write_json(path, wanted)


def _cached_eval(name: str, load: Any, cfg: QuickstartConfig, out: Path, stamp: str = "") -> dict[str, Any]:
    """Evaluate a policy unless an evaluation with the same settings is already on disk."""
    from wam.envs.evaluator import evaluate

    eval_dir = out / "eval" / name
    result_file = eval_dir / "results.json"
    if result_file.exists():
        cached = json.loads(result_file.read_text())
        same = (
            sorted(cached.get("tasks", {})) == sorted(cfg.tasks)
            and all(t["episodes"] == cfg.eval_episodes for t in cached["tasks"].values())
            and cached.get("quickstart_stamp", "") == stamp
        )
        if same:
            return cached
    results = evaluate(
        load(),
        env="metaworld",
        tasks=list(cfg.tasks),
        episodes=cfg.eval_episodes,
        workers=cfg.workers,
        out=str(eval_dir),
    )
    results["quickstart_stamp"] = stamp  # which checkpoint was evaluated
    _write_json(result_file, results)
    return results


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _train(cfg: QuickstartConfig, data_dir: Path, run_dir: Path) -> Path:
    """Train the preset: skip a finished run, resume an interrupted one; returns the last checkpoint."""
    from wam.configs import apply_overrides, get_preset
    from wam.training import checkpoint as ckpt_io
    from wam.training.loop import train

    experiment = apply_overrides(get_preset(cfg.preset), [f"train.steps={cfg.steps}"])
    try:
        ckpt = ckpt_io.resolve_checkpoint(run_dir)
        previous = ckpt_io.load_config(ckpt)
    except FileNotFoundError:
        ckpt, previous = None, None
    if ckpt is not None and previous is not None and previous.train.steps == cfg.steps:
        if ckpt.name == ckpt_io.step_name(cfg.steps):
            return ckpt  # finished earlier
        train(previous, data_dir, run_dir, resume=True)
    else:
        train(experiment, data_dir, run_dir, overwrite=run_dir.exists())
    return ckpt_io.resolve_checkpoint(run_dir)


def measure_latency(policy: Any, data_dir: Path, repeats: int = 30) -> dict[str, float]:
    """Median and p90 seconds of one `predict_action_chunk` call on a batch of one real frame."""
    from wam.data import LeRobotDataset

    sample = LeRobotDataset(data_dir)[0]
    obs: dict[str, Any] = {}
    for key, value in sample.items():
        if key.startswith("observation."):
            obs[key] = value.numpy()[None]
    obs["task"] = [sample["task"]]
    policy.predict_action_chunk(obs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.predict_action_chunk(obs)
        times.append(time.perf_counter() - start)
    return {
        "latency_ms_p50": 1e3 * float(np.median(times)),
        "latency_ms_p90": 1e3 * float(np.percentile(times, 90)),
    }


def run_quickstart(cfg: QuickstartConfig) -> dict[str, Any]:
    """Run every stage (skipping cached ones) and return the combined results."""
    from wam.envs.collect import collect_metaworld
    from wam.policies.scripted import ExpertPolicy, RandomPolicy
    from wam.training.checkpoint import load_policy

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(cfg, out)
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
    ckpt = _train(cfg, data_dir, out / "runs" / cfg.preset)
    trained = load_policy(ckpt, device="cpu")
    profile = {
        "params": int(sum(p.numel() for p in trained.parameters())),
        **measure_latency(trained, data_dir),
    }
    evals = {
        cfg.preset: _cached_eval(cfg.preset, lambda: trained, cfg, out, stamp=str(ckpt.resolve())),
        "expert": _cached_eval("expert", ExpertPolicy, cfg, out),
        "random": _cached_eval("random", RandomPolicy, cfg, out),
    }
    results = {
        **evals[cfg.preset],
        "policy": cfg.preset,
        "checkpoint": str(ckpt),
        "profile": profile,
        "config": asdict(cfg),
        "dataset": str(data_dir),
        "policies": evals,
        "loss_curve": str(out / "runs" / cfg.preset / "loss.png"),
    }
    _write_json(out / "results.json", results)
    return results


def print_summary(results: dict[str, Any]) -> None:
    """One table: per task, each policy's success rate; then the trained policy's profile."""
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
    console = Console()
    console.print(table)
    prof = results["profile"]
    console.print(
        f"{results['policy']}: {prof['params']:,} parameters, "
        f"{prof['latency_ms_p50']:.1f} ms per action chunk (p50, batch 1, CPU); "
        f"loss curve: {results['loss_curve']}"
    )
    console.print(f"results: {Path(results['config']['out']) / 'results.json'}")
