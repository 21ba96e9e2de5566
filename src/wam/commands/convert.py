"""`wam convert fastwam|lightwam CKPT --config MODEL_YAML --out RUN`: the authors' checkpoints as wam runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MODELS = ("fastwam", "lightwam")


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert_cmd(
        model: str = typer.Argument(..., help="Whose checkpoint: fastwam or lightwam."),
        ckpt: str = typer.Argument(
            ..., help="The authors' checkpoint: their save_checkpoint .pt or a flat .safetensors."
        ),
        config: str = typer.Option(
            ..., "--config", help="The authors' model YAML (e.g. configs/model/fastwam.yaml)."
        ),
        out: str = typer.Option(
            ..., "--out", help="Run folder to write (then: wam eval --policy RUN, wam serve RUN)."
        ),
        sets: Annotated[
            list[str] | None,
            typer.Option(
                "--set",
                help="k=v: a value of the authors' YAML or one it interpolates (e.g. data.train.processor."
                "action_output_dim=7); policy.*/train.* keys set the wam config (e.g. policy.text_path=DIR).",
            ),
        ] = None,
        stats: str = typer.Option(
            None,
            "--stats",
            help="Normalisation statistics: a LeRobot dataset or dataset_stats.json (default: released).",
        ),
        task_config: str = typer.Option(
            None,
            "--task-config",
            help="The authors' data or task YAML: cameras, image size, chunk, normalisation.",
        ),
        preset: str = typer.Option(
            None,
            "--preset",
            help="wam preset for what the checkpoint does not say (default: the published model's).",
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder in --out."),
    ) -> None:
        """Convert a released Fast-WAM or Light-WAM checkpoint into an ordinary wam run folder."""
        from wam.convert.authors_yaml import parse_sets
        from wam.convert.build import write_run

        if model not in MODELS:
            raise ValueError(f"Unknown model '{model}': use fastwam or lightwam.")
        sets = list(sets or [])
        wam_sets = [s for s in sets if s.startswith(("policy.", "train."))]
        authors = parse_sets([s for s in sets if s not in wam_sets])
        if model == "fastwam":
            from wam.convert.fastwam import DEFAULT_PRESET, convert
        else:
            from wam.convert.lightwam import DEFAULT_PRESET, convert
        from wam.hub import resolve_path

        converted = convert(
            resolve_path(ckpt, "checkpoint"),  # a file, or ORG/NAME:path/in/repo from the hub cache
            config,
            sets=authors,
            stats=stats,
            task_config=task_config,
            preset=preset or DEFAULT_PRESET,
            wam_sets=wam_sets,
        )
        folder = write_run(
            Path(out), converted.policy, converted.config, converted.stats, converted.source, overwrite
        )
        params = sum(p.numel() for p in converted.policy.parameters())
        typer.echo(
            f"Converted {ckpt} -> {folder} ({params / 1e6:.1f}M parameters; {'; '.join(converted.notes)})."
        )
        typer.echo(f"Next: wam eval --policy {out}   |   wam serve {out}   |   wam bench {out}")
