"""Wan presets, config validation and parameter counts (meta-device builds of the released sizes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wam.models.wan import WanConfig, count_parameters, get_wan_config, list_wan_presets


def test_presets_hold_the_published_architectures():
    small = get_wan_config("wan2.1-1.3b")
    assert (small.dim, small.num_layers, small.num_heads, small.ffn_dim) == (1536, 30, 12, 8960)
    assert (small.in_channels, small.out_channels, small.text_dim, small.freq_dim) == (16, 16, 4096, 256)
    assert small.patch_size == (1, 2, 2) and small.eps == 1e-6 and small.qk_norm and small.cross_attn_norm
    big = get_wan_config("wan2.2-5b")
    assert (big.dim, big.num_layers, big.num_heads, big.ffn_dim) == (3072, 30, 24, 14336)
    assert (big.in_channels, big.out_channels, big.text_dim, big.head_dim) == (48, 48, 4096, 128)
    assert {"wan2.1-tiny", "wan2.2-tiny", "wan-tiny"} <= set(list_wan_presets())


def test_unknown_preset_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"did you mean 'wan2\.1-1\.3b'"):
        get_wan_config("wan2.1-1.3B")
    with pytest.raises(ValueError, match="choose one of"):
        get_wan_config("llama")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_heads": 5}, "not divisible by num_heads"),
        ({"num_heads": 16}, "even head_dim"),  # head_dim 4 < 6
        ({"ffn_dim": 0}, "ffn_dim is 0"),
        ({"patch_size": (1, 2)}, "three positive ints"),
        ({"eps": 0.0}, "eps is 0.0"),
        ({"freq_dim": 31}, "freq_dim"),
    ],
)
def test_invalid_configs_say_how_to_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        get_wan_config("wan-tiny").replace(**changes)


def test_replace_rejects_unknown_fields():
    with pytest.raises(ValueError, match="Unknown WanConfig field"):
        get_wan_config("wan-tiny").replace(hidden=3)


def test_config_import_does_not_import_torch():
    code = "import sys, wam.models.wan as w; w.get_wan_config('wan2.2-5b'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("name", "total"),
    [("wan2.1-1.3b", 1_418_996_800), ("wan2.2-5b", 4_999_787_712), ("wan2.1-tiny", 147_200)],
)
def test_parameter_counts_match_the_meta_device_model(name, total):
    import torch

    from wam.models.wan import WanDiT

    model = WanDiT.from_config(name, device="meta")
    assert all(p.is_meta for p in model.parameters())
    counts = count_parameters(get_wan_config(name))
    assert counts["total"] == total == sum(p.numel() for p in model.parameters())
    for module_name in (
        "patch_embedding",
        "text_embedding",
        "time_embedding",
        "time_projection",
        "blocks",
        "head",
    ):
        module: torch.nn.Module = getattr(model, module_name)
        assert counts[module_name] == sum(p.numel() for p in module.parameters()), module_name


def test_counts_follow_optional_norms():
    from wam.models.wan import WanDiT

    cfg = WanConfig(dim=64, num_layers=1, num_heads=2, ffn_dim=32, qk_norm=False, cross_attn_norm=False)
    full = count_parameters(cfg.replace(qk_norm=True, cross_attn_norm=True))
    assert full["blocks"] - count_parameters(cfg)["blocks"] == 4 * 64 + 2 * 64
    model = WanDiT.from_config(cfg, device="meta")
    assert count_parameters(cfg)["total"] == sum(p.numel() for p in model.parameters())


def test_every_exported_name_resolves():
    import wam.models.wan as wan

    for name in wan.__all__:
        assert getattr(wan, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'WanModel'"):
        _ = wan.WanModel
