"""`wam data ...`: inspect and finish LeRobot datasets (v3.0 and v2.x)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Inspect and finish LeRobot datasets (v3.0 and v2.1).", no_args_is_help=True)

    @data_app.command("info")
    def info(
        root: str = typer.Argument(..., help="Dataset folder (the one holding meta/info.json)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    ) -> None:
        """Episodes, frames, fps, version, features, tasks, cameras and size on disk."""
        import json

        from wam.data.info import dataset_info, print_dataset_info

        summary = dataset_info(root)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            print_dataset_info(summary)

    @data_app.command("finalize")
    def finalize(root: str = typer.Argument(..., help="Dataset folder written by wam (v3.0).")) -> None:
        """Consolidate staged episodes (e.g. after an interrupted collection) into the v3.0 files."""
        from wam.data.writer import LeRobotDatasetWriter

        writer = LeRobotDatasetWriter.resume(root)
        writer.finalize()
        typer.echo(f"{root}: {writer.num_episodes} episodes, {writer.num_frames} frames, finalized.")

    app.add_typer(data_app, name="data")
