"""Numerical equivalence with diffusers' `WanTransformer3DModel`, and loading its checkpoint folders."""

from __future__ import annotations

import pytest
import torch

from wam.models.wan import (
    WanDiT,
    convert_diffusers_state_dict,
    get_wan_config,
    load_wan_state_dict,
    read_wan_config,
)
from wam.models.wan.loading import load_into

diffusers = pytest.importorskip("diffusers")

B, C, F, H, W = 2, 16, 3, 8, 8
L = F * (H // 2) * (W // 2)


@pytest.fixture(scope="module")
def reference():
    """A tiny diffusers Wan DiT with random values in every parameter (norms and modulation tables too)."""
    torch.manual_seed(0)
    model = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=32,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=32,
        ffn_dim=128,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def ours(reference):
    model = WanDiT.from_config("wan2.1-tiny").eval()
    load_into(model, convert_diffusers_state_dict(reference.state_dict()), strict=True)
    return model


@pytest.fixture(scope="module")
def inputs():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(B, C, F, H, W, generator=gen), torch.randn(B, 7, 32, generator=gen)


def test_matches_diffusers_with_one_timestep_per_sample(reference, ours, inputs):
    x, ctx = inputs
    t = torch.tensor([937.0, 11.0])
    with torch.no_grad():
        expected = reference(x, t, ctx).sample
        got = ours(x, t, ctx).sample
    assert expected.abs().mean() > 0.1  # a non-trivial output
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_matches_diffusers_with_per_token_timesteps(reference, ours, inputs):
    x, ctx = inputs
    t = torch.rand(B, L, generator=torch.Generator().manual_seed(2)) * 1000
    t[:, : L // F] = 0  # TI2V: the clean first frame
    with torch.no_grad():
        expected = reference(x, t, ctx).sample
        got = ours(x, t, ctx).sample
        per_sample = ours(x, t[:, -1], ctx).sample
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(per_sample, expected, atol=1e-3)


@pytest.mark.parametrize("shard", [None, "60KB"])
def test_loads_a_diffusers_folder(reference, inputs, tmp_path, shard):
    x, ctx = inputs
    kwargs = {"max_shard_size": shard} if shard else {}
    reference.save_pretrained(tmp_path / "transformer", safe_serialization=True, **kwargs)
    if shard:
        assert (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors.index.json").exists()
    state = load_wan_state_dict(tmp_path)  # a pipeline root: the DiT lives in transformer/
    assert "head.modulation" in state and "blocks.1.norm3.weight" in state and "proj_out.weight" not in state
    assert read_wan_config(tmp_path) == get_wan_config("wan2.1-tiny")
    model = WanDiT.from_pretrained(tmp_path)
    t = torch.tensor([500.0, 3.0])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, ctx).sample, reference(x, t, ctx).sample, atol=1e-5, rtol=1e-5)
