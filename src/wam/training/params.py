"""Parameter counts of any preset, built on the meta device (no weight is allocated).

`preset_parameters(name)` works for policy presets (the whole policy as `wam train` would build
it) and backbone presets (the Wan DiT). A policy's dataset-derived sizes are not known without a
dataset, so they are assumed (Meta-World: 4-d actions and state, the 10 MT10 instructions, 96-px
images as `wam collect` writes them) and reported under `assumed`; pass `action_dim`, `state_dim`,
`image_size` or `num_tasks` to change them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from wam.configs.overrides import apply_overrides
from wam.configs.registry import get_backbone, get_entry, get_preset, policy_class
from wam.configs.serialize import to_dict


def module_counts(model: nn.Module) -> dict[str, Any]:
    """Total and trainable parameters, overall and per top-level submodule."""
    modules: dict[str, dict[str, int]] = {}
    for name, child in model.named_children():
        params = list(child.parameters())
        if params:
            modules[name] = {
                "total": sum(p.numel() for p in params),
                "trainable": sum(p.numel() for p in params if p.requires_grad),
            }
    for name, param in model.named_parameters(recurse=False):
        modules[name] = {"total": param.numel(), "trainable": param.numel() if param.requires_grad else 0}
    return {
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "modules": modules,
    }


def _meta_policy(cfg: Any, sizes: dict[str, int], num_tasks: int) -> tuple[nn.Module, dict[str, Any]]:
    from wam.envs.metaworld_tasks import INSTRUCTIONS, MT10

    assumed: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    for name, value in sizes.items():
        if getattr(cfg, name) is None:
            changes[name] = assumed[name] = value
    if cfg.text_encoder == "learned" and not cfg.tasks:
        names = list(MT10) + [t for t in INSTRUCTIONS if t not in MT10]
        if not 1 <= num_tasks <= len(names):
            raise ValueError(
                f"--num-tasks {num_tasks} is out of range: use 1 to {len(names)} (Meta-World's instructions)."
            )
        changes["tasks"] = tuple(INSTRUCTIONS[t] for t in names[:num_tasks])
        assumed["num_tasks"] = num_tasks
    cfg = dataclasses.replace(cfg, **changes)
    with torch.device("meta"):
        policy = policy_class(cfg)(cfg, stats=None)
    return policy, assumed


def preset_parameters(
    name: str,
    action_dim: int = 4,
    state_dim: int = 4,
    image_size: int = 96,
    num_tasks: int = 10,
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """{"name", "kind", "params_total", "params_trainable", "modules", "assumed", "config"} of a preset
    (a policy preset changed by `overrides`, `--set key=value` as `wam train` takes them)."""
    entry = get_entry(name)
    if entry.kind == "backbone" and overrides:
        raise ValueError(f"--set applies to policy presets; {name} is a backbone.")
    if entry.kind == "backbone":
        from wam.models.wan import WanDiT

        wan_cfg = get_backbone(name)
        model = WanDiT.from_config(wan_cfg, device="meta")
        counts = module_counts(model)
        return {
            "name": name,
            "kind": "backbone",
            **counts,
            "assumed": {},
            "config": dataclasses.asdict(wan_cfg),
        }
    cfg = apply_overrides(get_preset(name), overrides)
    sizes = {"action_dim": action_dim, "state_dim": state_dim, "image_size": image_size}
    policy, assumed = _meta_policy(cfg.policy, sizes, num_tasks)
    return {
        "name": name,
        "kind": "policy",
        **module_counts(policy),
        "assumed": assumed,
        "config": to_dict(cfg),
    }
