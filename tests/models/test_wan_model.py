"""WanDiT behaviour on tiny configs: timestep forms, hidden states and adapters, the split block API,
attention masks, gradient checkpointing, bf16 and the original initialisation."""

from __future__ import annotations

import pytest
import torch

from wam.models.wan import ResidualAdapter, WanBlock, WanDiT, attention, rope_for_grid

B, C, F, H, W = 2, 16, 3, 8, 8
L = F * (H // 2) * (W // 2)  # 48 tokens


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Random values for every parameter (norm weights near 1), instead of the zero-output init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1 + 0.1 * noise if "norm" in name else scale * noise)
    return module


@pytest.fixture
def model() -> WanDiT:
    return randomize_(WanDiT.from_config("wan2.1-tiny")).eval()


@pytest.fixture
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(B, C, F, H, W, generator=gen), torch.randn(B, 5, 32, generator=gen)


@pytest.mark.parametrize("t_shape", [(B,), (B, F), (B, L)])
def test_output_shapes_for_every_timestep_form(model, inputs, t_shape):
    x, ctx = inputs
    out, hidden = model(x, torch.rand(t_shape) * 1000, ctx, return_hidden=[0, 1])
    assert out.shape == (B, C, F, H, W) and out.dtype == torch.float32
    assert sorted(hidden) == [0, 1] and hidden[1].shape == (B, L, 64)
    assert torch.isfinite(out).all()


def test_frame_timesteps_equal_their_token_expansion(model, inputs):
    x, ctx = inputs
    t_frame = torch.tensor([[0.0, 400.0, 800.0], [0.0, 10.0, 999.0]])
    with torch.no_grad():
        by_frame = model(x, t_frame, ctx).sample
        by_token = model(x, t_frame.repeat_interleave(L // F, dim=1), ctx).sample
        constant = model(x, torch.tensor([250.0, 250.0]), ctx).sample
        constant_tokens = model(x, torch.full((B, L), 250.0), ctx).sample
        scalar = model(x, torch.tensor(250.0), ctx).sample
    torch.testing.assert_close(by_frame, by_token, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(constant, constant_tokens, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(scalar, constant)
    assert not torch.allclose(by_frame, constant, atol=1e-3)


def test_bad_shapes_are_reported(model, inputs):
    x, ctx = inputs
    with pytest.raises(ValueError, match="per latent frame"):
        model(x, torch.zeros(B, 5), ctx)
    with pytest.raises(ValueError, match="not divisible by the patch"):
        model(x[..., :7], torch.zeros(B), ctx)
    with pytest.raises(ValueError, match=r"\(B, 16, F, H, W\)"):
        model(x[:, :4], torch.zeros(B), ctx)
    with pytest.raises(ValueError, match="text embeddings"):
        model(x, torch.zeros(B), ctx[..., :8])
    with pytest.raises(ValueError, match="Batch sizes differ"):
        model(x, torch.zeros(1), ctx)
    with pytest.raises(ValueError, match=r"blocks 0\.\.1"):
        model(x, torch.zeros(B), ctx, return_hidden=[2])


def test_features_plus_head_equal_forward(model, inputs):
    x, ctx = inputs
    t = torch.tensor([10.0, 900.0])
    with torch.no_grad():
        feats = model.forward_features(x, t, ctx, return_hidden=[1])
        out = model(x, t, ctx).sample
    assert feats.grid == (F, H // 2, W // 2) and feats.tokens.shape == (B, L, 64)
    torch.testing.assert_close(feats.hidden[1], feats.tokens)
    torch.testing.assert_close(model.apply_head(feats.tokens, feats.t_emb, feats.grid), out)


def test_patchify_unpatchify_round_trip(model, inputs):
    x, _ = inputs
    # token-major patches with channel-last values (B, F, H', W', pt, ph, pw, C), as the original head emits
    patches = x.reshape(B, C, F, 1, H // 2, 2, W // 2, 2).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(B, L, -1)
    torch.testing.assert_close(model.unpatchify(patches, (F, H // 2, W // 2)), x)


def test_zero_init_adapter_is_identity(model, inputs):
    x, ctx = inputs
    t = torch.tensor([500.0, 20.0])
    adapters = {0: ResidualAdapter(64, width=16)}
    with torch.no_grad():
        plain = model(x, t, ctx, return_hidden=[0, 1])
        adapted = model(x, t, ctx, return_hidden=[0, 1], adapters=adapters)
    torch.testing.assert_close(adapted.sample, plain.sample)
    torch.testing.assert_close(adapted.hidden[1], plain.hidden[1])


def test_nonzero_adapter_changes_the_states_after_it(model, inputs):
    x, ctx = inputs
    t = torch.tensor([500.0, 20.0])
    adapter = randomize_(ResidualAdapter(64, width=16), seed=3)
    with torch.no_grad():
        plain = model(x, t, ctx, return_hidden=[0, 1])
        adapted = model(x, t, ctx, return_hidden=[0, 1], adapters=torch.nn.ModuleDict({"0": adapter}))
        h0 = plain.hidden[0]
        torch.testing.assert_close(adapted.hidden[0], h0 + adapter(h0))  # hidden[i] is after the adapter
    assert not torch.allclose(adapted.hidden[1], plain.hidden[1], atol=1e-4)
    assert not torch.allclose(adapted.sample, plain.sample, atol=1e-4)


def test_adapter_counts_match_light_wam():
    # Light-WAM: 3 adapters of width 256 on the 1536-wide backbone, about 2.4M parameters
    assert 3 * sum(p.numel() for p in ResidualAdapter(1536, 256).parameters()) == 2_373_888


def test_split_block_api_composes_forward(model, inputs):
    x, ctx = inputs
    block = model.blocks[0]
    with torch.no_grad():
        tokens, grid = model.patchify(x)
        _, t_mod = model.time_embed(torch.rand(B, L) * 1000, grid)
        context = model.text_embed(ctx)
        rope = model.rope_table(grid)
        mod = block.modulation_params(t_mod)
        q, k, v = block.self_attn_qkv(tokens, mod, rope)
        assert q.shape == (B, 2, L, 32) and mod.gate_sa.shape == (B, L, 64)
        manual = block.cross_attn_ffn(block.self_attn_out(tokens, attention(q, k, v), mod), context, mod)
        torch.testing.assert_close(manual, block(tokens, t_mod, context, rope))


def test_joint_attention_of_two_streams(model, inputs):
    """Mixture-of-Transformers: each stream its own block weights, one attention over both streams."""
    _, ctx = inputs
    video_block = model.blocks[0]
    action_block = randomize_(WanBlock(64, 96, 2), seed=5).eval()
    gen = torch.Generator().manual_seed(2)
    xv, xa = torch.randn(B, 16, 64, generator=gen), torch.randn(B, 4, 64, generator=gen)
    tv, ta = torch.randn(B, 1, 6, 64, generator=gen), torch.randn(B, 1, 6, 64, generator=gen)
    context = model.text_embed(ctx)
    rope_v = rope_for_grid(32, (1, 4, 4))
    rope_a = rope_for_grid(32, (4, 1, 1), frame_offset=1)

    def joint(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mv, ma = video_block.modulation_params(tv), action_block.modulation_params(ta)
        qv, kv, vv = video_block.self_attn_qkv(xv, mv, rope_v)
        qa, ka, va = action_block.self_attn_qkv(xa, ma, rope_a)
        out = attention(torch.cat([qv, qa], 2), torch.cat([kv, ka], 2), torch.cat([vv, va], 2), mask)
        yv = video_block.cross_attn_ffn(video_block.self_attn_out(xv, out[:, :, :16], mv), context, mv)
        ya = action_block.cross_attn_ffn(action_block.self_attn_out(xa, out[:, :, 16:], ma), context, ma)
        return yv, ya

    is_video = torch.arange(20) < 16
    with torch.no_grad():
        separate_v, separate_a = joint(is_video[:, None] == is_video[None, :])  # block-diagonal mask
        torch.testing.assert_close(separate_v, video_block(xv, tv, context, rope_v))
        torch.testing.assert_close(separate_a, action_block(xa, ta, context, rope_a))
        # actions may read the video, video never reads actions (Fast-WAM's rule)
        joint_v, joint_a = joint(~(is_video[:, None] & ~is_video[None, :]))
    torch.testing.assert_close(joint_v, separate_v)
    assert not torch.allclose(joint_a, separate_a, atol=1e-4)


def test_first_frame_causal_mask_isolates_the_current_frame(model, inputs):
    """With video->video first-frame-causal masking, frame 0 is computed as if it were alone."""
    x, ctx = inputs
    per_frame = (L // F,) * F
    frame = torch.arange(F).repeat_interleave(per_frame[0])  # (L,) frame of each token
    mask = ~((frame[:, None] == 0) & (frame[None, :] > 0))  # (L, L) True = may attend
    t = torch.tensor([[0.0, 700.0, 700.0]] * B)
    with torch.no_grad():
        full = model.forward_features(x, t, ctx, attn_mask=mask).tokens
        alone = model.forward_features(x[:, :, :1], torch.zeros(B), ctx).tokens
        unmasked = model.forward_features(x, t, ctx).tokens
        all_true = model.forward_features(x, t, ctx, attn_mask=torch.ones(L, L, dtype=torch.bool)).tokens
    torch.testing.assert_close(full[:, : per_frame[0]], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked[:, : per_frame[0]], alone, atol=1e-4)
    torch.testing.assert_close(all_true, unmasked)


def test_gradient_checkpointing_gives_the_same_gradients(model, inputs):
    x, ctx = inputs
    t = torch.tensor([300.0, 600.0])
    adapters = {0: randomize_(ResidualAdapter(64, 16), seed=4)}

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        out, hidden = model(x, t, ctx, return_hidden=[1], adapters=adapters)
        (out.square().mean() + hidden[1].mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.gradient_checkpointing = True
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)
    assert plain["blocks.0.self_attn.q.weight"].abs().sum() > 0


def test_bf16_forward_runs_on_cpu(model, inputs):
    x, ctx = inputs
    t = torch.tensor([300.0, 600.0])
    with torch.no_grad():
        reference = model(x, t, ctx).sample
        with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 residual stream, bf16 matmuls
            mixed = model(x, t, ctx).sample
        pure = model.to(torch.bfloat16)(x, t, ctx).sample  # everything bf16
    assert mixed.dtype == torch.float32 and pure.dtype == torch.bfloat16
    for out in (mixed, pure.float()):
        assert torch.isfinite(out).all()
        assert (out - reference).norm() / reference.norm() < 0.05


def test_fresh_model_follows_the_original_initialisation():
    model = WanDiT.from_config("wan2.1-tiny")
    x, ctx = torch.randn(1, 16, 1, 4, 4), torch.randn(1, 3, 32)
    with torch.no_grad():
        out = model(x, torch.tensor([500.0]), ctx).sample
    assert torch.count_nonzero(out) == 0  # zero-initialised head
    assert torch.all(model.blocks[0].self_attn.norm_q.weight == 1)
    assert model.blocks[0].self_attn.q.bias.abs().sum() == 0
    assert 0.01 < model.text_embedding[0].weight.std() < 0.03
