"""`wam quickstart`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("quickstart")
    def quickstart(
        out: str = typer.Option("wam_quickstart", help="Output folder; a second run reuses finished stages."),
        tasks: str = typer.Option(
            "reach-v3,drawer-close-v3,button-press-topdown-v3", help="Meta-World tasks (comma list, MT10)."
        ),
        episodes: int = typer.Option(30, help="Expert demonstrations per task."),
        preset: str = typer.Option("lightwam-tiny", help="Policy preset to train on the demonstrations."),
        baseline: str = typer.Option(
            "baseline-tiny",
            help="No-world-model baseline trained beside it on the same data ('none' to skip).",
        ),
        steps: int = typer.Option(3000, help="Training steps of each policy."),
        codec_steps: int = typer.Option(1500, help="Training steps of the compact latent codec."),
        image_size: int = typer.Option(64, help="Square camera image size in pixels."),
        camera: str = typer.Option("corner2", help="The camera the policies see."),
        eval_episodes: int = typer.Option(20, help="Held-out evaluation episodes per task."),
        workers: int = typer.Option(2, help="Simulator worker processes."),
    ) -> None:
        """Collect Meta-World demos, train Light-WAM and a baseline, evaluate on held-out seeds."""
        from wam.envs.metaworld_tasks import resolve_tasks
        from wam.quickstart import QuickstartConfig, print_summary, run_quickstart

        cfg = QuickstartConfig(
            out=out,
            tasks=tuple(resolve_tasks(tasks)),
            episodes=episodes,
            preset=preset,
            baseline=None if baseline.lower() == "none" else baseline,
            steps=steps,
            codec_steps=codec_steps,
            image_size=image_size,
            camera=camera,
            eval_episodes=eval_episodes,
            workers=workers,
        )
        print_summary(run_quickstart(cfg))
