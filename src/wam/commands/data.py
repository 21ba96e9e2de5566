"""`wam data ...`: inspect, verify and finish LeRobot datasets (v3.0 and v2.x).

`info` prints the summary after the cheap checks of `wam.data.verify` (files exist and are not
empty, parquet footers and video containers read and agree with meta/); any problem is one
`error:` line naming its file and the exit code is 2. `verify` reads every parquet file and
decodes every video, prints one line per problem and a summary, and exits 1 on any problem.
"""

from __future__ import annotations

import sys

import typer

from wam.data.video import SPEC_HELP


def _print_problems(problems: list[str]) -> None:
    for line in problems:
        typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(
        help="Inspect, verify and finish LeRobot datasets (v3.0 and v2.1).", no_args_is_help=True
    )

    @data_app.command("info")
    def info(
        root: str = typer.Argument(..., help="Dataset folder (the one holding meta/info.json)."),
        as_json: bool = typer.Option(
            False, "--json", help="Print JSON (with a `problems` list) instead of tables."
        ),
    ) -> None:
        """Episodes, frames, fps, version, features, tasks, cameras and size; exits 2 on a broken file."""
        import json

        from wam.data.info import dataset_info, print_dataset_info
        from wam.data.verify import verify_dataset

        report = verify_dataset(root, deep=False)
        summary = dataset_info(root) if report.ok else _summary_if_readable(root)
        if as_json:
            typer.echo(json.dumps({**(summary or {"root": root}), "problems": report.problems}, indent=2))
        elif summary is not None:
            print_dataset_info(summary)
        if not report.ok:
            _print_problems(report.problems)
            if len(report.problems) > 1:
                typer.echo(
                    f"{len(report.problems)} problems; `wam data verify {root}` checks every frame.", err=True
                )
            sys.exit(2)

    @data_app.command("verify")
    def verify(
        root: str = typer.Argument(..., help="Dataset folder (the one holding meta/info.json)."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Read every parquet file and decode every video; check them against meta/ (exit 1 on problems)."""
        import json

        from wam.data.verify import verify_dataset

        report = verify_dataset(root, deep=True, progress=progress and sys.stderr.isatty())
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            for line in report.problems:
                typer.echo(line)
            typer.echo(report.summary())
        if not report.ok:
            sys.exit(1)

    @data_app.command("finalize")
    def finalize(root: str = typer.Argument(..., help="Dataset folder written by wam (v3.0).")) -> None:
        """Consolidate staged episodes (e.g. after an interrupted collection) into the v3.0 files."""
        from wam.data.writer import LeRobotDatasetWriter

        writer = LeRobotDatasetWriter.resume(root)
        writer.finalize()
        typer.echo(f"{root}: {writer.num_episodes} episodes, {writer.num_frames} frames, finalized.")

    @data_app.command("convert")
    def convert(
        source: str = typer.Argument(..., help="An HDF5 file or a folder of them (searched recursively)."),
        out: str = typer.Option(..., "--out", help="The LeRobot v3.0 dataset folder to write."),
        layout: str | None = typer.Option(
            None, "--layout", help="Built-in layout: libero (raw demos), robotwin (collected), aloha (ACT)."
        ),
        mapping: str | None = typer.Option(
            None, "--mapping", help="A YAML/JSON mapping file for any other layout (fps, task, features)."
        ),
        fps: int | None = typer.Option(None, help="Frames per second (default: the layout's)."),
        task: str | None = typer.Option(
            None, help="One instruction for every episode (overrides the files)."
        ),
        image_size: int | None = typer.Option(
            None, "--image-size", help="Resize every camera to SxS (default: as recorded)."
        ),
        workers: int = typer.Option(2, help="Reader processes (0: read in this process)."),
        codec: str | None = typer.Option(
            None, help="Video encoding: " + SPEC_HELP + "; default av1, or with --resume the dataset's own."
        ),
        limit: int | None = typer.Option(None, help="Convert only the first N episodes."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted conversion."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset wam wrote in --out."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Convert HDF5 episodes (LIBERO, RoboTwin 2.0, ALOHA, or a mapping file) into a LeRobot dataset.

        A mapping file (YAML or JSON) for your own robot:

            fps: 30
            episodes: /                       # one episode per file (or a group glob: data/demo_*)
            task: pick up the cube            # or {attribute: GROUP@NAME}, {sidecar: PATH}, {filename: true}
            features:
              observation.images.front: observations/images/front
              observation.state: \\[observations/qpos, observations/gripper]
              action: action                  # or {path: observations/qpos, shift: 1}
        """
        import importlib.util

        from wam.data.hdf5 import convert_hdf5

        if importlib.util.find_spec("h5py") is None:
            raise ValueError("wam data convert reads HDF5 with h5py: pip install 'wam[convert]'.")
        summary = convert_hdf5(
            source, out, layout, mapping, fps=fps, task=task, image_size=image_size, workers=workers,
            resume=resume, overwrite=overwrite, video_codec=codec, limit=limit,
            progress=progress, log=lambda text: typer.echo(text, err=True),
        )  # fmt: skip
        skipped = f" ({summary.skipped} already there)" if summary.skipped else ""
        typer.echo(
            f"{summary.root}: {summary.written} episodes converted{skipped}; {summary.episodes} episodes, "
            f"{summary.frames} frames at {summary.fps} fps ({summary.layout} layout)."
        )
        typer.echo(f"check: wam data verify {summary.root}")

    app.add_typer(data_app, name="data")


def _summary_if_readable(root: str) -> dict | None:
    """The info summary when meta/ still reads (a broken data or video file leaves it readable)."""
    from wam.data.info import dataset_info

    try:
        return dataset_info(root)
    except (ValueError, OSError):
        return None
