"""`wam train`: train a policy preset on a LeRobot dataset.

One process by default; data parallel with several: `torchrun --nproc_per_node N -m wam train ...`
(CPUs, gloo) or `accelerate launch --multi_gpu --num_processes N -m wam train ...` (GPUs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wam.configs.base import ExperimentConfig  # torch-free


def build_config(
    preset: str | None, out: Path, resume: bool, steps: int | None, overrides: list[str]
) -> ExperimentConfig:
    """The experiment config: the preset (or, with --resume, the run's own) plus --set and --steps."""
    from wam.configs import apply_overrides, get_preset
    from wam.training.checkpoint import load_config

    if resume:
        cfg = load_config(out)
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
    return apply_overrides(cfg, overrides)


def resolve_data(data: str | None, out: Path, resume: bool) -> Path:
    """--data, or (resuming) the dataset the run was started on; checked to exist."""
    if data is None and resume and (out / "run.json").is_file():
        data = json.loads((out / "run.json").read_text())["data"]
    if data is None:
        raise ValueError("No dataset given: pass --data DIR (a LeRobot dataset folder).")
    path = Path(data)
    if not (path / "meta" / "info.json").is_file():
        raise FileNotFoundError(
            f"No LeRobot dataset at {path}: collect one with `wam collect metaworld --out {path}` "
            "or fix --data."
        )
    return path


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
            str | None, typer.Option(help="LeRobot dataset folder (resuming: the run's).")
        ] = None,
        steps: Annotated[
            int | None, typer.Option(help="Optimiser steps in total (= --set train.steps=N).")
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Delete --out and start afresh.")
        ] = False,
        sets: Annotated[
            list[str] | None,
            typer.Option("--set", help="Override a field: --set train.lr=1e-4 (repeatable)."),
        ] = None,
    ) -> None:
        """Train a policy; every setting comes from the preset, --steps and --set overrides."""
        if resume and overwrite:
            raise ValueError("--resume and --overwrite contradict each other: pass one of them.")
        if not resume and not overwrite and out.exists() and any(out.iterdir()):
            raise FileExistsError(
                f"The run folder {out} exists: pass --resume to continue it or --overwrite."
            )
        cfg = build_config(preset, out, resume, steps, list(sets or []))
        dataset = resolve_data(data, out, resume)
        from wam.training.loop import train as run_training

        summary = run_training(cfg, dataset, out, resume=resume, overwrite=overwrite)
        typer.echo(f"trained {summary['step']} steps, final loss {summary['loss']:.4f}: {out}")
        typer.echo(f"evaluate: wam eval --policy {out}")
