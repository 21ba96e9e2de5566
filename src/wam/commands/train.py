"""`wam train`: train a policy preset on a LeRobot dataset.

One process by default; data parallel with several: `torchrun --nproc_per_node N -m wam train ...`
(CPUs, gloo) or `accelerate launch --multi_gpu --num_processes N -m wam train ...` (GPUs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wam.configs.base import ExperimentConfig  # torch-free


def build_config(
    preset: str | None, out: Path, resume: bool, steps: int | None, overrides: list[str]
) -> ExperimentConfig:
    """The experiment config: the preset (or, with --resume, the run's own) plus --set and --steps."""
    from wam.configs import apply_overrides, get_preset
    from wam.training.checkpoint import config_of, resume_checkpoint

    if steps is not None and steps < 1:
        raise ValueError(f"--steps {steps} must be at least 1 (the total number of optimiser steps).")
    if resume:
        ckpt = resume_checkpoint(out, warn=False)  # the training loop warns when it falls back
        cfg = config_of(ckpt)
        if preset and preset != cfg.name:
            raise ValueError(
                f"{out} was trained from preset '{cfg.name}', not '{preset}': drop --preset to resume."
            )
    elif preset:
        cfg = get_preset(preset)
    else:
        raise ValueError("No preset given: pass --preset NAME (e.g. --preset baseline-tiny).")
    if steps is not None:
        overrides = [*overrides, f"train.steps={steps}"]
    new = apply_overrides(cfg, overrides)
    if resume:
        warn_schedule_change(cfg, new, ckpt)
    return new


def warn_schedule_change(old: ExperimentConfig, new: ExperimentConfig, ckpt: Path) -> None:
    """Say on stderr how the learning rate moves when a resume changes the schedule's settings."""
    from wam.data.fsio import read_json
    from wam.training.optim import lr_at

    keys = ("steps", "lr", "warmup_steps", "min_lr_ratio")
    changed = [k for k in keys if getattr(old.train, k) != getattr(new.train, k)]
    if not changed:
        return
    step = int(read_json(ckpt / "training_state" / "state.json")["step"])
    before, after = lr_at(step, old.train), lr_at(step, new.train)
    what = ", ".join(f"train.{k} {getattr(old.train, k)} -> {getattr(new.train, k)}" for k in changed)
    moves = (
        f"goes from {before:.3g} to {after:.3g} at once"
        if abs(after - before) > 1e-3 * max(abs(before), abs(after))
        else f"stays at {before:.3g} for now"
    )
    typer.secho(
        f"warning: resuming at step {step} with {what}: the warmup + cosine schedule is recomputed over "
        f"{new.train.steps} steps, so the learning rate {moves}.",
        fg=typer.colors.YELLOW,
        err=True,
    )


def resolve_data(data: str | None, out: Path, resume: bool, revision: str | None = None) -> Path:
    """--data (a folder, or a hub repo id ORG/NAME[@REV]), or (resuming) the run's; checked to exist."""
    from wam.data.fsio import read_json
    from wam.hub import resolve_path

    if data is None and resume and (out / "run.json").is_file():
        data = str(read_json(out / "run.json", fix="pass --data DIR").get("data", "")) or None
    if data is None:
        raise ValueError("No dataset given: pass --data DIR (a LeRobot dataset folder or a hub repo id).")
    path = resolve_path(data, "dataset", revision=revision)
    if path.is_file():
        raise ValueError(
            f"--data {path} is a file: pass the dataset folder (the one that holds meta/info.json)."
        )
    if not (path / "meta" / "info.json").is_file():
        raise FileNotFoundError(
            f"No LeRobot dataset at {path}: collect one with `wam collect metaworld --tasks reach-v3 "
            f"--out {path}` or fix --data."
        )
    return path


def interrupted_note(out: Path) -> str:
    """What an interrupted `wam train` keeps, and how to continue it."""
    from wam.training.checkpoint import kept_checkpoints

    kept = kept_checkpoints(out) if out.is_dir() else []
    if not kept:
        return f"{out} holds no checkpoint yet; run the same command again to start afresh."
    return (
        f"the run keeps its checkpoints up to {kept[0].name} (steps after it are lost); continue with "
        f"`wam train --out {out} --resume`."
    )


def eval_hint(out: Path, data: Path) -> str:
    """A runnable next command for the run, from what the dataset looks like.

    Meta-World tasks in the dataset: `wam eval` on them (MT10 when the names are unknown); LIBERO's
    shape (7-d actions, 8-d state, no Meta-World task): `wam eval --env libero` on the four suites;
    anything else (RoboTwin, a user's robot): `wam serve`, for the robot or its simulator.
    """
    from wam.data import DatasetMeta
    from wam.training.evaluation import metaworld_tasks

    evals = out.parent / (out.name + "-eval")
    try:
        meta = DatasetMeta(data)
        tasks = ",".join(metaworld_tasks(meta))
        keys = ("action", "observation.state")
        dims = {key: tuple(meta.features.get(key, {}).get("shape", ())) for key in keys}
    except (ValueError, KeyError, OSError):
        tasks, dims = "", {}
    if tasks or dims.get("action") == (4,) or not dims:
        return f"wam eval --policy {out} --tasks {tasks or 'MT10'} --out {evals}"
    if dims.get("action") == (7,) and dims.get("observation.state") == (8,):
        suites = "libero_spatial,libero_object,libero_goal,libero_10"
        return f"wam eval --env libero --suite {suites} --policy {out} --out {evals}"
    return f"wam serve {out} --port 8000  (then the robot's light client, or `wam robotwin install-policy`)"


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        out: Annotated[
            Path, typer.Option(help="Run folder: checkpoints, log.jsonl, loss.png, eval results.")
        ],
        preset: Annotated[
            str | None, typer.Option(help="Policy preset, e.g. baseline-tiny (see `wam info`).")
        ] = None,
        data: Annotated[
            str | None,
            typer.Option(
                help="LeRobot dataset folder or hub repo id ORG/NAME or ORG/NAME@REV (resuming: the run's)."
            ),
        ] = None,
        revision: Annotated[
            str | None, typer.Option(help="Branch, tag (e.g. v3.0) or commit of a hub --data.")
        ] = None,
        steps: Annotated[
            int | None, typer.Option(help="Optimiser steps in total (= --set train.steps=N).")
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
        overwrite: Annotated[
            bool,
            typer.Option(
                "--overwrite",
                help="Replace the run in --out (only a wam run folder: never other files or the dataset).",
            ),
        ] = False,
        sets: Annotated[
            list[str] | None,
            typer.Option("--set", help="Override a field: --set train.lr=1e-4 (repeatable)."),
        ] = None,
    ) -> None:
        """Train a policy; every setting comes from the preset, --steps and --set overrides."""
        from wam.training.run_dir import plan_run_dir

        plan_run_dir(out, data, resume, overwrite)  # refuses before anything is loaded or deleted
        cfg = build_config(preset, out, resume, steps, list(sets or []))
        dataset = resolve_data(data, out, resume, revision)
        from wam.training.loop import train as run_training

        try:
            summary = run_training(cfg, dataset, out, resume=resume, overwrite=overwrite)
        except KeyboardInterrupt:
            typer.secho(f"Stopped: {interrupted_note(out)}", fg=typer.colors.YELLOW, err=True)
            raise
        typer.echo(f"trained {summary['step']} steps, final loss {summary['loss']:.4f}: {out}")
        typer.echo(f"evaluate: {eval_hint(out, dataset)}")
