"""The training loop end to end on a tiny dataset: run folder, exact resume, train_step, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from safetensors.torch import load_file
from training_fixtures import tiny_experiment
from typer.testing import CliRunner

from wam.configs import apply_overrides
from wam.training import checkpoint as ckpt_io
from wam.training.loop import TrainState, make_accelerator, train, train_step
from wam.training.optim import EMA, build_optimizer, lr_at


def _losses(run: Path) -> dict[int, float]:
    return {
        r["step"]: r["loss"]
        for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
        if "loss" in r
    }


def test_run_folder_layout_and_pruning(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_experiment(steps=5, save_every=1, keep_last=2, log_every=2, plot=True)
    summary = train(cfg, tiny_dataset, run, progress=False)
    assert summary["step"] == 5 and np.isfinite(summary["loss"])
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 5]
    for key in ("loss", "action_l1", "lr", "grad_norm", "samples_per_s", "data_time_frac"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last", "step_000004", "step_000005"]
    assert (ckpts / "last").read_text().strip() == "step_000005"
    last = ckpts / "step_000005"
    config = json.loads((last / "config.json").read_text())
    assert config["policy"]["type"] == "baseline" and config["policy"]["action_dim"] == 4
    assert config["policy"]["tasks"] == ["reach the goal position", "close the drawer"]
    stats = json.loads((last / "stats.json").read_text())
    assert {"action", "observation.state"} <= set(stats) and len(stats["action"]["q01"]) == 4
    weights = load_file(last / "model.safetensors")
    assert "normalize_targets.features.action.offset" in weights
    assert torch.allclose(
        weights["normalize_targets.features.action.offset"], torch.tensor(stats["action"]["mean"])
    )
    state = json.loads((last / "training_state/state.json").read_text())
    assert state["step"] == 5 and state["samples_seen"] == 40
    opt = torch.load(last / "training_state/optimizer.pt", weights_only=True)
    assert opt["state"] and "param_groups" in opt
    assert not list(ckpts.glob(".tmp*"))
    assert ckpt_io.resolve_checkpoint(run) == last == ckpt_io.resolve_checkpoint(last)


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9, "grad_accum": 2, "num_workers": 1}])
def test_resume_continues_exactly(tiny_dataset: Path, tmp_path: Path, extra: dict) -> None:
    cfg = tiny_experiment(steps=4, **extra)
    full, parts = tmp_path / "full", tmp_path / "parts"
    train(cfg, tiny_dataset, full, progress=False)
    train(cfg, tiny_dataset, parts, stop_after=2, progress=False)
    assert _losses(parts).keys() == {1, 2}
    with (parts / "log.jsonl").open("a") as f:  # a step logged after the checkpoint, then a crash
        f.write(json.dumps({"step": 3, "loss": 123.0}) + "\n")
    train(cfg, tiny_dataset, parts, resume=True, progress=False)
    a, b = _losses(full), _losses(parts)
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-6), step

    def train_s(run: Path, step: int) -> float:
        state = run / f"checkpoints/step_{step:06d}/training_state/state.json"
        return json.loads(state.read_text())["train_s"]

    assert 0 < train_s(parts, 2) < train_s(parts, 4)  # the training time carries over the resume
    wa = load_file(full / "checkpoints/step_000004/model.safetensors")
    wb = load_file(parts / "checkpoints/step_000004/model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    if extra:  # with EMA the inference weights differ from the raw ones
        raw = load_file(full / "checkpoints/step_000004/training_state/model_raw.safetensors")
        assert any(not torch.equal(raw[k], wa[k]) for k in raw)


def test_resume_with_more_steps_matches_a_longer_run(tiny_dataset: Path, tmp_path: Path) -> None:
    """`--steps 2` then `--resume --steps 4` equals a 4-step run when the lr does not depend on the length."""
    constant = {"warmup_steps": 0, "min_lr_ratio": 1.0}
    train(tiny_experiment(steps=4, **constant), tiny_dataset, tmp_path / "full", progress=False)
    train(tiny_experiment(steps=2, **constant), tiny_dataset, tmp_path / "short", progress=False)
    longer = apply_overrides(ckpt_io.load_config(tmp_path / "short"), ["train.steps=4"])
    train(longer, tiny_dataset, tmp_path / "short", resume=True, progress=False)
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "short")
    assert a == pytest.approx(b, abs=1e-6) and len(b) == 4


def test_a_run_folder_being_trained_is_refused_to_a_second_training(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Two trainings of one folder interleaved their logs and checkpoints (a benchmark's orphaned worker
    and its restart): now the second one is refused before it clears or writes anything."""
    from wam.training.run_dir import training_lock

    run = tmp_path / "run"
    cfg = tiny_experiment(steps=3)
    train(cfg, tiny_dataset, run, stop_after=1, progress=False)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    with training_lock(run):  # another training holds the folder (flock: any other open file)
        for kwargs in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(FileExistsError, match="Another process is training into"):
                train(cfg, tiny_dataset, run, progress=False, **kwargs)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert _losses(run).keys() == {1}
    train(cfg, tiny_dataset, run, resume=True, progress=False)  # released: resumes
    assert _losses(run).keys() == {1, 2, 3}
    train(cfg, tiny_dataset, run, overwrite=True, progress=False)  # the lock file is kept, not user content
    assert (run / ".train.lock").exists() and _losses(run).keys() == {1, 2, 3}


def test_train_step_updates_weights_and_rejects_nan(tiny_dataset: Path) -> None:
    from wam.policies.baseline.modeling import BaselinePolicy
    from wam.training.data import open_dataset

    cfg = tiny_experiment(ema_decay=0.5)
    dataset, policy_cfg = open_dataset(cfg.policy, tiny_dataset)
    policy = BaselinePolicy(policy_cfg, stats=dataset.meta.stats)
    accelerator = make_accelerator(cfg.train)
    state = TrainState(policy, policy, build_optimizer(policy, cfg.train), EMA(policy, 0.5))
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    metrics = train_step(state, [batch], cfg.train, accelerator)
    assert state.step == 1 and metrics["lr"] == pytest.approx(lr_at(0, cfg.train))
    assert {"loss", "action_l1", "grad_norm"} <= metrics.keys()
    changed = [n for n, p in policy.named_parameters() if not torch.equal(p, before[n])]
    assert "action_head.weight" in changed and state.ema.updates == 1
    batch["action"][0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"The loss is (inf|nan) at step 2"):
        train_step(state, [batch], cfg.train, accelerator)


def _cli() -> typer.Typer:
    from wam.commands import train as train_cmd

    app = typer.Typer()
    train_cmd.register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps `train` a named subcommand
        """Nothing."""

    return app


def test_cli_trains_and_gives_one_line_errors(tiny_dataset: Path, tmp_path: Path) -> None:
    runner, app = CliRunner(), _cli()
    run = tmp_path / "run"
    common = ["train", "--preset", "baseline-tiny", "--data", str(tiny_dataset), "--out", str(run)]
    small = ["--set", "policy.image_size=32", "--set", "policy.dim=32", "--set", "policy.num_layers=1"]
    small += ["--set", "train.batch_size=8", "--set", "train.num_workers=0", "--set", "train.log_every=1"]
    result = runner.invoke(app, [*common, "--steps", "2", *small])
    assert result.exit_code == 0, result.output
    assert "trained 2 steps" in result.output
    assert ckpt_io.load_config(run).train.steps == 2
    cases = [
        ([*common, "--steps", "2"], FileExistsError, "exists: pass --resume"),
        ([*common, "--resume", "--overwrite"], ValueError, "contradict"),
        ([*common[:-1], str(tmp_path / "new"), "--set", "train.lrr=1"], ValueError, "did you mean train.lr"),
        (
            [*common[:-3], str(tmp_path / "nodata"), "--out", str(tmp_path / "x")],
            FileNotFoundError,
            "No LeRobot",
        ),
        (["train", "--out", str(tmp_path / "none"), "--resume"], FileNotFoundError, "Nothing to resume at"),
        (
            ["train", "--preset", "baseline-tine", "--data", str(tiny_dataset), "--out", str(tmp_path / "y")],
            ValueError,
            "did you mean baseline-tiny",
        ),
    ]
    for args, error, message in cases:
        result = runner.invoke(app, args)
        assert isinstance(result.exception, error), (args, result.output, result.exception)
        assert message in str(result.exception) and "\n" not in str(result.exception)
    resumed = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert _losses(run).keys() == {1, 2, 3}


def test_load_policy_from_run_and_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_experiment(steps=2), tiny_dataset, run, progress=False)
    from_run = ckpt_io.load_policy(run)
    from_ckpt = ckpt_io.load_policy(run / "checkpoints" / "step_000002")
    assert not from_run.training
    obs = {
        "observation.images.corner2": np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32),
        "observation.state": np.zeros((3, 4), np.float32),
        "task": ["close the drawer", "reach the goal position", "close the drawer"],
    }
    a, b = from_run.predict_action_chunk(obs), from_ckpt.predict_action_chunk(obs)
    assert a.shape == (3, 4, 4) and a.dtype == np.float32 and np.array_equal(a, b)
    assert ckpt_io.is_checkpoint(run) and ckpt_io.is_checkpoint(run / "checkpoints/step_000002")
    assert not ckpt_io.is_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"No checkpoint at"):
        ckpt_io.load_policy(tmp_path)


@pytest.mark.slow
def test_periodic_closed_loop_eval(tiny_dataset: Path, tmp_path: Path) -> None:
    from wam.data import DatasetMeta
    from wam.training.evaluation import metaworld_tasks

    assert metaworld_tasks(DatasetMeta(tiny_dataset)) == ["reach-v3", "drawer-close-v3"]
    run = tmp_path / "run"
    cfg = tiny_experiment(steps=2, eval_every=2, eval_episodes=1, eval_max_steps=5, eval_workers=0)
    train(cfg, tiny_dataset, run, progress=False)
    results = json.loads((run / "eval/step_000002/results.json").read_text())
    assert set(results["tasks"]) == {"reach-v3", "drawer-close-v3"}
    assert results["tasks"]["reach-v3"]["episodes"] == 1 and results["config"]["max_steps"] == 5
    evals = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "eval/success" in r]
    assert len(evals) == 1 and evals[0]["step"] == 2 and "eval/reach-v3" in evals[0]
