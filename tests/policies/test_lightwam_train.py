"""Light-WAM through the one training loop: 2 steps on a tiny dataset with a tiny codec and its latent
cache (built by the loop's data pipeline), an exact resume, then the checkpoint loaded back and
evaluated on a batch of observations.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wam.configs import ExperimentConfig, TrainConfig, get_preset
from wam.data import LeRobotDataset
from wam.models.codecs import CompactCodec, CompactCodecConfig, save_codec
from wam.training import checkpoint as ckpt_io
from wam.training import loop
from wam.training.latent_data import LATENTS_KEY, LatentClipDataset

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_fixtures import write_tiny_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("lightwam_train")
    root = write_tiny_dataset(base / "tiny", episodes=4, frames=16)
    torch.manual_seed(0)
    config = CompactCodecConfig(z_dim=4, spatial_stride=8, channels=(8, 8, 16), num_res_blocks=1, groups=4)
    codec = CompactCodec(config)
    save_codec(codec, base / "tiny-codec")  # the default place: <dataset>-codec
    return {"root": root, "codec": save_codec(codec, base / "codec")}


def _experiment(codec: Path | None) -> ExperimentConfig:
    cfg = get_preset("lightwam-tiny")
    cfg.policy = dataclasses.replace(
        cfg.policy, image_size=32, chunk_size=8, n_action_steps=4, prefix_steps=4, frame_stride=2,
        latent_channels=4, codec=None if codec is None else str(codec),
    )  # fmt: skip
    cfg.train = TrainConfig(
        steps=2, batch_size=4, lr=1e-3, warmup_steps=0, num_workers=0, log_every=1, save_every=2, plot=False
    )
    return cfg


def test_train_resume_and_evaluate(data: dict[str, Path], tmp_path: Path) -> None:
    straight = loop.train(_experiment(None), data["root"], tmp_path / "straight", progress=False)
    assert straight["step"] == 2 and np.isfinite(straight["loss"])
    assert straight["config"]["policy"]["codec"] == str(data["root"].parent / "tiny-codec")  # resolved, saved
    cfg = _experiment(data["codec"])  # the same codec weights from another folder: the same latent cache
    loop.train(cfg, data["root"], tmp_path / "resumed", progress=False, stop_after=1)
    resumed = loop.train(cfg, data["root"], tmp_path / "resumed", progress=False, resume=True)
    assert resumed["step"] == 2 and resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5)
    a = load_file(ckpt_io.resolve_checkpoint(tmp_path / "straight") / "model.safetensors")
    b = load_file(ckpt_io.resolve_checkpoint(tmp_path / "resumed") / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    lora = "backbone.blocks.0.self_attn.q.lora_B.default.weight"
    assert torch.count_nonzero(a[lora]) > 0  # LoRA trained (B starts at zero)

    policy = ckpt_io.load_policy(tmp_path / "straight")
    assert policy.config.codec == str(data["root"].parent / "tiny-codec") and policy.config.action_dim == 4
    frames = LeRobotDataset(data["root"])
    items = [frames[i] for i in (0, 17, 40)]
    obs = {
        "observation.images.corner2": torch.stack([it["observation.images.corner2"] for it in items]).numpy(),
        "observation.state": torch.stack([it["observation.state"] for it in items]).numpy(),
        "task": [it["task"] for it in items],
    }
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (3, 8, 4) and chunk.dtype == np.float32 and np.isfinite(chunk).all()
    cached = LatentClipDataset(frames, next((data["root"].parent / "tiny-latents").iterdir()))
    latents = torch.stack([cached[i][LATENTS_KEY][:, :1] for i in (0, 17, 40)])  # the cache's current frames
    encoded = policy.encode_observation({k: torch.as_tensor(v) for k, v in obs.items() if k != "task"})
    assert torch.allclose(encoded, latents, atol=2e-2)  # inference encodes frames as the cache did


def test_tiny_preset_trains_its_backbone() -> None:
    assert get_preset("lightwam-tiny").policy.train_backbone  # no pretrained tiny Wan to keep frozen
    assert not get_preset("lightwam-wan2.1-1.3b").policy.train_backbone  # the published model: frozen


def test_a_run_written_before_a_config_field_existed_is_reused(data: dict[str, Path], tmp_path: Path) -> None:
    import json

    from wam.pipeline import train_cached

    cfg = _experiment(data["codec"])
    cfg.policy = dataclasses.replace(cfg.policy, train_backbone=False)
    run = tmp_path / "run"
    ckpt = train_cached(cfg, data["root"], run, progress=False)
    for path in [run / "config.json", *run.glob("checkpoints/*/config.json")]:
        stored = json.loads(path.read_text())
        del stored["policy"]["train_backbone"]  # as written before the field was added
        path.write_text(json.dumps(stored))
    stamp = (ckpt / "model.safetensors").stat().st_mtime_ns
    assert train_cached(cfg, data["root"], run, progress=False) == ckpt
    assert (ckpt / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not trained again
    with pytest.raises(ValueError, match="another config"):
        train_cached(_experiment(data["codec"]), data["root"], run, progress=False)  # train_backbone=True
