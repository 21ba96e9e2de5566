"""Fast-WAM: mask pattern, mask invariants, cached prefill vs full forward, call counts, losses, variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fastwam_fixtures import (
    CHUNK,
    TOKENS_PER_FRAME,
    B,
    F,
    batch,
    tiny_config,
    tiny_policy,
    with_variant,
)

from wam.configs import get_preset
from wam.models.flow_matching import sampling_sigmas
from wam.policies.fastwam.mask import mot_mask, teacher_forcing_mask, video_mask
from wam.policies.fastwam.modeling import frame_sigmas
from wam.policies.fastwam.sampling import cached_actions, sample_actions


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run fastest (and steadiest) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inputs(policy, seed: int = 3):
    """Clip latents (frame 0 = current), noisy actions and noise levels, contexts of a batch."""
    g = torch.Generator().manual_seed(seed)
    data = batch()
    latents = data["video.latents"]
    actions = torch.randn(B, CHUNK, 4, generator=g)
    sigma_v, sigma_a = torch.tensor([0.3, 0.7, 0.9]), torch.tensor([0.2, 0.5, 1.0])
    contexts = policy.embed_context(policy.context(policy.normalize_inputs(data)))
    return latents, actions, frame_sigmas(sigma_v, F), sigma_a, contexts


# ------------------------------------------------------------------ masks
def test_mask_pattern_on_a_tiny_grid():
    t, f = True, False
    expected = torch.tensor(
        [  # video frame 0 (2 tokens) | video frame 1 (2 tokens) | actions (3 tokens)
            [t, t, f, f, f, f, f],
            [t, t, f, f, f, f, f],
            [t, t, t, t, f, f, f],
            [t, t, t, t, f, f, f],
            [t, t, f, f, t, t, t],
            [t, t, f, f, t, t, t],
            [t, t, f, f, t, t, t],
        ]
    )
    assert torch.equal(mot_mask(2, 2, 3, "first_frame"), expected)
    joint = expected.clone()
    joint[4:, 2:4] = True  # joint / idm: actions read the future frames too
    assert torch.equal(mot_mask(2, 2, 3, "all"), joint)
    assert torch.equal(video_mask(2, 2), expected[:4, :4])


def test_teacher_forcing_mask_separates_the_two_video_copies():
    mask = teacher_forcing_mask(2, 2, 3)  # [noisy 4 | conditioning 4 | actions 3]
    vv = video_mask(2, 2)
    assert torch.equal(mask[:4, :4], vv) and torch.equal(mask[4:8, 4:8], vv)
    assert not mask[:4, 4:].any() and not mask[4:8, :4].any() and not mask[:8, 8:].any()
    assert mask[8:, 4:].all() and not mask[8:, :4].any()


def test_bad_mask_arguments_are_reported():
    with pytest.raises(ValueError, match="action_view"):
        mot_mask(2, 2, 3, "future")
    with pytest.raises(ValueError, match="positive"):
        video_mask(0, 2)


# ------------------------------------------------------------------ invariants
def test_future_frames_never_reach_the_actions_in_training():
    policy = tiny_policy().eval()
    latents, actions, sig_v, sig_a, ctx = _inputs(policy)
    mask = mot_mask(F, TOKENS_PER_FRAME, CHUNK, "first_frame")
    changed = latents.clone()
    changed[:, :, 1:] = torch.randn_like(changed[:, :, 1:]) * 5
    with torch.no_grad():
        v_video, v_action = policy.joint_velocity(latents, sig_v, actions, sig_a, ctx, mask)
        v_video2, v_action2 = policy.joint_velocity(changed, sig_v, actions, sig_a, ctx, mask)
        everything = mot_mask(F, TOKENS_PER_FRAME, CHUNK, "all")
        _, v_action_all = policy.joint_velocity(changed, sig_v, actions, sig_a, ctx, everything)
        _, v_action_all_ref = policy.joint_velocity(latents, sig_v, actions, sig_a, ctx, everything)
    torch.testing.assert_close(v_action2, v_action, atol=1e-6, rtol=1e-6)
    # the current frame's own prediction does not see the future either
    torch.testing.assert_close(v_video2[:, :, :1], v_video[:, :, :1], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(v_video2[:, :, 1:], v_video[:, :, 1:], atol=1e-3)  # the future does move
    assert not torch.allclose(v_action_all, v_action_all_ref, atol=1e-4)  # the joint mask lets it through


def test_video_never_depends_on_the_actions():
    policy = tiny_policy().eval()
    latents, actions, sig_v, sig_a, ctx = _inputs(policy)
    for view in ("first_frame", "all"):
        mask = mot_mask(F, TOKENS_PER_FRAME, CHUNK, view)
        with torch.no_grad():
            v_video, v_action = policy.joint_velocity(latents, sig_v, actions, sig_a, ctx, mask)
            other = (-3 * actions, sig_a.flip(0))
            v_video2, v_action2 = policy.joint_velocity(latents, sig_v, *other, ctx, mask)
        torch.testing.assert_close(v_video2, v_video, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(v_action2, v_action, atol=1e-3)


def test_cached_prefill_matches_the_full_forward_at_every_step():
    policy = tiny_policy().eval()
    latents, _, sig_v, _, ctx = _inputs(policy)
    current = latents[:, :, :1]
    steps = policy.config.action_flow.num_inference_steps
    noise = torch.randn(B, CHUNK, 4, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        cached = cached_actions(policy, current, ctx, "first_frame", noise)
        # the same Euler loop with full uncached joint passes over [current frame | actions] ...
        x = noise.clone()
        grid = sampling_sigmas(steps, policy.config.action_flow.inference_shift).tolist()
        one_frame = mot_mask(1, TOKENS_PER_FRAME, CHUNK, "first_frame")
        full_clip = mot_mask(F, TOKENS_PER_FRAME, CHUNK, "first_frame")
        for k in range(steps):
            s = torch.full((B,), grid[k])
            _, v = policy.joint_velocity(current, torch.zeros(B, 1), x, s, ctx, one_frame)
            # ... which the training-mode pass over the whole noisy clip agrees with
            _, v_train = policy.joint_velocity(latents, sig_v, x, s, ctx, full_clip)
            torch.testing.assert_close(v_train, v, atol=1e-5, rtol=1e-5)
            x = x + (grid[k + 1] - grid[k]) * v
    torch.testing.assert_close(cached, x, atol=1e-5, rtol=1e-5)
    assert cached.abs().mean() > 1e-3


@pytest.mark.parametrize(
    ("variant", "video_passes"),
    [("fastwam", lambda n: 1), ("no-video", lambda n: 1), ("joint", lambda n: n), ("idm", lambda n: n + 1)],
)
def test_video_passes_per_chunk(variant, video_passes):
    """Fast-WAM: the video stream runs once (the prefill), never inside the N action steps; Joint runs
    N joint passes; IDM generates the video in N passes, then prefills it once."""
    policy = with_variant(tiny_policy(), variant).eval()
    counts = {"patch": 0, "video_q": 0, "action_encoder": 0, "action_q": 0}
    hooks = [
        (policy.video.patch_embedding, "patch"),
        (policy.video.blocks[0].self_attn.q, "video_q"),
        (policy.action.action_encoder, "action_encoder"),
        (policy.action.blocks[-1].self_attn.q, "action_q"),
    ]
    count = lambda key: lambda *_: counts.__setitem__(key, counts[key] + 1)  # noqa: E731
    handles = [module.register_forward_hook(count(key)) for module, key in hooks]
    data = batch()
    current = data["video.latents"][:, :, :1]
    out = policy.predict_action_chunk(
        {"video.latents": current, "observation.state": data["observation.state"][:, 0], "task": data["task"]}
    )
    for handle in handles:
        handle.remove()
    n = policy.config.action_flow.num_inference_steps
    assert out.shape == (B, CHUNK, 4)
    passes = video_passes(n)
    assert counts == {"patch": passes, "video_q": passes, "action_encoder": n, "action_q": n}


def test_chunks_are_computed_independently_per_batch_element():
    policy = tiny_policy().eval()
    latents, _, _, _, ctx = _inputs(policy)
    noise = torch.randn(B, CHUNK, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        together = cached_actions(policy, latents[:, :, :1], ctx, "first_frame", noise)
        alone = []
        for i in range(B):
            one = slice(i, i + 1)
            contexts = (ctx[0][one], ctx[1][one])
            alone.append(cached_actions(policy, latents[one, :, :1], contexts, "first_frame", noise[one]))
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-5, rtol=1e-5)


def test_sampling_is_reproducible_with_a_generator():
    policy = tiny_policy().eval()
    data = policy.normalize_inputs(batch())
    current, context = data["video.latents"][:, :, :1], policy.context(data)
    first = sample_actions(policy, current, context, torch.Generator().manual_seed(0))
    second = sample_actions(policy, current, context, torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize("variant", ["fastwam", "joint"])
def test_episode_seeds_make_each_element_reproducible_whatever_its_batch(variant):
    policy = with_variant(tiny_policy(), variant).eval()
    obs = batch(3)
    obs.pop("action"), obs.pop("action_is_pad")

    def chunk(rows: list[int], seeds: list[int] | None) -> np.ndarray:
        policy.reset(seeds=seeds)
        torch.manual_seed(len(rows) * 11)  # the global RNG must not matter once seeded
        sub = {k: v[rows] if torch.is_tensor(v) else [v[i] for i in rows] for k, v in obs.items()}
        return policy.predict_action_chunk(sub)  # (B, H, A)

    together = chunk([0, 1, 2], [100, 101, 102])
    np.testing.assert_allclose(chunk([2], [102])[0], together[2], atol=1e-5)
    np.testing.assert_allclose(chunk([0, 2], [100, 102]), together[[0, 2]], atol=1e-5)
    assert not np.allclose(chunk([0, 1, 2], [100, 101, 999])[2], together[2], atol=1e-3)
    # unseeded, the global RNG drives the noise: two draws differ
    policy.reset()
    assert not np.allclose(policy.predict_action_chunk(obs), policy.predict_action_chunk(obs), atol=1e-3)


def test_sampling_state_is_saved_and_restored_per_caller():
    policy, fresh = tiny_policy().eval(), tiny_policy().eval()
    obs = batch(2)
    obs.pop("action"), obs.pop("action_is_pad")
    policy.reset(seeds=[3, 4])
    mine = policy.sampling_state()
    policy.reset(seeds=[5, 6])  # another caller's episode
    theirs = policy.sampling_state()
    fresh.reset(seeds=[3, 4])
    for _ in range(2):  # my chunks continue my sequence whatever the other caller draws in between
        policy.load_sampling_state(mine)
        got, want = policy.predict_action_chunk(obs), fresh.predict_action_chunk(obs)
        np.testing.assert_allclose(got, want, atol=1e-6)
        policy.load_sampling_state(theirs)
        policy.predict_action_chunk(obs)
    policy.reset(seeds=[1, 2, 3])
    with pytest.raises(ValueError, match="reset with 3 seeds but got a batch of 2"):
        policy.predict_action_chunk(obs)


# ------------------------------------------------------------------ training losses and variants
@pytest.mark.parametrize("variant", ["fastwam", "joint", "idm", "no-video"])
def test_every_variant_trains_and_predicts(variant):
    policy = with_variant(tiny_policy(), variant).train()
    loss, metrics = policy(batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert ("loss_video" in metrics) == (variant != "no-video") and "loss_action" in metrics
    loss.backward()
    grad = lambda p: p.grad is not None and p.grad.abs().sum() > 0  # noqa: E731
    assert grad(policy.action.blocks[0].self_attn.q.weight)
    assert grad(policy.video.blocks[0].self_attn.k.weight) and grad(
        policy.conditioning.proprio_encoder.weight
    )
    assert grad(policy.video.head.head.weight) == (variant != "no-video")
    policy.eval()
    data = batch()
    state = data["observation.state"].numpy()  # numpy and torch inputs mix
    out = policy.predict_action_chunk(
        {"video.latents": data["video.latents"][:, :, :1], "observation.state": state, "task": data["task"]}
    )
    assert out.shape == (B, CHUNK, 4) and out.dtype.name == "float32"
    assert torch.isfinite(torch.from_numpy(out)).all()


def _spoiled(module: torch.nn.Module, where: slice):
    """A forward hook adding 100 to `module`'s output tokens `where` (B, L, ...): a spoiled prediction."""

    def hook(_module, _inputs, out):
        out = out.clone()
        out[:, where] += 100.0
        return out

    return module.register_forward_hook(hook)


def _loss(policy, data):
    torch.manual_seed(0)  # the same noise levels and noise on every call
    return policy(data)


def test_padded_steps_and_frames_do_not_count():
    policy = tiny_policy().eval()
    data = batch()
    data["action_is_pad"][:, 5:] = True
    data["video.latents_is_pad"] = torch.tensor([[False, True]] * B)  # the future frame is padding
    loss, metrics = _loss(policy, data)
    handles = [_spoiled(policy.action.head, slice(5, None)), _spoiled(policy.video.head, slice(None))]
    spoiled, spoiled_metrics = _loss(policy, data)
    for handle in handles:
        handle.remove()
    assert metrics["loss_video"] == 0.0 and spoiled_metrics["loss_video"] == 0.0
    torch.testing.assert_close(spoiled, loss)
    handle = _spoiled(policy.action.head, slice(4, 5))  # a valid step does count
    assert _loss(policy, data)[0] > loss + 100
    handle.remove()


def test_the_current_frame_is_conditioning_not_a_target():
    policy = tiny_policy().eval()
    data = batch()
    _, metrics = _loss(policy, data)
    handle = _spoiled(policy.video.head, slice(0, TOKENS_PER_FRAME))  # the current frame's prediction
    _, current_spoiled = _loss(policy, data)
    handle.remove()
    handle = _spoiled(policy.video.head, slice(TOKENS_PER_FRAME, None))  # the future frames'
    _, future_spoiled = _loss(policy, data)
    handle.remove()
    assert current_spoiled["loss_video"] == pytest.approx(metrics["loss_video"], rel=1e-6)
    assert future_spoiled["loss_video"] > 100 * metrics["loss_video"]


def test_wrong_clip_length_and_missing_latents_are_reported():
    policy = tiny_policy()
    data = batch()
    with pytest.raises(ValueError, match="latent frames"):
        policy({**data, "video.latents": data["video.latents"][:, :, :1]})
    data.pop("video.latents")
    with pytest.raises(ValueError, match="cached clip latents"):
        policy(data)


# ------------------------------------------------------------------ configuration
def test_config_validation_says_what_to_fix():
    with pytest.raises(ValueError, match="clip span"):
        tiny_config(chunk_size=16)
    with pytest.raises(ValueError, match="variant"):
        tiny_config(variant="imagine")
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        tiny_config(clip_frames=4)
    with pytest.raises(ValueError, match="current frame only"):
        tiny_config(n_obs_steps=2)
    with pytest.raises(ValueError, match=r"did you mean 'wan2\.2-5b'"):
        tiny_config(video_backbone="wan2.2-5")
    assert tiny_config(text_encoder="umt5").video_config().text_dim == 4096
    assert tiny_config(latent_channels=4).video_config().in_channels == 4


def test_presets_and_their_geometry():
    big = get_preset("fastwam-wan2.2-5b").policy
    assert big.video_backbone == "wan2.2-5b" and (big.action_width, big.action_ffn_dim) == (1024, 4096)
    assert big.chunk_size == 32 and big.clip_frames == 9 and big.frame_stride == 4 and big.image_size == 224
    assert big.latent_frames == 3 and big.codec == "wan2.2-vae" and big.text_encoder == "umt5"
    assert big.action_flow.shift == 5.0 and big.action_flow.num_inference_steps == 10
    names = {"": "fastwam", "-joint": "joint", "-idm": "idm", "-novideo": "no-video"}
    for suffix, variant in names.items():
        cfg = get_preset(f"fastwam-tiny{suffix}").policy
        assert cfg.variant == variant and cfg.image_size is None and cfg.chunk_size == 16


def test_gradient_checkpointing_gives_the_same_gradients():
    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        policy = tiny_policy(gradient_checkpointing=checkpointing).eval()
        torch.manual_seed(0)
        policy(batch())[0].backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 50
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5)


def test_context_is_instruction_tokens_plus_one_state_token():
    policy = tiny_policy(text_encoder="minilm", text_length=12)  # frozen, packaged MiniLM (width 384)
    data = policy.normalize_inputs(batch())
    context = policy.context(data)
    assert context.shape == (B, 12 + 1, 384)  # padded to text_length, whatever the batch
    alone = policy.context({"task": data["task"][:1], "observation.state": data["observation.state"][:1]})
    torch.testing.assert_close(context[:1], alone)
    moved = policy.context({**data, "observation.state": data["observation.state"] + 1})
    torch.testing.assert_close(moved[:, :12], context[:, :12])  # the state only moves its own token
    assert not torch.allclose(moved[:, 12], context[:, 12])
    stateless = tiny_policy(state_dim=0)
    data = batch()
    data.pop("observation.state")
    assert stateless.context(data).shape == (B, 1, 32) and torch.isfinite(stateless(data)[0])
