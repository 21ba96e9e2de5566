"""`wam collect metaworld|libero`: scripted-expert demonstrations into a LeRobot v3.0 dataset."""

from __future__ import annotations

import warnings

import typer

from wam.data.video import SPEC_HELP
from wam.envs.seeds import COLLECT_SEED_START

# the sizes the policy presets train on (`wam.configs.images.preset_sizes`; a test keeps them in step)
IMAGE_SIZE_HELP = (
    "Square image size in pixels (even, 32 to 256). The presets train on multiples of 16 (baseline-tiny, "
    "fastwam-tiny*) or of 32 (lightwam-tiny); baseline-small needs 96, the published models 224."
)


def register(app: typer.Typer) -> None:
    collect_app = typer.Typer(help="Record demonstration datasets.", no_args_is_help=True)
    app.add_typer(collect_app, name="collect")

    @collect_app.command("metaworld")
    def metaworld(
        tasks: str = typer.Option(..., help="Meta-World tasks: a comma list of names, or MT10 / MT50."),
        out: str = typer.Option(..., help="Dataset directory (must be new unless --resume/--overwrite)."),
        episodes: int = typer.Option(50, help="Successful episodes to keep per task."),
        image_size: int = typer.Option(96, help=IMAGE_SIZE_HELP),
        cameras: str = typer.Option("corner2", help="Comma list of cameras, e.g. corner2,topview."),
        keep_failed: bool = typer.Option(False, "--keep-failed", help="Keep failed episodes too."),
        resume: bool = typer.Option(False, "--resume", help="Continue the dataset in --out."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace the dataset in --out."),
        workers: int = typer.Option(2, help="Simulator processes (0: run inline)."),
        seed: int = typer.Option(COLLECT_SEED_START, help="First seed of each task's attempts."),
        codec: str | None = typer.Option(
            None, help="Video encoding: " + SPEC_HELP + "; default av1, or with --resume the dataset's own."
        ),
        slow_render: bool = typer.Option(False, "--slow-render", help="Keep shadows, reflections."),
    ) -> None:
        """Collect Meta-World demonstrations from the scripted expert."""
        from wam.envs.collect import collect_metaworld

        warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
        try:
            collect_metaworld(
                tasks=tasks,
                episodes_per_task=episodes,
                image_size=image_size,
                cameras=cameras,
                out=out,
                keep_failed=keep_failed,
                resume=resume,
                overwrite=overwrite,
                workers=workers,
                seed=seed,
                video_codec=codec,
                fast_render=not slow_render,
            )
        except KeyboardInterrupt:
            typer.secho(
                f"Stopped: the whole episodes saved so far stay in {out}; "
                "add --resume to the same command to finish.",
                fg=typer.colors.YELLOW,
                err=True,
            )
            raise

    @collect_app.command("libero")
    def libero(
        suite: str = typer.Option(..., help="LIBERO suite(s): libero_object, libero_spatial, libero_goal..."),
        out: str = typer.Option(..., help="Dataset directory (must be new unless --resume/--overwrite)."),
        tasks: str = typer.Option("", help="Task indices or names within --suite (default: all)."),
        episodes: int = typer.Option(50, help="Successful episodes to keep per task."),
        image_size: int = typer.Option(
            256, help="Square image size (even, 32 to 256; the public datasets: 256)."
        ),
        gripper: str = typer.Option(
            "native",
            help="Stored gripper: native (-1 open, +1 close; the LeRobot LIBERO datasets; evaluate with "
            "--gripper binarize) or authors ([0, 1], 1 = open; evaluate with the default).",
        ),
        protocol: str = typer.Option(
            "authors", help="Protocol of the wait steps and horizons: authors or openvla."
        ),
        keep_failed: bool = typer.Option(False, "--keep-failed", help="Keep failed episodes too."),
        resume: bool = typer.Option(False, "--resume", help="Continue the dataset in --out."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace the dataset in --out."),
        workers: int = typer.Option(2, help="Simulator processes (0: run inline)."),
        seed: int = typer.Option(
            COLLECT_SEED_START, help="First seed of each task's sampled initial states."
        ),
        codec: str | None = typer.Option(
            None, help="Video encoding: " + SPEC_HELP + "; default av1, or with --resume the dataset's own."
        ),
    ) -> None:
        """Collect LIBERO demonstrations from the scripted experts (never the evaluation's init states)."""
        from wam.envs.libero.collect import collect_libero

        try:
            collect_libero(
                suites=suite,
                out=out,
                tasks=tasks,
                episodes_per_task=episodes,
                image_size=image_size,
                gripper=gripper,
                protocol=protocol,
                keep_failed=keep_failed,
                resume=resume,
                overwrite=overwrite,
                workers=workers,
                seed=seed,
                video_codec=codec,
            )
        except KeyboardInterrupt:
            typer.secho(
                f"Stopped: the whole episodes saved so far stay in {out}; "
                "add --resume to the same command to finish.",
                fg=typer.colors.YELLOW,
                err=True,
            )
            raise
