"""The parts of the training loop one by one: sampler, schedule, EMA, normalisation, data checks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from training_fixtures import tiny_experiment

from wam.configs.base import TrainConfig
from wam.policies.normalize import Normalize, Unnormalize, affine_from_stats
from wam.training.data import StepBatchSampler, check_dataset, check_finite, resolve_policy_config
from wam.training.optim import EMA, build_optimizer, lr_at


def _micro_batches(sampler: StepBatchSampler, steps: int) -> list[list[int]]:
    it = iter(sampler)
    return [next(it) for _ in range(steps * sampler.grad_accum)]


def test_sampler_is_seeded_resumable_and_independent_of_world_size() -> None:
    cfg = TrainConfig(batch_size=8, grad_accum=2, seed=3)
    single = _micro_batches(StepBatchSampler(50, cfg), steps=10)  # 6 steps per epoch: crosses an epoch
    assert all(len(b) == 4 for b in single)
    again = _micro_batches(StepBatchSampler(50, cfg), steps=10)
    assert again == single
    resumed = _micro_batches(StepBatchSampler(50, cfg, start_step=4), steps=6)
    assert resumed == single[8:]
    # two processes: each takes half of every micro-batch slot, together the same global batches
    ranks = [_micro_batches(StepBatchSampler(50, cfg, rank=r, world_size=2), steps=10) for r in (0, 1)]
    for step in range(10):
        together = sorted(i for r in (0, 1) for b in ranks[r][2 * step : 2 * step + 2] for i in b)
        assert together == sorted(single[2 * step] + single[2 * step + 1])
    epoch0 = [i for b in single[:12] for i in b]
    assert len(set(epoch0)) == 48  # one epoch visits distinct samples
    other_seed = _micro_batches(StepBatchSampler(50, TrainConfig(batch_size=8, grad_accum=2, seed=4)), 1)
    assert other_seed != single[:2]


def test_sampler_errors() -> None:
    with pytest.raises(ValueError, match=r"fewer than train.batch_size=32"):
        StepBatchSampler(10, TrainConfig(batch_size=32))
    with pytest.raises(ValueError, match=r"divisible by processes x grad_accum = 3"):
        StepBatchSampler(100, TrainConfig(batch_size=8), world_size=3)


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert lr_at(500, cfg) == pytest.approx(0.1)
    values = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert lr_at(50, TrainConfig(steps=100, lr=2.0, warmup_steps=0, min_lr_ratio=1.0)) == 2.0


def test_optimizer_groups_skip_decay_on_biases_and_norms() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decays = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in opt.param_groups}
    assert decays == {0.1: 16, 0.0: 4 + 8}
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match=r"no trainable parameters"):
        build_optimizer(frozen, TrainConfig())


def test_ema_update_and_applied_restores() -> None:
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # warmup decay min(0.5, 1/10) = 0.1: shadow = 0.1 * 0 + 0.9 * 1
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.9))
    with ema.applied(model):
        assert torch.allclose(model.weight, torch.full((1, 2), 0.9))
    assert torch.allclose(model.weight, torch.ones(1, 2))
    state = ema.state_dict()
    other = EMA(nn.Linear(2, 1, bias=False), decay=0.5)
    other.load_state_dict(state)
    assert other.updates == 1 and torch.equal(other.shadow["weight"], ema.shadow["weight"])


def test_normalization_modes_round_trip() -> None:
    stats = {
        "action": {
            "mean": [1.0, 0.0, 5.0],
            "std": [2.0, 1.0, 0.0],
            "min": [-1.0, 0.0, 5.0],
            "max": [3.0, 2.0, 5.0],
            "q01": [-0.5, 0.5, 5.0],
            "q99": [2.5, 1.5, 5.0],
        }
    }
    x = torch.tensor([[3.0, 2.0, 5.0], [-1.0, 0.0, 6.0]])
    expected = {
        "mean_std": [[1.0, 2.0, 0.0], [-1.0, 0.0, 1.0]],  # zero std -> scale 1
        "min_max": [[1.0, 1.0, 0.0], [-1.0, -1.0, 1.0]],
        "quantile": [[4 / 3, 2.0, 0.0], [-4 / 3, -2.0, 1.0]],
        "identity": x.tolist(),
    }
    for mode, want in expected.items():
        norm, unnorm = Normalize({"action": (3, mode)}, stats), Unnormalize({"action": (3, mode)}, stats)
        y = norm({"action": x, "other": 1})
        assert y["other"] == 1
        assert torch.allclose(y["action"], torch.tensor(want)), mode
        assert torch.allclose(unnorm(y)["action"], x), mode
    fresh = Normalize({"action": (3, "quantile")}, None)  # a policy rebuilt from a checkpoint
    fresh.load_state_dict(Normalize({"action": (3, "quantile")}, stats).state_dict())
    assert torch.allclose(fresh({"action": x})["action"], torch.tensor(expected["quantile"]))
    with pytest.raises(ValueError, match=r"lack 'q01'"):
        affine_from_stats("action", "quantile", 3, {"mean": [0, 0, 0]})
    with pytest.raises(ValueError, match=r"no statistics for 'observation.state'"):
        Normalize({"observation.state": (2, "mean_std")}, stats)


def test_check_finite_names_key_and_step() -> None:
    check_finite({"action": torch.zeros(2), "index": torch.arange(2), "task": ["a", "b"]}, 1)
    with pytest.raises(ValueError, match=r"step 7 has NaN/Inf in 'observation.state'"):
        check_finite({"observation.state": torch.tensor([0.0, math.nan])}, 7)


def test_dataset_checks_name_what_to_change(tiny_dataset) -> None:
    from wam.data import DatasetMeta

    meta = DatasetMeta(tiny_dataset)
    policy = tiny_experiment().policy
    check_dataset(policy, meta, tiny_dataset)
    resolved = resolve_policy_config(policy, meta)
    assert (resolved.action_dim, resolved.state_dim) == (4, 4)
    assert resolved.tasks == ("reach the goal position", "close the drawer")
    wrong_cam = type(policy)(**{**policy.__dict__, "cameras": ("topview",)})
    with pytest.raises(
        ValueError, match=r"no camera 'topview' \(available: corner2\): set policy.cameras=corner2"
    ):
        check_dataset(wrong_cam, meta, tiny_dataset)
    wrong_size = type(policy)(**{**policy.__dict__, "image_size": 64, "patch_size": 16})
    with pytest.raises(
        ValueError, match=r"images are 32x32 but the policy expects 64x64: set policy.image_size=32"
    ):
        check_dataset(wrong_size, meta, tiny_dataset)
    with pytest.raises(ValueError, match=r"action_dim=7 but the dataset's actions have 4"):
        resolve_policy_config(type(policy)(**{**policy.__dict__, "action_dim": 7}), meta)
    from_data = resolve_policy_config(type(policy)(**{**policy.__dict__, "image_size": None}), meta)
    assert from_data.image_size == 32 and from_data.is_resolved
    assert np.isfinite(meta.stats["action"]["q99"]).all()


def test_checkpoints_prune_by_step_number_and_resave_a_step_safely(tmp_path) -> None:
    import dataclasses

    from safetensors.torch import load_file

    from wam.configs import get_preset
    from wam.serving.loading import build_preset_policy
    from wam.training.checkpoint import resolve_checkpoint, save_checkpoint

    policy, _ = build_preset_policy("baseline-tiny", device="cpu", seed=3)
    cfg = dataclasses.replace(get_preset("baseline-tiny"), policy=policy.config)
    optimizer = torch.optim.AdamW(policy.parameters())
    run = tmp_path / "run"
    for step in (999_999, 1_000_000, 1_000_001):  # "step_1000000" < "step_999999" as text
        save_checkpoint(run, step, policy, cfg, {}, optimizer, None, {}, keep_last=2)
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["last", "step_1000000", "step_1000001"]
    # the same step again: the new weights replace the old ones and nothing is left behind
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    save_checkpoint(run, 1_000_001, policy, cfg, {}, optimizer, None, {}, keep_last=2)
    ckpt = resolve_checkpoint(run)
    first = next(iter(policy.state_dict()))
    assert torch.equal(load_file(ckpt / "model.safetensors")[first], policy.state_dict()[first])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == kept
    # a crash between the two renames of a re-save: `last` names a folder that is set aside
    root = run / "checkpoints"
    (root / "step_1000001").rename(root / ".old_step_1000001_999999")
    assert resolve_checkpoint(run) == root / ".old_step_1000001_999999"
    save_checkpoint(run, 1_000_002, policy, cfg, {}, optimizer, None, {}, keep_last=2)  # clears it
    assert sorted(p.name for p in root.iterdir()) == ["last", "step_1000000", "step_1000002"]
