"""Typed configs, the preset registry, overrides and JSON round trips (no torch needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wam.configs import (
    PRESETS,
    ExperimentConfig,
    PolicyConfig,
    TrainConfig,
    apply_overrides,
    experiment_from_dict,
    get_backbone,
    get_preset,
    policy_config_class,
    preset_names,
    register_preset,
    to_dict,
)
from wam.policies.baseline.configuration import BaselineConfig


def test_import_is_torch_free() -> None:
    code = (
        "import sys, wam.configs as c; c.get_preset('baseline-tiny'); c.get_backbone('wan2.1-1.3b'); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_presets_registered_by_kind() -> None:
    assert {"baseline-tiny", "baseline-small"} <= set(preset_names("policy"))
    assert {"wan2.1-1.3b", "wan2.2-5b", "wan-tiny"} <= set(preset_names("backbone"))
    assert "baseline-tiny" in PRESETS and len(PRESETS) >= 5
    cfg = get_preset("baseline-tiny")
    assert isinstance(cfg.policy, BaselineConfig) and cfg.name == "baseline-tiny"
    assert get_preset("baseline-tiny") is not cfg  # a fresh config per call
    assert get_backbone("wan2.1-1.3b").dim == 1536
    assert get_backbone("wan2.2-5b").in_channels == 48


def test_preset_typos_and_kinds() -> None:
    with pytest.raises(ValueError, match=r"did you mean baseline-tiny"):
        get_preset("baseline-tine")
    with pytest.raises(ValueError, match=r"backbone preset"):
        get_preset("wan2.1-1.3b")
    with pytest.raises(ValueError, match=r"policy preset"):
        get_backbone("baseline-tiny")
    with pytest.raises(ValueError, match=r"Unknown policy type 'baselin'.*baseline"):
        policy_config_class("baselin")


def test_register_preset_and_duplicates() -> None:
    register_preset(
        "test-only-preset", lambda: ExperimentConfig(policy=BaselineConfig(chunk_size=4, n_action_steps=2))
    )
    assert get_preset("test-only-preset").policy.chunk_size == 4
    with pytest.raises(ValueError, match=r"already registered"):
        register_preset("test-only-preset", lambda: None)


def test_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"n_action_steps=20 must be between 1 and chunk_size=16"):
        BaselineConfig(chunk_size=16, n_action_steps=20)
    with pytest.raises(ValueError, match=r"policy.normalization.action='zscore' is not valid"):
        apply_overrides(get_preset("baseline-tiny"), ["policy.normalization.action=zscore"])
    with pytest.raises(ValueError, match=r"not divisible by train.grad_accum"):
        TrainConfig(batch_size=30, grad_accum=4)
    with pytest.raises(ValueError, match=r"ema_decay"):
        TrainConfig(ema_decay=1.5)
    with pytest.raises(ValueError, match=r"type is empty"):
        PolicyConfig()
    with pytest.raises(ValueError, match=r"multiple of policy.patch_size"):
        BaselineConfig(image_size=60, patch_size=8)


def test_overrides_convert_types_and_leave_input_alone() -> None:
    base = get_preset("baseline-tiny")
    cfg = apply_overrides(
        base,
        [
            "train.lr=1e-4",
            "train.steps=1e3",
            "policy.chunk_size=8",
            "policy.n_action_steps=4",
            "train.betas=0.8,0.99",
            "train.ema_decay=0.99",
            "policy.cameras=corner2,corner3",
            "policy.normalization.action=quantile",
            "train.plot=false",
            "train.episodes=[0, 2]",
            "policy.action_dim=none",
        ],
    )
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)
    assert cfg.policy.chunk_size == 8 and cfg.policy.n_action_steps == 4
    assert cfg.train.betas == (0.8, 0.99)
    assert cfg.train.ema_decay == 0.99
    assert cfg.policy.cameras == ("corner2", "corner3")
    assert cfg.policy.normalization.action == "quantile"
    assert cfg.train.plot is False and cfg.train.episodes == (0, 2)
    assert isinstance(cfg.policy, BaselineConfig)
    assert base.train.lr != 1e-4 and base.policy.cameras == ("corner2",)
    assert apply_overrides(cfg, ["train.ema_decay=none"]).train.ema_decay is None


def test_override_errors_are_one_line() -> None:
    cfg = get_preset("baseline-tiny")
    with pytest.raises(ValueError, match=r"Unknown config key 'train.lrr': did you mean train.lr") as err:
        apply_overrides(cfg, ["train.lrr=1"])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"did you mean policy.patch_size"):
        apply_overrides(cfg, ["policy.patch_sise=4"])
    with pytest.raises(ValueError, match=r"not key=value"):
        apply_overrides(cfg, ["train.lr"])
    with pytest.raises(ValueError, match=r"train.steps='abc' is not a valid int"):
        apply_overrides(cfg, ["train.steps=abc"])
    with pytest.raises(ValueError, match=r"train.steps='2.5' is not a valid int"):
        apply_overrides(cfg, ["train.steps=2.5"])
    with pytest.raises(ValueError, match=r"not a boolean"):
        apply_overrides(cfg, ["train.plot=maybe"])
    with pytest.raises(ValueError, match=r"did you mean policy.normalization.state"):
        apply_overrides(cfg, ["policy.normalization=min_max"])
    with pytest.raises(ValueError, match=r"Unknown config key 'policy.type'"):
        apply_overrides(cfg, ["policy.type=other"])


def test_json_round_trip_selects_class_by_type_tag() -> None:
    cfg = apply_overrides(get_preset("baseline-tiny"), ["policy.action_dim=4", "policy.tasks=reach the goal"])
    data = json.loads(json.dumps(to_dict(cfg)))
    assert data["policy"]["type"] == "baseline" and data["train"]["betas"] == [0.9, 0.95]
    back = experiment_from_dict(data)
    assert back == cfg and isinstance(back.policy, BaselineConfig)
    assert back.policy.tasks == ("reach the goal",)
    data["policy"]["dimm"] = 3
    with pytest.raises(ValueError, match=r"Unknown config key 'policy.dimm': did you mean dim"):
        experiment_from_dict(data)
    data["policy"].pop("dimm")
    data["train"]["steps"] = "many"
    with pytest.raises(ValueError, match=r"train.steps must be int"):
        experiment_from_dict(data)


def test_delta_timestamps_follow_the_policy() -> None:
    cfg = BaselineConfig(cameras=("corner2", "topview"), chunk_size=4, n_action_steps=2)
    deltas = cfg.delta_timestamps(fps=20)
    assert deltas["observation.images.corner2"] == [0.0] and "observation.images.topview" in deltas
    assert deltas["observation.state"] == [0.0]
    assert deltas["action"] == pytest.approx([0.0, 0.05, 0.1, 0.15])
    assert "observation.state" not in BaselineConfig(state_dim=0).delta_timestamps(10)
