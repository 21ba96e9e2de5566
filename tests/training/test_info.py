"""`wam info`: parameter counts of policy and backbone presets, on the meta device."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from wam.models.wan.config import count_parameters, get_wan_config
from wam.training.params import preset_parameters


def test_backbone_counts_match_the_config_formula() -> None:
    for name in ("wan2.1-1.3b", "wan2.2-5b", "wan-tiny"):
        info = preset_parameters(name)
        counts = count_parameters(get_wan_config(name))
        assert info["params_total"] == info["params_trainable"] == counts["total"]
        assert {k: v["total"] for k, v in info["modules"].items()} == {
            k: v for k, v in counts.items() if k != "total"
        }
    assert 1.3e9 < preset_parameters("wan2.1-1.3b")["params_total"] < 1.5e9


def test_attention_wider_than_the_tokens_counts_and_builds() -> None:
    """`attn_head_dim` (the authors' WanVideoDiT argument): q/k/v/o and the q/k norms at heads x head_dim."""
    import torch

    from wam.models.wan import WanDiT

    cfg = get_wan_config("wan-tiny").replace(dim=48, attn_head_dim=32)  # 2 heads x 32 = 64 on 48
    assert (cfg.head_dim, cfg.attn_dim) == (32, 64)
    model = WanDiT.from_config(cfg, device="meta")
    assert model.blocks[0].self_attn.q.weight.shape == (64, 48)
    assert model.blocks[0].cross_attn.o.weight.shape == (48, 64)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(cfg)["total"]
    x = torch.randn(1, cfg.in_channels, 2, 4, 4)
    out = WanDiT(cfg)(x, torch.tensor([500.0]), torch.randn(1, 3, cfg.text_dim)).sample
    assert out.shape == x.shape
    with pytest.raises(ValueError, match="attn_head_dim"):
        get_wan_config("wan-tiny").replace(dim=50)  # 50 / 2 heads = 25: odd, no RoPE


def test_policy_counts_equal_a_real_build() -> None:
    import dataclasses

    from wam.configs import get_preset
    from wam.policies.baseline.modeling import BaselinePolicy

    info = preset_parameters("baseline-tiny", image_size=64, num_tasks=2)
    assert info["assumed"] == {"action_dim": 4, "state_dim": 4, "image_size": 64, "num_tasks": 2}
    cfg = dataclasses.replace(
        get_preset("baseline-tiny").policy, action_dim=4, state_dim=4, image_size=64, tasks=("a", "b")
    )
    real = BaselinePolicy(cfg, stats=None)
    assert info["params_total"] == sum(p.numel() for p in real.parameters())
    assert info["modules"]["blocks"]["total"] == sum(p.numel() for p in real.blocks.parameters())
    assert sum(m["total"] for m in info["modules"].values()) == info["params_total"]


def test_cli_json_table_and_typo() -> None:
    from wam.commands import info as info_cmd

    app = typer.Typer()
    info_cmd.register(app)

    @app.command("noop")
    def noop() -> None:
        """Nothing."""

    runner = CliRunner()
    result = runner.invoke(app, ["info", "wan2.1-1.3b", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (
        data["kind"] == "backbone"
        and data["params_total"] == count_parameters(get_wan_config("wan2.1-1.3b"))["total"]
    )
    table = runner.invoke(app, ["info", "baseline-tiny"])
    assert table.exit_code == 0 and "blocks" in table.output and "assumed" in table.output
    listed = runner.invoke(app, ["info", "baseline-tiny", "--settings"])
    assert "policy.cameras=corner2" in listed.output and "train.ema_decay=none" in listed.output
    typo = runner.invoke(app, ["info", "baseline-tin"])
    assert isinstance(typo.exception, ValueError)
    with pytest.raises(ValueError, match=r"did you mean baseline-tiny"):
        raise typo.exception


def test_set_overrides_reach_the_counted_policy() -> None:
    frozen = preset_parameters("lightwam-tiny", overrides=("policy.train_backbone=false",))
    full = preset_parameters("lightwam-tiny")
    assert frozen["params_total"] == full["params_total"] == full["params_trainable"]
    assert frozen["params_trainable"] < full["params_trainable"]
    assert frozen["config"]["policy"]["train_backbone"] is False
    with pytest.raises(ValueError, match="applies to policy presets"):
        preset_parameters("wan2.1-1.3b", overrides=("policy.lr=1",))
