"""Typed experiment configs and the registry of named presets (torch-free).

from wam.configs import get_preset, apply_overrides
cfg = apply_overrides(get_preset("baseline-tiny"), ["train.lr=1e-4", "policy.chunk_size=16"])
"""

from wam.configs.base import ExperimentConfig, NormalizationConfig, PolicyConfig, TrainConfig
from wam.configs.overrides import apply_overrides
from wam.configs.registry import (
    PRESETS,
    get_backbone,
    get_preset,
    policy_class,
    policy_config_class,
    preset_names,
    register_policy_config,
    register_preset,
)
from wam.configs.serialize import experiment_from_dict, from_dict, to_dict

__all__ = [
    "PRESETS",
    "ExperimentConfig",
    "NormalizationConfig",
    "PolicyConfig",
    "TrainConfig",
    "apply_overrides",
    "experiment_from_dict",
    "from_dict",
    "get_backbone",
    "get_preset",
    "policy_class",
    "policy_config_class",
    "preset_names",
    "register_policy_config",
    "register_preset",
    "to_dict",
]
