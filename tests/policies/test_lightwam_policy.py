"""The Light-WAM policy: what trains, one backbone pass at inference, prefix weighting, the video switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wam.models.codecs import CompactCodec, CompactCodecConfig, save_codec
from wam.models.wan import save_wan_checkpoint
from wam.policies.lightwam.configuration import LightWAMConfig, LoRASettings, StateFusionSettings
from wam.policies.lightwam.modeling import LightWAMPolicy

TASKS = ("reach the goal position", "close the drawer")
STATS = {
    "action": {"mean": [0.5, -1.0, 0.0, 2.0], "std": [2.0, 1.0, 1.0, 0.5]},
    "observation.state": {"mean": [0.0] * 4, "std": [1.0] * 4},
}
H, PREFIX, C = 8, 4, 4  # chunk, loss prefix, latent channels


def _config(**changes: object) -> LightWAMConfig:
    fields: dict = dict(
        image_size=32, cameras=("corner2", "topview"), chunk_size=H, n_action_steps=4, prefix_steps=PREFIX,
        clip_frames=5, frame_stride=2, backbone_layers=4, adapter_layers=(1, 2), latent_channels=C,
        lora=LoRASettings(rank=4, alpha=8.0), adapter_width=16, text_dim=32,
        head=StateFusionSettings(num_queries=4, num_heads=4, per_layer_dim=24, trunk_dim=48, step_dim=16),
        action_dim=4, state_dim=4, tasks=TASKS,
    )  # fmt: skip
    fields.update(changes)
    return LightWAMConfig(**fields)


def _policy(**changes: object) -> LightWAMPolicy:
    torch.manual_seed(0)
    return LightWAMPolicy(_config(**changes), stats=STATS)


def _batch(b: int = 3) -> dict:
    """A training batch: clip latents of 2 tiled 32x32 cameras (C, F=2, 4, 8) and an action chunk."""
    g = torch.Generator().manual_seed(1)
    return {
        "video.latents": torch.randn(b, C, 2, 4, 8, generator=g),
        "video.latents_is_pad": torch.zeros(b, 2, dtype=torch.bool),
        "observation.state": torch.randn(b, 1, 4, generator=g),
        "action": torch.randn(b, H, 4, generator=g),
        "action_is_pad": torch.zeros(b, H, dtype=torch.bool),
        "task": [TASKS[i % 2] for i in range(b)],
    }


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_only_lora_adapters_heads_and_conditioning_train() -> None:
    policy = _policy()
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert len(lora) == 2 * 10 * 4  # A and B of 10 linears in each of the 4 blocks
    groups = ("adapters.", "backbone.head.", "action_expert.", "context.encoder.", "context.state_proj.")
    assert all(n in lora or n.startswith(groups) for n in trainable)
    assert all(any(n.startswith(g) for n in trainable) for g in groups)
    frozen = [n for n, p in policy.backbone.named_parameters() if not p.requires_grad]
    assert "blocks.0.self_attn.q.base_layer.weight" in frozen and "patch_embedding.weight" in frozen
    assert not any("lora_" in n for n in frozen) and "text_embedding.0.weight" in frozen
    loss, metrics = policy(_batch())
    loss.backward()
    missing = [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    assert (
        not missing
    )  # every trainable weight is reached by the two passes (DDP needs no unused-param search)
    assert set(metrics) == {"action_loss", "video_loss"}


def test_video_switch_runs_one_or_two_backbone_passes() -> None:
    policy = _policy()
    calls = _count_calls(policy.backbone.patch_embedding)
    torch.manual_seed(3)
    loss, metrics = policy(_batch())
    assert len(calls) == 2
    assert loss.item() == pytest.approx(metrics["action_loss"] + metrics["video_loss"], rel=1e-5)

    ablation = _policy(video_loss=False)
    calls = _count_calls(ablation.backbone.patch_embedding)
    last_block = _count_calls(ablation.backbone.blocks[3])  # after the last adapter block (2)
    loss, metrics = ablation(_batch())
    assert len(calls) == 1 and not last_block  # no video pass; the action pass stops at block 2
    assert set(metrics) == {"action_loss"} and loss.item() == pytest.approx(metrics["action_loss"])
    trainable = {n for n, p in ablation.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("backbone.head.", "backbone.blocks.3.")) for n in trainable)
    assert any(n.startswith("backbone.blocks.2.") for n in trainable)
    loss.backward()
    assert all(p.grad is not None for p in ablation.parameters() if p.requires_grad)


def test_prefix_weighting_and_padding() -> None:
    policy = _policy(video_loss=False).eval()  # eval: no instruction dropout, the loss is deterministic
    pred = torch.randn(3, H, 4, requires_grad=True)
    target = torch.randn(3, H, 4)
    loss = policy.action_loss(pred, target, None)
    loss.backward()
    assert torch.count_nonzero(pred.grad[:, PREFIX:]) == 0 and torch.all(pred.grad[:, :PREFIX] != 0)
    assert loss.item() == pytest.approx(((pred - target)[:, :PREFIX] ** 2).mean().item(), rel=1e-5)
    shifted = target.clone()
    shifted[:, PREFIX:] += 100.0
    assert policy.action_loss(pred, shifted, None).item() == pytest.approx(loss.item())
    is_pad = torch.zeros(3, H, dtype=torch.bool)
    is_pad[0, 2:] = True  # sample 0 only has 2 valid steps: its mean is over those
    expected = torch.stack(
        [
            ((pred[0, :2] - target[0, :2]) ** 2).mean(),
            *(((pred[i, :PREFIX] - target[i, :PREFIX]) ** 2).mean() for i in (1, 2)),
        ]
    ).mean()
    assert policy.action_loss(pred, target, is_pad).item() == pytest.approx(expected.item(), rel=1e-5)

    batch = _batch()  # through the full forward: the tail of the chunk does not count
    base, _ = policy(batch)
    batch["action"][:, PREFIX:] += 50.0
    assert policy(batch)[0].item() == pytest.approx(base.item(), rel=1e-6)
    batch["action"][:, PREFIX - 1] += 50.0
    assert policy(batch)[0].item() > base.item() + 1.0
    weighted = _policy(video_loss=False, tail_weight=0.5, n_action_steps=4)
    assert weighted.step_weights.tolist() == [1.0] * PREFIX + [0.5] * (H - PREFIX)


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = CompactCodecConfig(z_dim=C, spatial_stride=8, channels=(8, 8, 16), num_res_blocks=1, groups=4)
    return save_codec(CompactCodec(config), tmp_path_factory.mktemp("codec") / "codec")


def _obs(b: int) -> dict:
    rng = np.random.default_rng(0)
    return {
        "observation.images.corner2": rng.random((b, 3, 32, 32), dtype=np.float32),
        "observation.images.topview": rng.random((b, 3, 32, 32), dtype=np.float32),
        "observation.state": rng.standard_normal((b, 4)).astype(np.float32),
        "task": [TASKS[i % 2] for i in range(b)],
    }


def test_inference_is_one_backbone_pass_for_the_whole_batch(codec_dir: Path) -> None:
    policy = _policy(codec=str(codec_dir)).eval()
    obs = _obs(3)
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (3, H, 4) and chunk.dtype == np.float32
    assert np.allclose(
        chunk, np.array(STATS["action"]["mean"], np.float32), atol=1e-6
    )  # zero-initialised output
    with torch.no_grad():
        policy.action_expert.out[-1].weight.normal_(std=0.5)
    patch, blocks = _count_calls(policy.backbone.patch_embedding), _count_calls(policy.backbone.blocks[0])
    last = _count_calls(policy.backbone.blocks[3])
    chunk = policy.predict_action_chunk(obs)
    assert len(patch) == 1 and len(blocks) == 1 and not last  # one pass, up to the last adapter block
    assert not np.allclose(chunk[0], chunk[1])
    single = policy.predict_action_chunk({k: v[1:2] for k, v in obs.items()})
    assert np.allclose(single[0], chunk[1], atol=1e-5)  # batching does not mix samples
    assert policy.select_action(obs).shape == (3, 4)
    with pytest.raises(ValueError, match="expects 32x32"):
        policy.predict_action_chunk(
            {**obs, "observation.images.topview": np.zeros((3, 3, 64, 64), np.float32)}
        )
    with pytest.raises(ValueError, match=r"policy\.codec is unset"):
        _policy().predict_action_chunk(obs)


@pytest.mark.parametrize("video", [True, False])
def test_train_backbone_trains_every_used_backbone_weight(video: bool) -> None:
    policy = _policy(train_backbone=True, video_loss=video)
    frozen = {n for n, p in policy.backbone.named_parameters() if not p.requires_grad}
    if video:
        assert not frozen
    else:  # the action pass stops after the last adapter block (2) and never reads the video head
        assert frozen and all(n.startswith(("head.", "blocks.3.")) for n in frozen)
    assert policy.backbone.patch_embedding.weight.requires_grad
    assert policy.backbone.blocks[0].self_attn.q.base_layer.weight.requires_grad
    before = policy.backbone.blocks[0].ffn[0].base_layer.weight.detach().clone()
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):  # the zero-initialised output layers pass no gradient upstream on step 1
        optimizer.zero_grad()
        loss, _ = policy(_batch())
        loss.backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters() if p.requires_grad)
    assert not torch.equal(policy.backbone.blocks[0].ffn[0].base_layer.weight, before)
    state = policy.checkpoint_state_dict()
    assert "backbone.blocks.0.ffn.0.base_layer.weight" in state  # trained, so it travels


def test_checkpoints_leave_out_the_pretrained_backbone(codec_dir: Path, tmp_path: Path) -> None:
    donor = _policy()
    with torch.no_grad():  # a "pretrained" backbone: the donor's frozen weights without LoRA
        plain = {
            k.replace(".base_layer", ""): v
            for k, v in donor.backbone.state_dict().items()
            if "lora_" not in k
        }
    from wam.models.wan import WanDiT

    pretrained = WanDiT(_config().backbone_config())
    pretrained.load_state_dict(plain)
    save_wan_checkpoint(pretrained, tmp_path / "dit")
    cfg = dict(codec=str(codec_dir), backbone_weights=str(tmp_path / "dit"))
    policy = _policy(**cfg).eval()
    with torch.no_grad():
        for param in policy.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))  # "trained"
    state = policy.checkpoint_state_dict()
    assert "backbone.blocks.0.ffn.0.lora_A.default.weight" in state and "backbone.head.head.weight" in state
    assert (
        "backbone.blocks.0.ffn.0.base_layer.weight" not in state
        and "backbone.patch_embedding.weight" not in state
    )
    assert "normalize_targets.features.action.offset" in state  # the normalisation travels with the weights
    torch.manual_seed(5)
    fresh = LightWAMPolicy(_config(**cfg), stats=None).eval()  # as load_policy builds it
    fresh.load_checkpoint_state_dict(state)
    obs = _obs(2)
    assert np.allclose(fresh.predict_action_chunk(obs), policy.predict_action_chunk(obs), atol=1e-5)
    with pytest.raises(ValueError, match=r"missing 'backbone\.blocks\.0\.ffn\.0\.lora_A"):
        fresh.load_checkpoint_state_dict({k: v for k, v in state.items() if "blocks.0.ffn.0.lora_A" not in k})


def test_frozen_minilm_instructions_pad_per_instruction_and_train() -> None:
    policy = _policy(text_encoder="minilm", text_length=12)  # the packaged MiniLM (width 384)
    state = torch.randn(3, 4)
    context = policy.context([TASKS[0], TASKS[1], TASKS[0]], state, torch.device("cpu"))
    assert context.shape == (3, 12 + 1, 384)  # padded to text_length whatever the batch
    alone = policy.context([TASKS[1]], state[1:2], torch.device("cpu"))
    torch.testing.assert_close(context[1:2], alone)
    torch.testing.assert_close(context[0, :12], context[2, :12])  # the same instruction, the same tokens
    assert not any("_frozen" in key or "bert" in key for key in policy.state_dict())  # never saved
    loss, _ = policy(_batch())
    loss.backward()
    assert torch.isfinite(loss)
