"""`wam eval`: closed-loop success rates of a policy on held-out simulator episodes."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from wam.commands.inference_flags import InferenceOverrides, InferencePreset
from wam.envs.seeds import EVAL_SEED_START


def check_results_dir(out: Path, overwrite: bool) -> None:
    """Refuse to mix new results into an existing folder; --overwrite replaces an earlier `wam eval`."""
    from wam.outputs import check_output, is_empty_dir, replace_output

    check_output(out, "eval")
    if not out.exists() or is_empty_dir(out):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} already holds files (earlier results?): pass --overwrite to replace a `wam eval` "
            "output there, or another --out folder."
        )
    replace_output(out, "eval")


def adapt_unlearned_policy(policy: object, env: str) -> None:
    """`random` / `zero` / `expert` take the benchmark's action dim (built with Meta-World's 4)."""
    from wam.envs.registry import get_benchmark
    from wam.policies.scripted import ExpertPolicy, RandomPolicy

    if isinstance(policy, RandomPolicy | ExpertPolicy):
        policy.action_dim = get_benchmark(env).action_dim


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        tasks: str = typer.Option(
            "",
            help="Meta-World: a comma list of names, or MT10 / MT50. LIBERO: indices or names within "
            "--suite (default: all of its tasks).",
        ),
        out: str = typer.Option(..., help="Output directory for results.json and videos/."),
        policy: str = typer.Option(
            "expert",
            help="Policy: expert, random[:SEED], zero, a run folder, or ws://HOST:PORT (`wam serve`).",
        ),
        env: str = typer.Option("metaworld", help="Benchmark: metaworld or libero."),
        suite: str = typer.Option(
            "",
            help="LIBERO suites (comma list): libero_spatial, libero_object, libero_goal, "
            "libero_10, libero_90.",
        ),
        protocol: str = typer.Option(
            None,
            help="LIBERO protocol: authors (400/400/400/700 steps, 30 wait steps) or "
            "openvla (220/280/300/520, 10 wait steps).",
        ),
        gripper: str = typer.Option(
            None,
            help="LIBERO gripper post-processing: authors (policy gripper in [0,1], 1 = open), binarize or "
            "native (LIBERO's -1 open / +1 close). Default: the protocol's (authors).",
        ),
        resume: bool = typer.Option(
            False,
            "--resume",
            help="Keep the finished episodes in --out and run only the others (also to add episodes).",
        ),
        episodes: int = typer.Option(20, help="Episodes per task."),
        workers: int = typer.Option(2, help="Simulator processes (0: run inline)."),
        seed: int = typer.Option(EVAL_SEED_START, help="First seed (default: held out from collection)."),
        videos: int = typer.Option(2, help="Videos recorded per task (the first episodes)."),
        max_steps: int = typer.Option(0, help="Episode horizon (0: the benchmark's; Meta-World 500)."),
        batch_size: int = typer.Option(0, help="Envs per lockstep batch (0: all episodes of a task, <= 50)."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace earlier results in --out (only a `wam eval` output folder)."
        ),
        inference: InferencePreset = "default",
        opt: InferenceOverrides = None,
    ) -> None:
        """Evaluate a policy on Meta-World or LIBERO; writes results.json and videos, prints a table."""
        from wam.envs.evaluator import evaluate
        from wam.envs.journal import RUN_FILE
        from wam.outputs import MARKER, mark
        from wam.policies.factory import load_policy
        from wam.policies.fast_path import configure_policy

        if resume and overwrite:
            raise ValueError("Pass either --resume (continue --out) or --overwrite (replace it), not both.")
        if resume:
            from wam.outputs import check_output

            check_output(Path(out), "eval")
        else:
            check_results_dir(Path(out), overwrite)
        warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
        loaded = configure_policy(load_policy(policy), inference, opt or ())
        adapt_unlearned_policy(loaded, env)
        created = not Path(out).exists()
        mark(out, "eval")  # before the first video: an interrupted evaluation is replaceable too
        try:
            evaluate(
                loaded,
                env=env,
                tasks=tasks,
                episodes=episodes,
                seed=seed,
                workers=workers,
                max_steps=max_steps or None,
                videos_per_task=videos,
                out=out,
                batch_size=batch_size or None,
                suites=suite,
                protocol=protocol,
                gripper=gripper,
                resume=resume,
            )
        except BaseException:
            before_any_episode = {MARKER, RUN_FILE}  # what this call wrote before the first episode
            if created and {p.name for p in Path(out).iterdir()} <= before_any_episode:
                for name in before_any_episode:
                    (Path(out) / name).unlink(missing_ok=True)
                Path(out).rmdir()  # refused before any result: leave nothing behind
            raise
        finally:
            close = getattr(loaded, "close", None)  # a remote policy's connection
            if callable(close):
                close()
        typer.echo(f"results: {out}/results.json")
