"""Fast-WAM's action expert: decoupled attention width, interpolation init, pretrained video, sizes."""

from __future__ import annotations

import math

import pytest
import torch
from test_fastwam_fixtures import STATS, randomize_, tiny_config

from wam.models.wan import WanDiT, count_parameters, get_wan_config, save_wan_checkpoint
from wam.policies.fastwam.action_dit import ActionBlock, ActionDiT
from wam.policies.fastwam.init import interpolate_from_video, resize_dim, resize_like
from wam.policies.fastwam.modeling import FastWAMPolicy


def test_resize_keeps_the_ends_and_scales_by_alpha():
    ramp = torch.arange(5.0).reshape(1, 5)  # a linear ramp stays a linear ramp
    torch.testing.assert_close(resize_dim(ramp, 1, 3), torch.tensor([[0.0, 2.0, 4.0]]))
    torch.testing.assert_close(resize_like(ramp, (1, 3)), torch.tensor([[0.0, 2.0, 4.0]]) * math.sqrt(5 / 3))
    # a resized output dimension, or a 1-D tensor, gets no alpha
    torch.testing.assert_close(resize_like(ramp.T, (3, 1)), torch.tensor([[0.0], [2.0], [4.0]]))
    torch.testing.assert_close(resize_like(torch.arange(4.0), (2,)), torch.tensor([0.0, 3.0]))
    with pytest.raises(ValueError, match="ranks differ"):
        resize_like(ramp, (5,))


def test_action_block_decouples_attention_width_from_token_width():
    block = ActionBlock(dim=32, attn_dim=64, ffn_dim=48, num_heads=2)
    assert block.self_attn.q.weight.shape == (64, 32) and block.self_attn.o.weight.shape == (32, 64)
    assert block.cross_attn.norm_k.weight.shape == (64,) and block.modulation.shape == (1, 6, 32)
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 3, 32)
    from wam.policies.fastwam.action_dit import action_rope

    out = block(x, torch.randn(2, 1, 6, 32), ctx, action_rope(32, 5))
    assert out.shape == (2, 5, 32) and torch.isfinite(out).all()


def test_interpolation_takes_every_shared_tensor_from_the_video_dit():
    video = randomize_(WanDiT(get_wan_config("wan2.1-tiny")), seed=1)  # dim 64, 2 heads of 32
    geometry = dict(num_layers=2, num_heads=2, head_dim=32, text_dim=32, freq_dim=32)
    action = ActionDiT(4, width=32, ffn_dim=48, **geometry)
    encoder_before = action.action_encoder.weight.clone()
    counts = interpolate_from_video(action, video)
    # copied as is, per layer and attention: the q, k, v biases and the q/k norms (attention width 64 in both)
    copied = 2 * 2 * 5
    assert counts == {"copied": copied, "interpolated": len(action.state_dict()) - copied - 4, "kept": 4}
    v, a = video.blocks[1], action.blocks[1]
    alpha = math.sqrt(64 / 32)
    torch.testing.assert_close(a.self_attn.norm_q.weight, v.self_attn.norm_q.weight)  # same shape: copied
    # q: the input dimension shrank (ends kept, alpha-scaled); o: only its output dimension did
    torch.testing.assert_close(a.self_attn.q.weight[:, [0, -1]], v.self_attn.q.weight[:, [0, -1]] * alpha)
    torch.testing.assert_close(a.self_attn.o.weight[[0, -1]], v.self_attn.o.weight[[0, -1]])
    torch.testing.assert_close(a.ffn[0].weight[0, 0], v.ffn[0].weight[0, 0] * alpha)
    torch.testing.assert_close(a.modulation[..., -1], v.modulation[..., -1] * alpha)  # (1, 6, dim) tables too
    text_a, text_v = action.text_embedding[0].weight, video.text_embedding[0].weight
    torch.testing.assert_close(text_a[[0, -1]], text_v[[0, -1]])
    torch.testing.assert_close(action.action_encoder.weight, encoder_before)  # action-only layers are kept
    assert action.head.weight.abs().sum() == 0
    deeper = WanDiT(get_wan_config("wan2.1-tiny").replace(num_layers=1))
    with pytest.raises(ValueError, match="same number of layers"):
        interpolate_from_video(action, deeper)


def test_policy_build_interpolates_or_keeps_random_weights(tmp_path):
    interp = FastWAMPolicy(tiny_config(), stats=STATS)
    expected = resize_like(interp.video.blocks[0].ffn[2].weight, (32, 64))  # from (64, 128)
    torch.testing.assert_close(interp.action.blocks[0].ffn[2].weight, expected)
    random = FastWAMPolicy(tiny_config(action_init="random"), stats=STATS)
    assert random.action.blocks[0].self_attn.norm_q.weight.eq(1).all()
    assert not torch.allclose(
        random.action.blocks[0].ffn[2].weight, resize_like(random.video.blocks[0].ffn[2].weight, (32, 64))
    )
    # pretrained video weights (original layout) are loaded first, then interpolated from
    source = randomize_(WanDiT(tiny_config().video_config()), seed=5)
    save_wan_checkpoint(source, tmp_path / "wan")
    pretrained = FastWAMPolicy(tiny_config(video_weights=str(tmp_path / "wan")), stats=STATS)
    loaded, interpolated = pretrained.video.blocks[1].self_attn, pretrained.action.blocks[1].self_attn
    torch.testing.assert_close(loaded.k.weight, source.blocks[1].self_attn.k.weight)
    torch.testing.assert_close(interpolated.norm_k.weight, source.blocks[1].self_attn.norm_k.weight)
    # a policy rebuilt for a checkpoint (stats=None) reads no pretrained file
    rebuilt = FastWAMPolicy(tiny_config(video_weights=str(tmp_path / "missing")), stats=None)
    assert not rebuilt.video.blocks[0].self_attn.k.weight.is_meta


def test_published_geometry_on_the_meta_device():
    with torch.device("meta"):
        expert = ActionDiT(
            7, 1024, 4096, num_layers=30, num_heads=24, head_dim=128, text_dim=4096, freq_dim=256
        )
    q = expert.blocks[0].self_attn.q.weight
    assert q.is_meta and q.shape == (3072, 1024) and expert.blocks[0].self_attn.o.weight.shape == (1024, 3072)
    attention = 3 * (1024 * 3072 + 3072) + (3072 * 1024 + 1024) + 2 * 3072
    block = 2 * attention + 2 * 1024 + (1024 * 4096 + 4096) + (4096 * 1024 + 1024) + 6 * 1024
    text = 4096 * 1024 + 1024 + 1024 * 1024 + 1024
    time = 256 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 6144 + 6144
    io = (7 * 1024 + 1024) + (1024 * 7 + 7)
    assert sum(p.numel() for p in expert.parameters()) == 30 * block + text + time + io  # 1.02B


def test_info_counts_of_the_published_preset():
    from wam.training.params import preset_parameters

    result = preset_parameters("fastwam-wan2.2-5b", action_dim=7, state_dim=8)
    video = result["modules"]["video"]["total"]
    action = result["modules"]["action"]["total"]
    assert video == count_parameters(get_wan_config("wan2.2-5b"))["total"]  # 5.0B: the Wan2.2-TI2V-5B DiT
    assert 4.9e9 < video < 5.1e9 and 1.0e9 < action < 1.05e9
    assert result["params_total"] == result["params_trainable"] == video + action + 8 * 4096 + 4096
