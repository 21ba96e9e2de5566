"""Fast-WAM through the real training loop: cached latents, 2 steps, exact resume, load_policy, cameras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wam.configs import ExperimentConfig, apply_overrides, get_preset
from wam.models.codecs import CompactCodec, CompactCodecConfig, save_codec
from wam.training.checkpoint import load_policy
from wam.training.loop import train

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_fixtures import write_tiny_dataset

TINY_CODEC = CompactCodecConfig(z_dim=16, spatial_stride=8, channels=(8, 8, 16), num_res_blocks=1, groups=4)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("fastwam_train")
    root = write_tiny_dataset(base / "tiny", episodes=3, frames=20, size=64)  # 64x64 frames, corner2
    torch.manual_seed(0)
    return {"root": root, "codec": save_codec(CompactCodec(TINY_CODEC).eval(), base / "codec"), "base": base}


def _experiment(setup: dict, preset: str = "fastwam-tiny", steps: int = 2) -> ExperimentConfig:
    """The preset as `wam train --preset NAME --set ...` gives it: a tiny codec, a short run."""
    overrides = {
        "policy.codec": str(setup["codec"]),
        "policy.latent_cache_dir": str(setup["base"] / "latents"),
        "train.steps": steps,
        "train.batch_size": 4,
        "train.warmup_steps": 0,
        "train.num_workers": 0,
        "train.log_every": 1,
        "train.plot": False,
    }
    return apply_overrides(get_preset(preset), [f"{k}={v}" for k, v in overrides.items()])


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def test_train_resume_and_load(setup: dict, tmp_path: Path) -> None:
    cfg = _experiment(setup)
    full, parts = tmp_path / "full", tmp_path / "parts"
    summary = train(cfg, setup["root"], full, progress=False)
    assert summary["step"] == 2 and np.isfinite(summary["loss"])
    records = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss_video"]) and np.isfinite(r["loss_action"]) for r in records)
    train(cfg, setup["root"], parts, stop_after=1, progress=False)
    train(cfg, setup["root"], parts, resume=True, progress=False)
    assert _losses(full) == pytest.approx(_losses(parts), abs=1e-6)
    wa = load_file(full / "checkpoints/step_000002/model.safetensors")
    wb = load_file(parts / "checkpoints/step_000002/model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert any(k.startswith("action.blocks.") for k in wa) and any(k.startswith("video.blocks.") for k in wa)

    policy = load_policy(full)  # rebuilt from config.json + model.safetensors
    assert policy.config.codec == str(setup["codec"]) and policy.config.tasks
    rng = np.random.default_rng(0)
    obs = {
        "observation.images.corner2": rng.random((2, 3, 64, 64), dtype=np.float32),  # encoded by the codec
        "observation.state": rng.standard_normal((2, 4)).astype(np.float32),
        "task": ["reach the goal position", "close the drawer"],
    }
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (2, 16, 4) and np.isfinite(chunk).all()
    policy.reset()
    assert policy.select_action(obs).shape == (2, 4)


@pytest.mark.parametrize("variant", ["joint", "idm", "novideo"])
def test_variants_train_through_the_loop(setup: dict, tmp_path: Path, variant: str) -> None:
    cfg = _experiment(setup, f"fastwam-tiny-{variant}", steps=1)
    summary = train(cfg, setup["root"], tmp_path / variant, progress=False)
    assert summary["step"] == 1 and np.isfinite(summary["loss"])
    policy = load_policy(tmp_path / variant)
    assert policy.config.variant == cfg.policy.variant
    chunk = policy.predict_action_chunk(
        {
            "observation.images.corner2": np.zeros((1, 3, 64, 64), np.float32),
            "observation.state": np.zeros((1, 4), np.float32),
            "task": ["close the drawer"],
        }
    )
    assert chunk.shape == (1, 16, 4) and np.isfinite(chunk).all()
